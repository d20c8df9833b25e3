// Package deploy_test checks the deployment files against the real server,
// since no Docker engine or cluster runs here: the Dockerfile's build
// commands are run and their binaries checked to be static, the healthcheck
// probes a live node, the systemd unit passes systemd-analyze, the
// Kubernetes manifest's args start the binary and its probes answer, and
// Debian's nginx with deploy/nginx/switchboard.conf carries WebSocket
// traffic to a node. A missing tool skips its test, except on CI (CI set),
// where it fails.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/internal/testport"
	"gopkg.in/yaml.v3"
)

// wait bounds every wait: a deadlock guard, not a speed expectation.
const wait = 20 * time.Second

// heartbeat is the server's default ping interval (transport): proxies
// must keep idle connections open well beyond it.
const heartbeat = 25 * time.Second

func require(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: the tool must be installed)", msg)
	}
	t.Skip(msg)
}

// goTool finds the go command: on PATH, or where Debian's setup puts it
// (the Makefile adds /usr/local/go/bin to PATH for the same reason).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// dockerfile is the parsed Dockerfile: its instructions, continuation
// lines joined, comments dropped.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trim := strings.TrimSpace(line)
		if cur.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		if strings.HasSuffix(trim, "\\") {
			cur.WriteString(strings.TrimSuffix(trim, "\\") + " ")
			continue
		}
		cur.WriteString(trim)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args), stage})
	}
	return out
}

var (
	buildOnce sync.Once
	built     map[string]string // output name -> path
	buildErr  error
)

// buildAsDockerfile runs the Dockerfile's `go build` commands (with their
// environment, flags and targets; outputs into a temporary directory) and
// returns the binaries by name. Every test shares one build.
func buildAsDockerfile(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		built = map[string]string{}
		for _, in := range parseDockerfile(t) {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			for _, seg := range strings.Split(in.args, "&&") {
				if !strings.Contains(seg, "go build") {
					continue
				}
				name, err := runGoBuild(seg, dir)
				if err != nil {
					buildErr = err
					return
				}
				built[name] = filepath.Join(dir, name)
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if built["switchboard"] == "" || built["healthcheck"] == "" {
		t.Fatalf("the Dockerfile builds %v, want switchboard and healthcheck", built)
	}
	return built
}

// runGoBuild runs one "VAR=x go build ... -o /out/NAME ./pkg" command of the
// Dockerfile with its outputs in dir.
func runGoBuild(seg, dir string) (string, error) {
	words := shellWords(seg)
	var env []string
	for len(words) > 0 && strings.HasPrefix(words[0], "--mount") {
		words = words[1:]
	}
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return "", fmt.Errorf("cannot read the build command %q", seg)
	}
	args := words[1:]
	name := ""
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "${VERSION}", "deploy-test")
		if i > 0 && args[i-1] == "-o" {
			name = filepath.Base(a)
			args[i] = filepath.Join(dir, name)
		}
	}
	if name == "" {
		return "", fmt.Errorf("build command %q has no -o", seg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", seg, err, out)
	}
	return name, nil
}

// shellWords splits a command line on spaces, keeping double-quoted parts
// together (enough for the Dockerfile's build commands).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in, have = !in, true
		case r == ' ' && !in:
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words
}

