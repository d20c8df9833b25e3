package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

func (ts *testServer) sseURL() string { return "http://" + ts.addr + "/sse" }

// sseCollector gathers a stream's events and its user id.
type sseCollector struct {
	events chan Event
	users  chan string
}

func newSSECollector() *sseCollector {
	return &sseCollector{events: make(chan Event, 256), users: make(chan string, 16)}
}

func (c *sseCollector) opts() *SSEOptions {
	return &SSEOptions{
		InitialDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		OnEvent: func(e Event) {
			if e.Type == protocol.TypeConnectionEstablished {
				var d struct {
					UserID string `json:"user_id"`
				}
				_ = json.Unmarshal(e.Data, &d)
				c.users <- d.UserID
			}
		},
	}
}

// recv waits up to 10 s for a value from ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s in 10 s", what)
		var zero T
		return zero
	}
}

func (c *sseCollector) next(t *testing.T) Event {
	t.Helper()
	return recv(t, c.events, "SSE event")
}

func (c *sseCollector) user(t *testing.T) string {
	t.Helper()
	return recv(t, c.users, "connection_established")
}

func TestSSEStreamEventsAndResume(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	col := newSSECollector()
	ctx := context.Background()
	s, err := SubscribeSSE(ctx, ts.sseURL(), []string{"feed"}, func(e Event) { col.events <- e }, col.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	user := col.user(t)
	var want []string
	for i := range 3 {
		want = append(want, ts.publish("feed", map[string]int{"n": i}))
	}
	for _, id := range want {
		if e := col.next(t); e.ID != id || e.Room != "feed" || e.Type != "message" {
			t.Fatalf("event %+v, want id %s", e, id)
		}
	}
	if s.LastEventID() != want[2] {
		t.Errorf("LastEventID %q, want %q", s.LastEventID(), want[2])
	}

	// The server cuts the stream with a code that says reconnect; what is
	// published meanwhile arrives once each, in order, live or replayed.
	if err := ts.srv.Hub.DisconnectUser(ctx, user, protocol.NewDisconnect(protocol.CloseSlowConsumer, "test")); err != nil {
		t.Fatal(err)
	}
	var more []string
	for i := range 5 {
		more = append(more, ts.publish("feed", map[string]int{"m": i}))
	}
	for _, id := range more {
		if e := col.next(t); e.ID != id {
			t.Fatalf("after the cut: event %+v, want id %s", e, id)
		}
	}
	col.user(t) // it did reconnect
	select {
	case e := <-col.events:
		t.Errorf("extra event %+v", e)
	case <-time.After(200 * time.Millisecond):
	}

	// A restarted single node has lost its history: the stream says so.
	addr := ts.addr
	ts.stop()
	ts2 := startServer(t, addr, server.Config{})
	e := col.next(t)
	if !e.RecoveryFailed || e.Room != "feed" {
		t.Fatalf("after the restart: %+v, want a RecoveryFailed notice", e)
	}
	id := ts2.publish("feed", map[string]int{"n": 99})
	if e := col.next(t); e.ID != id {
		t.Errorf("after the restart: %+v, want %s", e, id)
	}
}

func TestSSEStopsWhenToldNotToReconnect(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	col := newSSECollector()
	s, err := SubscribeSSE(context.Background(), ts.sseURL(), []string{"a", "b"}, func(e Event) { col.events <- e }, col.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	user := col.user(t)
	if err := ts.srv.Hub.DisconnectUser(context.Background(), user, protocol.NewDisconnect(protocol.CloseKicked, "bye")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not stop after 4006")
	}
	var ce *CloseError
	if !errors.As(s.Err(), &ce) || ce.Code != protocol.CloseKicked {
		t.Errorf("Err %v, want a CloseError 4006", s.Err())
	}
}

func TestSSEAuthAndRefusals(t *testing.T) {
	ts := authServer(t)
	ctx := context.Background()
	h := func(Event) {}
	_, err := SubscribeSSE(ctx, ts.sseURL(), []string{"lobby"}, h, nil)
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want HTTP 401", err)
	}
	s, err := SubscribeSSE(ctx, ts.sseURL(), []string{"lobby"}, h, &SSEOptions{Token: token(t, "alice", time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = SubscribeSSE(ctx, ts.sseURL(), []string{"bad room"}, h, &SSEOptions{Token: token(t, "alice", time.Hour)})
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad room: %v, want HTTP 400", err)
	}
	for _, u := range []string{"ws://" + ts.addr + "/sse", "::"} {
		if _, err := SubscribeSSE(ctx, u, []string{"lobby"}, h, nil); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	if _, err := SubscribeSSE(ctx, ts.sseURL(), nil, h, nil); err == nil {
		t.Error("no rooms accepted")
	}
}
