package client

import (
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// TestPublishExcludeSelf: with ExcludeSelf the other member gets the event
// and the publisher does not, though Publish returns its ack; a plain
// publish after it reaches both.
func TestPublishExcludeSelf(t *testing.T) {
	ts := startServer(t, "", server.Config{Hub: hub.Options{NoJoinLeave: true}})
	a, b := connect(t, ts.url(), nil), connect(t, ts.url(), nil)
	ra, rb := newRecorder(), newRecorder()
	ctx := ctxT(t)
	if _, err := a.Subscribe(ctx, "chat:x", ra.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, "chat:x", rb.handle); err != nil {
		t.Fatal(err)
	}
	quiet, err := a.Publish(ctx, "chat:x", "", map[string]int{"n": 1}, ExcludeSelf())
	if err != nil || quiet.EventID == "" {
		t.Fatalf("Publish with ExcludeSelf: %+v %v", quiet, err)
	}
	loud, err := a.Publish(ctx, "chat:x", "", map[string]int{"n": 2})
	if err != nil {
		t.Fatal(err)
	}
	got := rb.wait(t, "b to get both events", countMessages(2))
	if ids := []string{got[0].ID, got[1].ID}; ids[0] != quiet.EventID || ids[1] != loud.EventID {
		t.Errorf("b got %v, want %s then %s", ids, quiet.EventID, loud.EventID)
	}
	// Events of one room arrive in order, so a has the first if it was sent.
	mine := messages(ra.wait(t, "a to get its second event", countMessages(1)))
	if len(mine) != 1 || mine[0].ID != loud.EventID {
		t.Errorf("a got %v, want only %s", mine, loud.EventID)
	}
}

// TestJSONPingsNotPassedOn: on a server that sends JSON pings to every
// connection, the client stays connected through a heartbeat check and
// does not hand the pings to OnEvent.
func TestJSONPingsNotPassedOn(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a heartbeat (~7 s)")
	}
	ts := startServer(t, "", server.Config{Transport: transport.Options{JSONPing: true, HeartbeatInterval: 5 * time.Second, PongTimeout: time.Second}})
	rec := newRecorder()
	c := connect(t, ts.url(), &Options{OnEvent: rec.handle})
	time.Sleep(7 * time.Second) // one heartbeat and its check
	if st := c.State(); st != StateOpen {
		t.Fatalf("state %v after a heartbeat, want open", st)
	}
	for _, e := range rec.snapshot() {
		if e.Type == "ping" {
			t.Fatalf("OnEvent got %+v", e)
		}
	}
	if n := ts.srv.Hub.Stats().Closes["4008"]; n != 0 {
		t.Errorf("%d closes with 4008", n)
	}
}
