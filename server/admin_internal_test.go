package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// TestAdminAuthDeadline: a socket that never sends its auth message is
// closed with 4001 and told why, so idle sockets cannot pile up.
func TestAdminAuthDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(ctx, Config{NoDemo: true, NoAdmin: true})
	if err != nil {
		t.Fatal(err)
	}
	a := &admin{ctx: ctx, hub: s.Hub, ws: s.WS, log: slog.New(slog.DiscardHandler), slots: make(chan struct{}, 1), every: time.Second, wait: 50 * time.Millisecond}
	ts := httptest.NewServer(a)
	defer ts.Close()
	dial := func() (*websocket.Conn, error) {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
		return ws, err
	}
	ws, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// The one slot is taken: a second socket is refused with 503.
	if ws2, err := dial(); err == nil {
		ws2.Close()
		t.Error("a second socket was accepted beyond the cap of 1")
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || !strings.Contains(ce.Text, "no auth message") {
		t.Fatalf("got %v, want close 4001 (no auth message)", err)
	}
	// The slot is free again once the socket is gone.
	deadline := time.Now().Add(10 * time.Second)
	for len(a.slots) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed socket still holds its slot")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdminIdle: the server pings; a page that answers keeps its socket
// past the idle timeout, one that stays silent loses it.
func TestAdminIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(ctx, Config{NoDemo: true, NoAdmin: true})
	if err != nil {
		t.Fatal(err)
	}
	a := &admin{ctx: ctx, hub: s.Hub, ws: s.WS, log: slog.New(slog.DiscardHandler), slots: make(chan struct{}, 4),
		every: 20 * time.Millisecond, wait: 5 * time.Second, ping: 50 * time.Millisecond, idle: 300 * time.Millisecond}
	ts := httptest.NewServer(a)
	defer ts.Close()
	open := func(answer bool) *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		if !answer {
			ws.SetPingHandler(func(string) error { return nil }) // a vanished page: no pong
		}
		if err := ws.WriteJSON(map[string]string{"type": "auth"}); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	live, silent := open(true), open(false)
	// Read for well past the idle timeout: the answering socket keeps
	// getting snapshots (its pongs go out while it reads).
	end := time.Now().Add(4 * a.idle)
	for time.Now().Before(end) {
		_ = live.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := live.ReadMessage(); err != nil {
			t.Fatalf("the answering socket ended: %v", err)
		}
	}
	for i := 0; ; i++ {
		_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := silent.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the silent socket is still open 10 s after the idle timeout")
			}
			break // closed by the server
		}
		if i > 100000 {
			t.Fatal("the silent socket was never closed")
		}
	}
}

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	b := tokenBucket{rate: 2, burst: 3}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // the burst, then empty
		{400 * time.Millisecond, false}, // 0.8 of a token
		{500 * time.Millisecond, true},  // 1.0
		{500 * time.Millisecond, false},
		{time.Hour, true}, {time.Hour, true}, {time.Hour, true}, {time.Hour, false}, // refills to the burst, no more
	}
	for i, s := range steps {
		if got := b.take(t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (at %v): take = %v, want %v", i, s.at, got, s.want)
		}
	}
}

// TestDemoScript: every step publishes events the page understands, and a
// full match ends level with its last score update.
func TestDemoScript(t *testing.T) {
	t.Parallel()
	steps := demoScript("7", "Home FC", "Away FC")
	if len(steps) < 3 || steps[0][0].Type != "match_data" || steps[len(steps)-1][0].Type != "match_data" {
		t.Fatalf("the script must open and close with match_data: %v", steps)
	}
	var home, away int
	for i, step := range steps {
		for _, ev := range step {
			switch ev.Type {
			case "match_data", "score_update":
				sc := ev.Data["score"].(map[string]int)
				if sc["home"] < home || sc["away"] < away {
					t.Errorf("step %d: the score went down to %v", i, sc)
				}
				home, away = sc["home"], sc["away"]
			case "commentary":
				if ev.Data["text"] == "" {
					t.Errorf("step %d: commentary without text", i)
				}
			default:
				t.Errorf("step %d: event type %q the page does not show", i, ev.Type)
			}
			if ev.Data["match_id"] != "7" {
				t.Errorf("step %d: match_id %v", i, ev.Data["match_id"])
			}
		}
	}
	if home+away == 0 {
		t.Error("nobody scores in the demo match")
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 123, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not split
		{"ééé", 5, "éé"},
	} {
		got := truncate(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
