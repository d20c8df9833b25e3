package transport_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// TestChurnDuringFanout closes members abruptly while a room's events fan
// out, and opens new connections meanwhile. The flush workers write to
// socket descriptors directly; if one wrote to a descriptor after its
// connection closed, the number could already belong to a new connection,
// which would then get another connection's frames. Every new connection
// must see connection_established first and only events of rooms it joined,
// and the steady members every event in order.
func TestChurnDuringFanout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	steady := make([]*wsClient, 4)
	for i := range steady {
		steady[i] = ts.dialWS(t)
		steady[i].subscribe("churn-a")
	}
	const events = 2000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range events {
			if _, err := h.Publish(context.Background(), "churn-a", "", json.RawMessage(`{"n":`+strconv.Itoa(i)+`}`), hub.PublishOptions{}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	for i := range 150 {
		churn(t, ts, i)
	}
	wg.Wait()
	for k, c := range steady {
		for i := range events {
			e := c.expect("message")
			var v struct{ N int }
			if err := json.Unmarshal(e.Data, &v); err != nil || v.N != i || e.Room != "churn-a" {
				t.Fatalf("steady member %d, event %d: room %q data %s", k, i, e.Room, e.Data)
			}
		}
	}
}

// churn opens one connection; odd ones join churn-a and vanish mid-stream,
// even ones join churn-b (which gets nothing) and must get nothing else.
func churn(t *testing.T, ts *testServer, i int) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitLimit}
	c, _, err := d.Dial(ts.url("/ws"), nil)
	if err != nil {
		t.Fatalf("churn %d: dial: %v", i, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	room := "churn-b"
	if i%2 == 1 {
		room = "churn-a"
	}
	read := func() *protocol.Envelope {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("churn %d: read: %v", i, err)
		}
		e, perr := protocol.Decode(b)
		if perr != nil {
			t.Fatalf("churn %d: not an envelope: %q", i, b)
		}
		return e
	}
	if e := read(); e.Type != protocol.TypeConnectionEstablished {
		t.Fatalf("churn %d: first message %q", i, e.Type)
	}
	if err := c.WriteJSON(map[string]string{"type": "subscribe", "id": "s", "room": room}); err != nil {
		t.Fatalf("churn %d: %v", i, err)
	}
	if e := read(); e.Type != protocol.TypeSubscribed || e.Room != room {
		t.Fatalf("churn %d: got %q for room %q before subscribed to %q", i, e.Type, e.Room, room)
	}
	if room == "churn-a" {
		// Take an event if one comes soon (the stream may be over), then
		// vanish without a close frame.
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, b, err := c.ReadMessage(); err == nil {
			if e, perr := protocol.Decode(b); perr != nil || e.Room != "churn-a" {
				t.Fatalf("churn %d (in churn-a): got %q", i, b)
			}
		}
		return
	}
	// A round trip: anything from churn-a would come before the pong.
	if err := c.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatalf("churn %d: %v", i, err)
	}
	if e := read(); e.Type != protocol.TypePong {
		t.Fatalf("churn %d (in %s only): got %q for room %q", i, room, e.Type, e.Room)
	}
}
