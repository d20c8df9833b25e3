package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring
		stderr     string // substring
		noStdout   bool
		wantPrefix string
	}{
		{args: []string{"version"}, code: 0, wantPrefix: "switchboard "},
		{args: []string{"--version"}, code: 0, wantPrefix: "switchboard "},
		{args: []string{"help"}, code: 0, stdout: "usage: switchboard"},
		{args: nil, code: 2, stderr: "usage: switchboard", noStdout: true},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, noStdout: true},
		{args: []string{"serve", "-h"}, code: 0, stderr: "-heartbeat-interval"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := runCmd(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errs)
			}
			if !strings.Contains(out, tt.stdout) || !strings.Contains(errs, tt.stderr) || !strings.HasPrefix(out, tt.wantPrefix) {
				t.Errorf("stdout %q stderr %q", out, errs)
			}
			if tt.noStdout && out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
	if _, out, _ := runCmd("version"); strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "switchboard "+versionString()+" (") {
		t.Errorf("version prints %q, want one line \"switchboard VERSION (...)\"", out)
	}
}

// TestServeRefusesBadSettings: every bad flag or SWITCHBOARD_* value exits
// 2 before anything listens, naming what is wrong. (Not parallel: t.Setenv.)
func TestServeRefusesBadSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // in stderr
		notWant string
	}{
		{name: "bad duration flag", args: []string{"--heartbeat-interval", "soon"}, want: "heartbeat-interval"},
		{name: "bad int flag", args: []string{"--max-connections", "many"}, want: "max-connections"},
		{name: "unknown flag", args: []string{"--no-such-flag"}, want: "no-such-flag"},
		{name: "extra argument", args: []string{"extra"}, want: `unexpected argument "extra"`},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: "--log-level"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: "--log-format"},
		{name: "invalid config", args: []string{"--heartbeat-interval", "1s"}, want: "heartbeat interval 1s is outside"},
		{name: "invalid policy", args: []string{"--slow-consumer-policy", "drop_newest"}, want: "drop_newest"},
		{name: "bad env duration", env: map[string]string{"SWITCHBOARD_HEARTBEAT_INTERVAL": "soon"}, want: `SWITCHBOARD_HEARTBEAT_INTERVAL="soon"`},
		{name: "bad env int", env: map[string]string{"SWITCHBOARD_MAX_CONNECTIONS": "many"}, want: "SWITCHBOARD_MAX_CONNECTIONS"},
		{name: "bad env bool", env: map[string]string{"SWITCHBOARD_COMPRESSION": "maybe"}, want: "SWITCHBOARD_COMPRESSION"},
		{name: "bad env dash name", env: map[string]string{"SWITCHBOARD_MAX_MESSAGE_SIZE": "big"}, want: "SWITCHBOARD_MAX_MESSAGE_SIZE"},
		{name: "env value invalid for the server", env: map[string]string{"SWITCHBOARD_PONG_TIMEOUT": "30s"}, want: "pong timeout 30s"},
		{name: "flag wins over env", args: []string{"--heartbeat-interval", "1s"},
			env: map[string]string{"SWITCHBOARD_HEARTBEAT_INTERVAL": "soon"}, want: "heartbeat interval 1s", notWant: "SWITCHBOARD_HEARTBEAT_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			// Should a case be accepted after all, it must not take :8080.
			args := append([]string{"serve", "--listen", "127.0.0.1:0"}, tt.args...)
			done := make(chan struct{})
			var code int
			var errs string
			go func() {
				defer close(done)
				code, _, errs = runCmd(args...)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("serve started instead of refusing the settings")
			}
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, errs)
			}
			if !strings.Contains(errs, tt.want) || (tt.notWant != "" && strings.Contains(errs, tt.notWant)) {
				t.Errorf("stderr %q, want it to mention %q", errs, tt.want)
			}
		})
	}
}

