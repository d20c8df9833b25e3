// Package python_test runs the Python SDK's tests (clients/python/tests)
// with Debian's /usr/bin/python3 against a node started in this process
// on loopback, with an API key and an HS256 JWT secret, and checks that
// the package installs with pip. Outside CI a missing interpreter or
// module skips; under CI (CI set) it fails, as .ci/run installs them.
package python_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// python is Debian's interpreter, where python3-websockets installs; a
// python3 earlier on PATH (pyenv, a virtualenv) may lack the module.
const python = "/usr/bin/python3"

// requirePython skips the test without the interpreter or a module, and
// fails it under CI.
func requirePython(t *testing.T, modules ...string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (CI is set: .ci/run installs it)", args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := os.Stat(python); err != nil {
		missing("%s not found: %v", python, err)
	}
	for _, m := range modules {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, python, "-c", "import "+m).CombinedOutput()
		cancel()
		if err != nil {
			missing("%s cannot import %s (apt-get install -y python3-%s): %v\n%s", python, m, m, err, out)
		}
	}
}

// runPython runs python with args in dir, with a deadline, and returns
// its combined output; a non-zero exit fails the test.
func runPython(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PYTHONDONTWRITEBYTECODE=1"}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", python, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

var (
	okLine    = regexp.MustCompile(`(?m)^OK\r?$`)
	okSkipped = regexp.MustCompile(`(?m)^OK \(skipped=\d+\)\r?$`)
)

// TestPythonSDK: every test in clients/python/tests against a real node:
// the server API client (publish, batches, idempotency keys, history,
// presence, sends, disconnects, typed errors for 401, 403, 400, 404,
// 413), the realtime client (subscribe, publish with ack, recovery after
// a server-side close with exactly the missed events, the recovery_failed
// marker, queued publishes, 401 handshakes, refresh, kicks), and the
// webhook verifier's test vector and refusals.
func TestPythonSDK(t *testing.T) {
	requirePython(t, "websockets")
	const key = "python-sdk-test-key-0123456789"
	const jwtSecret = "python-sdk-jwt-secret-0123456789abcdef"
	n := wstest.Start(t, server.Config{
		NoDemo:  true,
		NoAdmin: true,
		APIKey:  key,
		Auth:    server.AuthConfig{JWTSecret: jwtSecret},
	})
	out := runPython(t, ".", []string{
		"SWITCHBOARD_URL=http://" + n.Addr,
		"SWITCHBOARD_WS_URL=" + n.URL(),
		"SWITCHBOARD_API_KEY=" + key,
		"SWITCHBOARD_JWT_SECRET=" + jwtSecret,
	}, "-m", "unittest", "discover", "-v", "-s", "tests", "-t", ".")
	t.Logf("%s", out)
	// unittest's summary is "OK", or "OK (skipped=N)" with skips (a test
	// name may contain "skipped" too, so read the summary line only).
	switch {
	case okLine.MatchString(out):
	case okSkipped.MatchString(out) && os.Getenv("CI") == "":
		t.Logf("some Python tests skipped (they must run under CI=true)")
	default:
		t.Errorf("unittest did not end in OK without skips")
	}
}

// TestPipInstall: the package installs from a copy of the checkout with
// pip into a fresh virtual environment (offline: no build isolation, no
// index), with its py.typed marker, and imports from there.
func TestPipInstall(t *testing.T) {
	requirePython(t, "pip", "venv", "setuptools")
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	// A copy, so that the build's leftovers (build/, *.egg-info) stay out
	// of the checkout.
	if err := os.CopyFS(src, os.DirFS(".")); err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(tmp, "venv")
	runPython(t, tmp, nil, "-m", "venv", "--system-site-packages", "--without-pip", venv)
	runPython(t, tmp, nil, "-m", "pip", "--python", filepath.Join(venv, "bin", "python"), "install", "-q",
		"--no-build-isolation", "--no-deps", "--no-index", src)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), "-c", `
import os, switchboard, switchboard.webhook, switchboard.realtime
d = os.path.dirname(switchboard.__file__)
assert "site-packages" in d, d
assert os.path.exists(os.path.join(d, "py.typed"))
print(switchboard.__version__)
`)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("import from the venv: %v\n%s", err, out)
	}
	if v := strings.TrimSpace(string(out)); v != "0.1.0" {
		t.Errorf("version %q", v)
	}
}