// TestDockerfile: a multi-stage build whose final stage is a distroless
// static image run as a non-root user, with a HEALTHCHECK on /healthz by a
// program the image contains; the build commands make static binaries, and
// the healthcheck tells a live node from a dead one.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t)
	last := ins[len(ins)-1].stage
	if last < 1 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", last+1)
	}
	copied := map[string]bool{}
	final := map[string]string{}
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			for _, seg := range strings.Split(in.args, "&&") {
				if strings.Contains(seg, "go build") && !strings.Contains(seg, "CGO_ENABLED=0") {
					t.Errorf("a go build without CGO_ENABLED=0: %s", seg)
				}
			}
		}
		if in.stage != last {
			continue
		}
		final[in.cmd] = in.args
		if in.cmd == "COPY" {
			f := strings.Fields(in.args)
			copied[f[len(f)-1]] = true
		}
		if in.cmd == "ENV" {
			final["ENV"] += " " + in.args
		}
	}
	if img := final["FROM"]; !strings.HasPrefix(img, "gcr.io/distroless/static") && img != "scratch" {
		t.Errorf("final image %q: want distroless/static or scratch for a static binary", img)
	}
	if u := final["USER"]; u == "" || strings.HasPrefix(u, "root") || strings.HasPrefix(u, "0") {
		t.Errorf("final stage USER %q: want a non-root user", u)
	}
	execPath := func(what, args string) string {
		var list []string
		if err := json.Unmarshal([]byte(args), &list); err != nil || len(list) == 0 {
			t.Errorf("%s %q: want the exec (JSON) form, which needs no shell", what, args)
			return ""
		}
		if !copied[list[0]] {
			t.Errorf("%s runs %s, which the final stage does not COPY", what, list[0])
		}
		return list[0]
	}
	hc, ok := strings.CutPrefix(final["HEALTHCHECK"], "")
	if i := strings.Index(hc, "CMD "); ok && i >= 0 {
		execPath("HEALTHCHECK", hc[i+4:])
	} else {
		t.Error("no HEALTHCHECK CMD in the final stage")
	}
	execPath("ENTRYPOINT", final["ENTRYPOINT"])
	m := regexp.MustCompile(`SWITCHBOARD_LISTEN=:(\d+)`).FindStringSubmatch(final["ENV"])
	if m == nil || final["EXPOSE"] != m[1] {
		t.Errorf("EXPOSE %q and SWITCHBOARD_LISTEN (%v) disagree", final["EXPOSE"], m)
	}
	if final["STOPSIGNAL"] != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q: the server drains on SIGTERM", final["STOPSIGNAL"])
	}

	bins := buildAsDockerfile(t)
	for name, path := range bins {
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a dynamic loader (PT_INTERP): not static", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()
	}

	n := startServer(t, bins["switchboard"], nil, "serve", "--listen", "127.0.0.1:0", "--log-format", "json")
	probe := func(env []string, args ...string) error {
		cmd := exec.Command(bins["healthcheck"], args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := probe([]string{"SWITCHBOARD_LISTEN=" + n.addr}); err != nil {
		t.Errorf("healthcheck of a live node: %v", err)
	}
	if err := probe(nil, "http://"+n.addr+"/readyz"); err != nil {
		t.Errorf("healthcheck of /readyz: %v", err)
	}
	if err := probe(nil, "http://"+n.addr+"/nope"); err == nil {
		t.Error("healthcheck passed on a 404")
	}
	n.stop(t)
	if err := probe([]string{"SWITCHBOARD_LISTEN=" + n.addr}); err == nil {
		t.Error("healthcheck passed on a stopped node")
	}
}

// node is a running switchboard process.
type node struct {
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
	done chan error
}

// startServer runs bin with args and env and waits for its "switchboard
// started" log line (JSON).
func startServer(t *testing.T, bin string, env []string, args ...string) *node {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, log: &bytes.Buffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.done
	})
	started := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var l struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "switchboard started" {
				select {
				case started <- l.Listen:
				default:
				}
			}
		}
		n.done <- cmd.Wait()
	}()
	select {
	case n.addr = <-started:
	case err := <-n.done:
		n.done <- err
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s %v exited before starting: %v\n%s", bin, args, err, n.log)
	case <-time.After(wait):
		t.Fatalf("%s did not start within %v", bin, wait)
	}
	return n
}

// stop sends SIGTERM (a drain) and checks a clean exit.
func (n *node) stop(t *testing.T) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(wait + 30*time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: wait}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// withListen replaces the value of the listen flag in args ("--listen X"
// or "--listen=X") with 127.0.0.1:0 and returns the original value.
func withListen(t *testing.T, args []string) ([]string, string) {
	t.Helper()
	out := append([]string(nil), args...)
	for i, a := range out {
		switch {
		case (a == "--listen" || a == "-listen") && i+1 < len(out):
			orig := out[i+1]
			out[i+1] = "127.0.0.1:0"
			return out, orig
		case strings.HasPrefix(a, "--listen="):
			out[i] = "--listen=127.0.0.1:0"
			return out, strings.TrimPrefix(a, "--listen=")
		}
	}
	t.Fatalf("no --listen in %v", args)
	return nil, ""
}

func durationFlag(t *testing.T, args []string, name string) time.Duration {
	t.Helper()
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--"+name+"=")
		if !ok && a == "--"+name && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("--%s %q: %v", name, v, err)
			}
			return d
		}
	}
	t.Fatalf("no --%s in %v", name, args)
	return 0
}