// TestServeEndToEnd builds the binary, runs `serve` on a loopback port,
// connects, and stops it with SIGTERM: the client gets disconnect 1012 and
// close 1012, and the process exits 0.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	p := startServe(t, "--listen", "127.0.0.1:0", "--log-format", "text", "--drain-timeout", "5s")
	addr, cmd, exited, logs := p.addr, p.cmd, p.exited, &p.logs

	c, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	read := func() *protocol.Envelope {
		t.Helper()
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var e protocol.Envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		return &e
	}
	if e := read(); e.Type != protocol.TypeConnectionEstablished {
		t.Fatalf("first message %q", e.Type)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"s","room":"e2e"}`)); err != nil {
		t.Fatal(err)
	}
	if e := read(); e.Type != protocol.TypeSubscribed {
		t.Fatalf("got %q, want subscribed", e.Type)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e := read()
	var d protocol.Disconnect
	if e.Type != protocol.TypeDisconnect || json.Unmarshal(e.Data, &d) != nil || d.Code != 1012 || !d.Reconnect {
		t.Fatalf("got %s, want disconnect 1012", protocol.Encode(e))
	}
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Fatalf("read after disconnect: %v, want close 1012", err)
	}
	select {
	case <-exited:
		if p.waitErr != nil {
			t.Fatalf("exit: %v\n%s", p.waitErr, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", logs.String())
	}
	if want := "demo=http://" + addr + "/ admin=http://" + addr + "/admin"; !strings.Contains(logs.String(), want) {
		t.Errorf("no start-up line with %q:\n%s", want, logs.String())
	}
	if !strings.Contains(logs.String(), "switchboard stopped") {
		t.Errorf("no shutdown log line:\n%s", logs.String())
	}
}

// lockedBuffer collects a subprocess's log lines for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) add(s string) {
	l.mu.Lock()
	l.b.WriteString(s)
	l.mu.Unlock()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveProcess is a `switchboard serve` subprocess.
type serveProcess struct {
	addr    string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // valid once exited is closed
	logs    lockedBuffer
}

// startServe builds the binary and starts `serve` with args (which must
// listen on 127.0.0.1:0 with text logs), returning once it has logged its
// address. It is killed when the test ends.
func startServe(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go" // where the machine keeps Go when PATH lacks it
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, exited: make(chan struct{})}
	logs := &p.logs
	logsDone := make(chan struct{})
	addrc := make(chan string, 1)
	go func() {
		defer close(logsDone)
		re := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.add(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	exited := p.exited
	go func() {
		<-logsDone // Wait closes the pipe: read it all first
		p.waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // no-op once it has exited
		<-exited
	})
	select {
	case p.addr = <-addrc:
	case <-exited:
		t.Fatalf("serve exited early: %v\n%s", p.waitErr, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not log its address")
	}
	return p
}

// TestSecondSignalExitsAtOnce: a drain stuck on a client whose socket is
// full (it stopped reading) would take the whole drain deadline; a second
// SIGTERM ends the process at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	p := startServe(t, "--listen", "127.0.0.1:0", "--log-format", "text",
		"--drain-timeout", "60s", "--write-timeout", "60s", "--max-bytes-per-second", "0", "--max-messages-per-second", "0")

	// A client with a tiny receive buffer subscribes, then never reads.
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	stuck, _, err := d.Dial("ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := stuck.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"s","room":"feed:stuck"}`)); err != nil {
		t.Fatal(err)
	}
	// 8 MiB of events through the HTTP API: more than the loopback socket
	// buffers hold, so the server's write to this client blocks (for up to
	// the 60 s write timeout) and the drain cannot finish.
	big := `{"type":"chunk","data":"` + strings.Repeat("x", 60<<10) + `"}`
	for i := 0; i < 140; i++ {
		resp, err := http.Post("http://"+p.addr+"/api/broadcast/feed:stuck", "application/json", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), "draining") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.exited:
		t.Fatalf("the drain did not wait for the stuck client, so a second signal proves nothing\n%s", p.logs.String())
	case <-time.After(time.Second):
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("exit took %s after the second signal", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after the second SIGTERM\n%s", p.logs.String())
	}
}

// TestHelpListsEveryCommand: the help names every command run dispatches,
// and every command it names is one run knows.
func TestHelpListsEveryCommand(t *testing.T) {
	_, out, _ := runCmd("-h")
	listed := map[string]bool{}
	inCommands := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "commands:":
			inCommands = true
		case inCommands && strings.HasPrefix(line, "  "):
			listed[strings.Fields(line)[0]] = true
		case inCommands && line == "":
			inCommands = false
		}
	}
	for _, cmd := range []string{"serve", "connect", "bench", "config", "version"} {
		if !listed[cmd] {
			t.Errorf("help does not list %q:\n%s", cmd, out)
		}
	}
	for cmd := range listed {
		if _, _, errs := runCmd(cmd, "-h"); strings.Contains(errs, "unknown command") {
			t.Errorf("help lists %q, which run does not know", cmd)
		}
	}
}

// TestBrowserURLs: the start-up line names the URLs to open, with
// localhost for an address that listens on every interface.
func TestBrowserURLs(t *testing.T) {
	tests := []struct {
		addr        string
		cfg         server.Config
		demo, admin string
	}{
		{"[::]:8080", server.Config{}, "http://localhost:8080/", "http://localhost:8080/admin"},
		{"0.0.0.0:9000", server.Config{}, "http://localhost:9000/", "http://localhost:9000/admin"},
		{"127.0.0.1:8081", server.Config{NoAdmin: true}, "http://127.0.0.1:8081/", ""},
		{"[::1]:8082", server.Config{NoDemo: true, TLSCertFile: "c.pem"}, "", "https://[::1]:8082/admin"},
	}
	for _, tt := range tests {
		addr, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if demo, admin := browserURLs(addr, tt.cfg); demo != tt.demo || admin != tt.admin {
			t.Errorf("%s: %q %q, want %q %q", tt.addr, demo, admin, tt.demo, tt.admin)
		}
	}
}
