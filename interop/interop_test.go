// Package interop_test checks the wire protocol from an independent
// WebSocket implementation: a node runs in-process on loopback and
// client.py (Python's websockets library) talks to it as an SDK would.
package interop_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/server"
)

// python is Debian's interpreter: python3-websockets installs there, while
// a python3 earlier on PATH (pyenv, a virtualenv) may lack the module.
const python = "/usr/bin/python3"

// requirePython skips the test without the interpreter or the module, and
// fails it instead under CI, where .ci/run installs them.
func requirePython(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (CI is set: .ci/run installs python3-websockets)", args...)
		}
		t.Skipf(format+"; install it with: apt-get install -y python3-websockets", args...)
	}
	if _, err := os.Stat(python); err != nil {
		missing("%s not found: %v", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python, "-c", "import websockets").CombinedOutput(); err != nil {
		missing("%s cannot import websockets: %v\n%s", python, err, out)
	}
}

// startServer runs a node on 127.0.0.1 and returns its WebSocket URL. The
// node is drained and stopped when the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	url, _ := startServerWith(t, server.Config{})
	return url
}

// startServerWith is startServer for cfg (the demo always off, a 5 s
// drain); it also returns the node.
func startServerWith(t *testing.T, cfg server.Config) (string, *server.Server) {
	t.Helper()
	cfg.NoDemo, cfg.DrainTimeout = true, 5*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return within 15 s of cancel")
		}
	})
	return "ws://" + ln.Addr().String() + "/ws", srv
}

func TestPythonClient(t *testing.T) {
	requirePython(t)
	url := startServer(t)

	// client.py bounds each receive itself; this bounds the process.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "client.py", url)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("client.py exited with %d:\n%s", ee.ExitCode(), out)
		}
		t.Fatalf("run client.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