// TestSystemdUnit: systemd-analyze accepts the unit with no warning and
// rates its sandbox as well hardened; its ExecStart flags start the server;
// stopping waits longer than the drain; the open-file limit is raised.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("systemd/switchboard.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	keys := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	args := strings.Fields(keys["ExecStart"])
	if len(args) < 2 || args[0] != "/usr/local/bin/switchboard" || args[1] != "serve" {
		t.Fatalf("ExecStart %q", keys["ExecStart"])
	}
	if n, err := strconv.Atoi(keys["LimitNOFILE"]); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%s: one file per connection needs a high limit", keys["LimitNOFILE"])
	}
	stopWait, err := time.ParseDuration(keys["TimeoutStopSec"])
	if err != nil || stopWait <= durationFlag(t, args, "drain-timeout") {
		t.Errorf("TimeoutStopSec=%s must exceed --drain-timeout", keys["TimeoutStopSec"])
	}
	for k, v := range map[string]string{"KillSignal": "SIGTERM", "NoNewPrivileges": "yes", "DynamicUser": "yes", "ProtectSystem": "strict"} {
		if keys[k] != v {
			t.Errorf("%s=%q, want %q", k, keys[k], v)
		}
	}

	bins := buildAsDockerfile(t)
	// The flags are the server's: it starts with them (on a free port).
	runArgs, listen := withListen(t, args[1:])
	if _, _, err := net.SplitHostPort(listen); err != nil {
		t.Errorf("--listen %q: %v", listen, err)
	}
	n := startServer(t, bins["switchboard"], []string{"SWITCHBOARD_API_KEY=systemd-test-key-0123456789"}, runArgs...)
	if st, body := httpGet(t, "http://"+n.addr+"/readyz"); st != 200 {
		t.Errorf("/readyz: %d %s", st, body)
	}
	n.stop(t)

	analyze, err := exec.LookPath("systemd-analyze")
	require(t, err == nil, "systemd-analyze is not installed (Debian package systemd)")
	// verify needs ExecStart's binary to exist: point it at the build.
	dir := t.TempDir()
	path := filepath.Join(dir, "switchboard.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/switchboard", bins["switchboard"])), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(analyze, "verify", path)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
	// The exposure score runs from 0 (locked down) to 10 (unprotected);
	// systemd calls up to 2.0 "OK".
	out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
	}
}

// TestKubernetesManifest: the Deployment's args start the server; the
// probes name the server's real paths on the port it listens on; the grace
// period outlasts preStop plus the drain; the pod runs as non-root with a
// read-only root; the Ingress keeps idle connections far beyond the
// heartbeat.
func TestKubernetesManifest(t *testing.T) {
	t.Parallel()
	f, err := os.Open("kubernetes/switchboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		docs[d["kind"].(string)] = d
	}
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[k]
			case int:
				l, _ := v.([]any)
				if k >= len(l) {
					return nil
				}
				v = l[k]
			}
		}
		return v
	}
	dep := docs["Deployment"]
	if dep == nil || docs["Service"] == nil || docs["Ingress"] == nil {
		t.Fatalf("want a Deployment, a Service and an Ingress; have %v", docs)
	}
	pod := get(dep, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	var args []string
	for _, a := range get(c, "args").([]any) {
		args = append(args, a.(string))
	}
	runArgs, listen := withListen(t, args)
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("--listen %q: %v", listen, err)
	}
	if p := get(c, "ports", 0, "containerPort"); fmt.Sprint(p) != port || get(c, "ports", 0, "name") != "http" {
		t.Errorf("containerPort %v (name %v), but the server listens on %s", p, get(c, "ports", 0, "name"), port)
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if get(c, probe, "httpGet", "path") != path || get(c, probe, "httpGet", "port") != "http" {
			t.Errorf("%s: %v, want %s on port http", probe, get(c, probe), path)
		}
	}
	grace, _ := get(pod, "terminationGracePeriodSeconds").(int)
	preStop, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	drain := durationFlag(t, args, "drain-timeout")
	if preStop <= 0 {
		t.Error("no preStop sleep: the pod would drain while still receiving new connections")
	}
	if time.Duration(grace)*time.Second <= time.Duration(preStop)*time.Second+drain {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %d s + --drain-timeout %v", grace, preStop, drain)
	}
	if get(pod, "securityContext", "runAsNonRoot") != true || get(c, "securityContext", "readOnlyRootFilesystem") != true ||
		get(c, "securityContext", "allowPrivilegeEscalation") != false || get(c, "securityContext", "capabilities", "drop", 0) != "ALL" {
		t.Errorf("security contexts: pod %v, container %v", get(pod, "securityContext"), get(c, "securityContext"))
	}
	for _, a := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
		v, _ := get(docs["Ingress"], "metadata", "annotations", "nginx.ingress.kubernetes.io/"+a).(string)
		if n, err := strconv.Atoi(v); err != nil || time.Duration(n)*time.Second < 60*time.Second || time.Duration(n)*time.Second <= 2*heartbeat {
			t.Errorf("Ingress %s %q: want well above the %v heartbeat (and nginx's 60 s default)", a, v, heartbeat)
		}
	}
	if get(docs["Service"], "spec", "ports", 0, "targetPort") != "http" {
		t.Errorf("Service targetPort %v", get(docs["Service"], "spec", "ports", 0, "targetPort"))
	}

	// The container's args and environment start the server, and the probes
	// answer 200 at their paths.
	var env []string
	for _, e := range get(c, "env").([]any) {
		name := get(e, "name").(string)
		env = append(env, name+"="+strings.ToLower(strings.ReplaceAll(name, "_", "-"))+"-from-the-pod-0123456789")
	}
	n := startServer(t, buildAsDockerfile(t)["switchboard"], env, runArgs...)
	for _, path := range []string{"/readyz", "/healthz"} {
		if st, body := httpGet(t, "http://"+n.addr+path); st != 200 {
			t.Errorf("%s: %d %s", path, st, body)
		}
	}
	if st, _ := httpGet(t, "http://"+n.addr+"/"); st != 404 {
		t.Errorf("GET / answered %d: the demo page should be off (--no-demo)", st)
	}
	n.stop(t)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	return testport.Free(t)
}

