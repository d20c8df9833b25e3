package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// connectNode runs a node on loopback for connect's tests; stop drains it
// (also done when the test ends).
type connectNode struct {
	srv  *server.Server
	url  string
	stop func()
}

func startConnectNode(t *testing.T) *connectNode {
	t.Helper()
	n := wstest.Start(t, server.Config{NoDemo: true, DrainTimeout: 5 * time.Second})
	return &connectNode{srv: n.Srv, url: n.URL(), stop: n.Stop}
}

// syncBuffer is a bytes.Buffer the test may read while connect writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// jsonLines parses stdout, failing the test on a line that is not JSON.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stdout line %q is not a JSON object: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestConnectPipe drives every command through a pipe, as in
// `printf '/sub r\n...' | switchboard connect URL`.
func TestConnectPipe(t *testing.T) {
	node := startConnectNode(t)
	script := strings.Join([]string{
		"/sub chat:1",
		"/pub chat:1 hello",
		`/pub chat:1 {"x":1}`,
		"/history chat:1",
		"/presence chat:1",
		`{"type":"ping","id":"raw1"}`,
		`{"type":"ack"}`, // a server-only type: the server answers with an error
		"not json and not a command",
		"/frobnicate x",
		"/sub",
		"/unsub nowhere",
		"/unsub chat:1",
		"",
	}, "\n")
	var stdout, stderr syncBuffer
	code := connect([]string{"--wait", "300ms", node.url}, strings.NewReader(script), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	lines := jsonLines(t, stdout.String())
	find := func(what string, ok func(m map[string]any) bool) map[string]any {
		t.Helper()
		for _, m := range lines {
			if ok(m) {
				return m
			}
		}
		t.Errorf("stdout has no %s:\n%s", what, stdout.String())
		return nil
	}
	data := func(m map[string]any) map[string]any { d, _ := m["data"].(map[string]any); return d }
	hello := find("hello event", func(m map[string]any) bool {
		return m["type"] == "message" && m["room"] == "chat:1" && m["data"] == "hello"
	})
	find("JSON event", func(m map[string]any) bool {
		return m["type"] == "message" && data(m) != nil && data(m)["x"] == float64(1)
	})
	if hello != nil {
		find("ack of the hello event", func(m map[string]any) bool {
			return m["type"] == "ack" && m["room"] == "chat:1" && data(m) != nil && data(m)["event_id"] == hello["id"]
		})
	}
	find("history_result with both events", func(m map[string]any) bool {
		ev, _ := data(m)["events"].([]any)
		return m["type"] == "history_result" && len(ev) == 2
	})
	find("presence_result", func(m map[string]any) bool {
		return m["type"] == "presence_result" && data(m)["clients"] == float64(1)
	})
	find("pong of the raw ping", func(m map[string]any) bool { return m["type"] == "pong" && m["id"] == "raw1" })
	find("error for the raw ack", func(m map[string]any) bool {
		return m["type"] == "error" && data(m)["code"] == protocol.ErrUnknownType
	})
	for _, want := range []string{
		"connected: user anon-", "subscribed to chat:1", "unsubscribed from chat:1",
		"must be a JSON object", "unknown command /frobnicate", "/sub needs a room", "/unsub nowhere: not subscribed",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestConnectExitStatus checks each documented exit status.
func TestConnectExitStatus(t *testing.T) {
	node := startConnectNode(t)
	// serverEnds runs connect, subscribes, then lets the server end the
	// connection with end; it returns the exit status.
	serverEnds := func(t *testing.T, args []string, end func(connID string)) (int, string) {
		t.Helper()
		pr, pw := io.Pipe()
		defer pw.Close()
		var stdout, stderr syncBuffer
		codec := make(chan int, 1)
		go func() { codec <- connect(append(args, node.url), pr, &stdout, &stderr) }()
		room := "exit:" + strings.ReplaceAll(t.Name(), "/", "-")
		if _, err := io.WriteString(pw, "/sub "+room+"\n"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if members, ok := node.srv.Hub.RoomMembers(room); ok && len(members) == 1 {
				end(members[0].ConnectionID)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("connect never subscribed; stderr:\n%s", stderr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case code := <-codec:
			return code, stderr.String()
		case <-time.After(15 * time.Second):
			t.Fatalf("connect did not exit; stderr:\n%s", stderr.String())
			return 0, ""
		}
	}
	closeWith := func(code protocol.CloseCode) func(string) {
		return func(connID string) {
			_ = node.srv.Hub.DisconnectConn(context.Background(), connID, protocol.NewDisconnect(code, ""))
		}
	}
	for _, tc := range []struct {
		code protocol.CloseCode
		want int
	}{
		{protocol.CloseNormal, 0},
		{protocol.CloseKicked, 3},
		{protocol.CloseUnauthorized, 3},
		{protocol.CloseBanned, 3},
		{protocol.ClosePolicyViolation, 3},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			if got, errs := serverEnds(t, nil, closeWith(tc.code)); got != tc.want {
				t.Errorf("exit %d after close %d, want %d; stderr:\n%s", got, tc.code, tc.want, errs)
			}
		})
	}

	// Reconnect attempts used up: the node goes away for good.
	t.Run("gave up", func(t *testing.T) {
		got, errs := serverEnds(t, []string{"--max-attempts", "1"}, func(string) { node.stop() })
		if got != 4 || !strings.Contains(errs, "gave up") {
			t.Errorf("exit %d, want 4 with a 'gave up' message; stderr:\n%s", got, errs)
		}
	})
}

func TestConnectFirstConnectionFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	node := startConnectNode(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"refused", []string{"--max-attempts", "1", "ws://" + closed + "/ws"}, "refused"},
		{"timeout", []string{"--timeout", "300ms", "ws://" + closed + "/ws"}, "deadline"},
		{"404", []string{strings.TrimSuffix(node.url, "/ws") + "/nope"}, "HTTP 404"},
		{"bad scheme", []string{"ftp://" + closed}, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			code := connect(tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, want 1 with %q; stderr:\n%s", code, tc.want, stderr.String())
			}
		})
	}
}

func TestConnectUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "want exactly one URL"},
		{[]string{"ws://a/ws", "ws://b/ws"}, 2, "want exactly one URL"},
		{[]string{"--frob", "ws://a/ws"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "Exit status:"},
	} {
		var stdout, stderr syncBuffer
		code := connect(tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("connect %q: exit %d, want %d with %q; stderr:\n%s", tc.args, code, tc.code, tc.want, stderr.String())
		}
	}
}

// TestConnectThroughRun goes through run(), reading the process's stdin
// (a pipe here).
func TestConnectThroughRun(t *testing.T) {
	node := startConnectNode(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old; r.Close() })
	if _, err := w.WriteString("/pub chat:run hi\n/quit\n"); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var stdout, stderr syncBuffer
	if code := run([]string{"connect", node.url}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	lines := jsonLines(t, stdout.String())
	if len(lines) != 1 || lines[0]["type"] != "ack" {
		t.Errorf("stdout %q, want the ack alone", stdout.String())
	}
	var out syncBuffer
	run([]string{"help"}, &out, &out)
	if !strings.Contains(out.String(), "connect") {
		t.Errorf("usage does not list connect:\n%s", out.String())
	}
}
