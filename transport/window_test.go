package transport_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// TestFlushWindow: with a flush window, the first event waits out the
// window, and the events published meanwhile go out with it in one write.
// (The window is long so that the publishes surely fall inside it on a slow
// machine; nothing is asserted about how fast anything is.)
func TestFlushWindow(t *testing.T) {
	t.Parallel()
	const window = time.Second
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{FlushWindow: window, HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	member := ts.dialWS(t)
	member.subscribe("win")
	// Three writes went out, each after its own window: the handshake with
	// connection_established, the subscribed answer, and the pong of the
	// round trip subscribe makes. A flush worker counts its writes only
	// when its queue next runs empty, which may be after the client has
	// read them: waiting for fewer than three let a late-counted pong
	// land in the count below, and a publish could join the pong's flush.
	waitFor(t, "the three writes to be counted", func() bool { return h.Stats().Writes >= 3 })
	before := h.Stats().Writes

	start := time.Now()
	for i := range 5 {
		if _, err := h.Publish(context.Background(), "win", "", json.RawMessage(`{"n":`+strconv.Itoa(i)+`}`), hub.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		e := member.expect("message")
		var v struct{ N int }
		if err := json.Unmarshal(e.Data, &v); err != nil || v.N != i {
			t.Fatalf("event %d: %s", i, e.Data)
		}
		if i == 0 {
			if waited := time.Since(start); waited < window {
				t.Errorf("the first event came after %v, inside the %v window", waited, window)
			}
		}
	}
	// A flush worker counts its writes when it next finds its queue empty,
	// which may be after the client has read them.
	waitFor(t, "the write to be counted", func() bool { return h.Stats().Writes > before })
	if got := h.Stats().Writes - before; got != 1 {
		t.Errorf("5 events in %d writes, want 1", got)
	}
}

// TestFlushWindowConfig: the window is bounded.
func TestFlushWindowConfig(t *testing.T) {
	t.Parallel()
	for _, w := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		_, err := server.New(context.Background(), server.Config{Listen: "127.0.0.1:0", Transport: transport.Options{FlushWindow: w}})
		if err == nil {
			t.Errorf("FlushWindow %v accepted", w)
		}
	}
}

// TestHandshakeOneWrite: the 101 answer and connection_established go out
// in one write, so a connection costs one system call and one wake-up of
// the client before its first request.
func TestHandshakeOneWrite(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	c := ts.dialWS(t) // read the 101 and connection_established
	c.roundTrip("p1") // one more write: the pong
	waitFor(t, "the pong's write to be counted", func() bool { return h.Stats().Writes >= 2 })
	if got := h.Stats().Writes; got != 2 {
		t.Errorf("%d writes for the handshake, connection_established and a pong; want 2", got)
	}
}