// TestNginxProxy runs Debian's nginx with deploy/nginx/switchboard.conf in
// front of a node (both on loopback): nginx -t accepts it; WebSocket
// traffic, a publish from the API and the drain's close code pass through;
// the keyless API refuses proxied requests; /metrics is not exposed; idle
// connections are kept far beyond the heartbeat.
func TestNginxProxy(t *testing.T) {
	t.Parallel()
	conf, err := os.ReadFile("nginx/switchboard.conf")
	if err != nil {
		t.Fatal(err)
	}
	// Static: the /ws location keeps idle connections open for much longer
	// than the heartbeat (nginx's default is 60 s).
	ws := regexp.MustCompile(`(?s)location = /ws \{(.*?)\n    \}`).FindSubmatch(conf)
	if ws == nil {
		t.Fatal("no `location = /ws` block")
	}
	m := regexp.MustCompile(`proxy_read_timeout (\d+)s;`).FindSubmatch(ws[1])
	if m == nil {
		t.Fatal("no proxy_read_timeout in the /ws location")
	}
	if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second <= 2*heartbeat || n < 60 {
		t.Errorf("proxy_read_timeout %ss: want well above the %v heartbeat and nginx's 60 s default", m[1], heartbeat)
	}
	for _, h := range []string{"proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;"} {
		if !bytes.Contains(ws[1], []byte(h)) {
			t.Errorf("the /ws location lacks %q", h)
		}
	}

	// The /sse location passes events unbuffered and keeps streams open.
	sseLoc := regexp.MustCompile(`(?s)location = /sse \{(.*?)\n    \}`).FindSubmatch(conf)
	if sseLoc == nil {
		t.Fatal("no `location = /sse` block")
	}
	for _, h := range []string{"proxy_buffering off;", "proxy_read_timeout 3600s;", "proxy_http_version 1.1;"} {
		if !bytes.Contains(sseLoc[1], []byte(h)) {
			t.Errorf("the /sse location lacks %q", h)
		}
	}

	// So does the emulation's, which also takes the POST limit (4 MiB).
	emuLoc := regexp.MustCompile(`(?s)location /emulation/ \{(.*?)\n    \}`).FindSubmatch(conf)
	if emuLoc == nil {
		t.Fatal("no `location /emulation/` block")
	}
	for _, h := range []string{"proxy_buffering off;", "proxy_read_timeout 3600s;", "proxy_http_version 1.1;", "client_max_body_size 5m;"} {
		if !bytes.Contains(emuLoc[1], []byte(h)) {
			t.Errorf("the /emulation/ location lacks %q", h)
		}
	}

	nginx, err := exec.LookPath("nginx")
	if err != nil {
		_, err = os.Stat("/usr/sbin/nginx")
		nginx = "/usr/sbin/nginx"
	}
	require(t, err == nil, "nginx is not installed (apt-get install -y nginx)")

	bin := buildAsDockerfile(t)["switchboard"]
	n := startServer(t, bin, nil, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--trusted-proxies", "127.0.0.1", "--drain-timeout", "5s")

	// The shipped file, pointed at the node and at a free loopback port.
	port := freePort(t)
	site := string(conf)
	for old, repl := range map[string]string{
		"server 127.0.0.1:8080;": "server " + n.addr + ";",
		"listen 80;":             fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"listen [::]:80;":        "",
	} {
		if strings.Count(site, old) != 1 {
			t.Fatalf("switchboard.conf should contain %q once (the test rewrites it)", old)
		}
		site = strings.Replace(site, old, repl, 1)
	}
	dir := t.TempDir()
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    # Run as root, nginx's workers are nobody, who cannot enter the test's
    # private temp directory: keep request bodies (the emulation's POSTs)
    # in memory instead of a temp file there.
    client_body_buffer_size 5m;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/switchboard.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "switchboard.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	if out, err := exec.Command(nginx, append(base, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	proxy := exec.Command(nginx, base...)
	var nginxOut bytes.Buffer
	proxy.Stdout, proxy.Stderr = &nginxOut, &nginxOut
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- proxy.Wait() }()
	t.Cleanup(func() {
		_ = proxy.Process.Signal(syscall.SIGQUIT) // graceful stop
		select {
		case <-proxyDone:
		case <-time.After(wait):
			_ = proxy.Process.Kill()
			<-proxyDone
		}
	})
	front := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", front)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx does not listen on %s: %v\n%s\n%s", front, err, nginxOut.String(), errLog)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if st, body := httpGet(t, "http://"+front+"/healthz"); st != 200 {
		t.Errorf("/healthz through nginx: %d %s", st, body)
	}
	if st, body := httpGet(t, "http://"+front+"/"); st != 200 || !strings.Contains(body, "Switchboard") {
		t.Errorf("demo page through nginx: %d", st)
	}
	if st, _ := httpGet(t, "http://"+front+"/metrics"); st != 404 {
		t.Errorf("/metrics through nginx: %d, want 404", st)
	}
	// No API key: the API refuses whatever comes through the proxy, while
	// the same request straight to the node works.
	if st, body := httpGet(t, "http://"+front+"/api/stats"); st != 403 || !strings.Contains(body, "proxy") {
		t.Errorf("/api/stats through nginx: %d %s, want 403 (proxy)", st, body)
	}
	if st, _ := httpGet(t, "http://"+n.addr+"/api/stats"); st != 200 {
		t.Errorf("/api/stats on the node: %d", st)
	}

	// WebSocket through nginx: subscribe, receive a publish from the API,
	// publish and get the ack.
	c, resp, err := (&websocket.Dialer{HandshakeTimeout: wait, Subprotocols: []string{"switchboard.v1"}}).Dial("ws://"+front+"/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket through nginx: %v (%v)", err, resp)
	}
	defer c.Close()
	if resp.Header.Get("Sec-Websocket-Protocol") != "switchboard.v1" {
		t.Errorf("subprotocol %q lost in the proxy", resp.Header.Get("Sec-Websocket-Protocol"))
	}
	next := func(typ string) map[string]any {
		t.Helper()
		for i := 0; i < 20; i++ {
			_ = c.SetReadDeadline(time.Now().Add(wait))
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				t.Fatalf("waiting for %s through nginx: %v", typ, err)
			}
			if m["type"] == typ {
				return m
			}
		}
		t.Fatalf("no %s", typ)
		return nil
	}
	next("connection_established")
	_ = c.WriteJSON(map[string]string{"type": "subscribe", "id": "s", "room": "match:1"})
	next("subscribed")
	sse := openSSEThrough(t, front, "match:1")
	req, _ := http.NewRequest("POST", "http://"+n.addr+"/api/broadcast/match:1", strings.NewReader(`{"type":"score_update","data":{"home":1,"away":0}}`))
	req.Header.Set("Content-Type", "application/json")
	pr, err := http.DefaultClient.Do(req)
	if err != nil || pr.StatusCode != 200 {
		t.Fatalf("publish: %v %v", err, pr)
	}
	pr.Body.Close()
	if m := next("score_update"); fmt.Sprint(m["data"]) != "map[away:0 home:1]" {
		t.Errorf("score_update %v", m)
	}
	_ = c.WriteJSON(map[string]any{"type": "message", "id": "m1", "room": "match:1", "data": map[string]string{"text": "through nginx"}})
	next("ack")
	// The SSE stream through nginx got the same event, with its id, as it
	// came (not held in a proxy buffer).
	if ev := sse.next(t, "score_update"); !strings.Contains(ev.data, `"home":1`) || !strings.HasPrefix(ev.id, "") || ev.id == "" {
		t.Errorf("SSE through nginx: %+v", ev)
	}

	// An emulated session through nginx: the stream's first line comes
	// at once, and a POSTed ping (with a body over nginx's 1 MiB default)
	// is answered on it.
	t.Cleanup(func() {
		if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); t.Failed() && len(b) > 0 {
			t.Log(string(b))
		}
	})
	emuThrough(t, front)

	// The admin socket passes too, and the keyless dashboard refuses it
	// because it came through a proxy.
	a, _, err := websocket.DefaultDialer.Dial("ws://"+front+"/admin/ws", nil)
	if err != nil {
		t.Fatalf("admin socket through nginx: %v", err)
	}
	defer a.Close()
	_ = a.WriteJSON(map[string]string{"type": "auth", "key": ""})
	_ = a.SetReadDeadline(time.Now().Add(wait))
	_, _, err = a.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 {
		t.Errorf("keyless dashboard through nginx: %v, want close 4003", err)
	}

	// Draining the node: the client behind nginx gets the 1012 close frame.
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 20; i++ {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, _, err = c.ReadMessage(); err != nil {
			break
		}
	}
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Errorf("drain through nginx: %v, want close 1012", err)
	}
	if ev := sse.next(t, "disconnect"); !strings.Contains(ev.data, `"code":1012`) {
		t.Errorf("SSE drain through nginx: %+v", ev)
	}
}

