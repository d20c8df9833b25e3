// Package hubtest runs real hubs over a cluster engine, the end-to-end
// check every broker engine (Redis, NATS) shares. It lives outside engine/
// because it imports the hub, which sits above the engines.
package hubtest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// sink is a hub.Sink that keeps the envelopes it is sent.
type sink struct {
	mu   sync.Mutex
	envs []protocol.Envelope
}

func (s *sink) Send(f *protocol.Frame) bool {
	var env protocol.Envelope
	if err := json.Unmarshal(f.JSON, &env); err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.envs = append(s.envs, env)
	s.mu.Unlock()
	return true
}

func (s *sink) Close(protocol.Disconnect) {}

func (s *sink) ofType(typ string) []protocol.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Envelope
	for _, e := range s.envs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func newHub(t *testing.T, newEngine func(t *testing.T) engine.Engine) *hub.Hub {
	t.Helper()
	e := newEngine(t)
	h, err := hub.New(hub.Options{Engine: e})
	mustNoErr(t, err, "hub.New")
	mustNoErr(t, h.Run(context.Background()), "hub.Run")
	t.Cleanup(func() { e.Close() })
	return h
}

func mustNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls cond for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// RunAcrossNodes runs two hubs over engines that share a broker (two
// calls of newEngine must return engines of one cluster), as two
// Switchboard nodes: join notices, events and acks cross nodes, a resent
// message id is acked again without a second delivery, and a client that
// reconnects to the other node recovers what it missed from the broker's
// history.
func RunAcrossNodes(t *testing.T, newEngine func(t *testing.T) engine.Engine) {
	a, b := newHub(t, newEngine), newHub(t, newEngine)
	sx, sy := &sink{}, &sink{}
	x := a.Connect(sx, hub.ConnectOptions{UserID: "xavier"})
	y := b.Connect(sy, hub.ConnectOptions{UserID: "yvonne"})
	defer x.Gone()

	x.HandleMessage([]byte(`{"type":"subscribe","id":"s1","room":"chat:1"}`))
	waitFor(t, 5*time.Second, "x subscribed", func() bool { return len(sx.ofType("subscribed")) == 1 })
	y.HandleMessage([]byte(`{"type":"subscribe","id":"s1","room":"chat:1"}`))
	waitFor(t, 5*time.Second, "y subscribed", func() bool { return len(sy.ofType("subscribed")) == 1 })
	waitFor(t, 5*time.Second, "x told that y joined on the other node", func() bool {
		j := sx.ofType("user_joined")
		return len(j) == 1 && j[0].UserID == "yvonne"
	})

	x.HandleMessage([]byte(`{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi"}}`))
	waitFor(t, 5*time.Second, "x's event on y's node", func() bool { return len(sy.ofType("message")) == 1 })
	got := sy.ofType("message")[0]
	if got.UserID != "xavier" || string(got.Data) != `{"text":"hi"}` {
		t.Errorf("y got %+v", got)
	}
	first, ok := protocol.ParseEventID(got.ID)
	if !ok || first.Offset != 1 {
		t.Fatalf("event id %q, want offset 1", got.ID)
	}
	waitFor(t, 5*time.Second, "x's ack", func() bool { return len(sx.ofType("ack")) == 1 })
	// The same message id again: acked with the same event id, not delivered.
	x.HandleMessage([]byte(`{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi"}}`))
	waitFor(t, 5*time.Second, "the second ack", func() bool { return len(sx.ofType("ack")) == 2 })
	var ackData struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	mustNoErr(t, json.Unmarshal(sx.ofType("ack")[1].Data, &ackData), "ack data")
	if ackData.EventID != got.ID || !ackData.Duplicate {
		t.Errorf("second ack %+v, want a duplicate of %q", ackData, got.ID)
	}

	// y leaves; x publishes two more; y comes back on node a and recovers.
	y.Gone()
	x.HandleMessage([]byte(`{"type":"message","room":"chat:1","data":{"n":2}}`))
	x.HandleMessage([]byte(`{"type":"message","room":"chat:1","data":{"n":3}}`))
	waitFor(t, 5*time.Second, "x's own events", func() bool { return len(sx.ofType("message")) == 3 })
	if n := len(sy.ofType("message")); n != 1 {
		t.Errorf("y got %d events, want 1 (the duplicate must not be delivered)", n)
	}
	sy2 := &sink{}
	y2 := a.Connect(sy2, hub.ConnectOptions{UserID: "yvonne"})
	defer y2.Gone()
	y2.HandleMessage([]byte(`{"type":"subscribe","id":"s2","room":"chat:1","last_event_id":"` + got.ID + `"}`))
	waitFor(t, 5*time.Second, "the two missed events", func() bool { return len(sy2.ofType("message")) == 2 })
	var sub struct {
		Recovered *bool `json:"recovered"`
		Replayed  int   `json:"replayed"`
	}
	mustNoErr(t, json.Unmarshal(sy2.ofType("subscribed")[0].Data, &sub), "subscribed data")
	if sub.Recovered == nil || !*sub.Recovered || sub.Replayed != 2 {
		t.Errorf("subscribed data %s, want recovered with 2 replayed", sy2.ofType("subscribed")[0].Data)
	}
	for i, m := range sy2.ofType("message") {
		if p, _ := protocol.ParseEventID(m.ID); p.Epoch != first.Epoch || p.Offset != uint64(i+2) {
			t.Errorf("replayed event %d has id %q", i, m.ID)
		}
	}
}
