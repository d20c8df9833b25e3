package transport_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(s.b.String(), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestConnectDisconnectLogged: every connection is logged once when it
// connects and once when it ends, with who, where, how long, how much and
// why; messages themselves are not logged at the default level.
func TestConnectDisconnectLogged(t *testing.T) {
	var buf syncBuffer
	n := wstest.Start(t, server.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	c := n.MustDial(t, "", nil)
	user := wstest.UserOf(c.Expect("connection_established"))
	c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:log"})
	c.Expect("subscribed")
	c.WS.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "bye now"))
	c.WS.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.WS.ReadMessage(); err != nil {
			break
		}
	}
	var disc []map[string]any
	for i := 0; i < 250 && len(disc) == 0; i++ {
		time.Sleep(20 * time.Millisecond)
		disc = buf.records(t, "disconnect")
	}
	conns := buf.records(t, "connect")
	if len(conns) != 1 || len(disc) != 1 {
		t.Fatalf("want one connect and one disconnect record, got %d and %d", len(conns), len(disc))
	}
	d := disc[0]
	for _, k := range []string{"conn", "user", "remote", "duration", "bytes_in", "bytes_out", "code", "reason", "by"} {
		if _, ok := d[k]; !ok {
			t.Errorf("disconnect record lacks %q: %v", k, d)
		}
	}
	if d["user"] != user || d["code"] != float64(4321) || d["reason"] != "bye now" || d["by"] != "client" || d["conn"] != conns[0]["conn"] {
		t.Errorf("disconnect record = %v", d)
	}
	if in, _ := d["bytes_in"].(float64); in <= 0 {
		t.Errorf("bytes_in = %v", d["bytes_in"])
	}
	if got := buf.records(t, "message"); len(got) != 0 {
		t.Errorf("messages logged at the default level: %v", got)
	}
}

// TestRefusedHandshakeLogged: a handshake refused for its origin, its token
// or its rate is logged with the status, the reason, the remote address
// and the origin, so a browser's bare 1006 can be explained from the log.
func TestRefusedHandshakeLogged(t *testing.T) {
	var buf syncBuffer
	n := wstest.Start(t, server.Config{
		Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
		Auth:   server.AuthConfig{JWTSecret: "0123456789abcdef0123456789abcdef"},
		Transport: transport.Options{
			HandshakeRate:  0.001,
			HandshakeBurst: 1,
		},
	})
	hdr := http.Header{"Origin": {"https://evil.example"}}
	if _, _, err := n.Dial(t, "", hdr); err == nil {
		t.Fatal("a foreign origin connected")
	}
	if _, _, err := n.Dial(t, "token=nonsense", nil); err == nil {
		t.Fatal("a bad token connected")
	}
	if _, _, err := n.Dial(t, "", nil); err == nil {
		t.Fatal("a second handshake passed a burst of 1")
	}
	recs := buf.records(t, "handshake refused")
	want := []struct {
		status float64
		code   string
		level  string
		origin string
	}{
		{403, "origin_not_allowed", "WARN", "https://evil.example"},
		{401, "unauthorized", "WARN", ""},
		{429, "too_many_handshakes", "INFO", ""},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d lines %v, want %d", len(recs), recs, len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r["status"] != w.status || r["code"] != w.code || r["level"] != w.level || r["origin"] != w.origin {
			t.Errorf("line %d: %v, want %+v", i, r, w)
		}
		if remote, _ := r["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
			t.Errorf("line %d: remote %q", i, remote)
		}
		if reason, _ := r["reason"].(string); reason == "" {
			t.Errorf("line %d: no reason", i)
		}
	}
}