// sseThrough is an SSE stream read line by line.
type sseThrough struct {
	resp *http.Response
	br   *bufio.Reader
}

type sseEv struct{ id, event, data string }

// openSSEThrough opens GET /sse?room=room at addr and checks the proxy
// passed the stream's headers.
// emuThrough runs a short emulated session through the proxy at addr.
func emuThrough(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/emulation/stream?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("emulation stream through nginx: %s %v", resp.Status, resp.Header)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		br := bufio.NewReader(resp.Body)
		for range 50 {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			lines <- line
		}
	}()
	line := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("emulation stream through nginx ended")
			}
			return l
		case <-time.After(wait):
			t.Fatal("nothing on the emulation stream through nginx (buffered?)")
		}
		return ""
	}
	var ce struct {
		Data struct {
			Session string `json:"session"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(line()), &ce); err != nil || ce.Data.Session == "" {
		t.Fatalf("connection_established through nginx: %v %+v", err, ce)
	}
	frames := `{"type":"ping","id":"pad","data":"` + strings.Repeat("x", 60000) + `"}`
	body := `{"session":"` + ce.Data.Session + `","frames":[` + strings.Repeat(frames+",", 19) + `{"type":"ping","id":"nginx"}]}`
	pr, err := http.Post("http://"+addr+"/emulation/send", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != http.StatusNoContent {
		t.Fatalf("POST of %d bytes through nginx: %s", len(body), pr.Status)
	}
	for range 21 {
		if l := line(); strings.Contains(l, `"id":"nginx"`) {
			return
		}
	}
	t.Fatal("no pong through nginx")
}

func openSSEThrough(t *testing.T, addr, room string) *sseThrough {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/sse?room=" + room)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE through nginx: %s %v", resp.Status, resp.Header)
	}
	return &sseThrough{resp: resp, br: bufio.NewReader(resp.Body)}
}

// next returns the next event named typ, reading at most 50 events and for
// at most wait.
func (s *sseThrough) next(t *testing.T, typ string) sseEv {
	t.Helper()
	type res struct {
		ev  sseEv
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var ev sseEv
		for n := 0; n < 50; {
			line, err := s.br.ReadString('\n')
			if err != nil {
				ch <- res{err: err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				if ev.data != "" {
					n++
					if ev.event == typ {
						ch <- res{ev: ev}
						return
					}
				}
				ev = sseEv{}
				continue
			}
			f, v, _ := strings.Cut(line, ": ")
			switch f {
			case "id":
				ev.id = v
			case "event":
				ev.event = v
			case "data":
				ev.data = v
			}
		}
		ch <- res{err: fmt.Errorf("no %s event in 50", typ)}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("SSE through nginx, waiting for %s: %v", typ, r.err)
		}
		return r.ev
	case <-time.After(wait):
		t.Fatalf("SSE through nginx: no %s within %v", typ, wait)
	}
	return sseEv{}
}
