package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

// numbered returns the n of each "message" event ({"n":n}) s received
// after its subscribed answer for room, failing on anything out of place.
func numbered(t *testing.T, s *fakeSink, room string) (sub SubscribedData, ns []int) {
	t.Helper()
	seenSub := false
	for _, m := range s.msgs(t) {
		switch m.Type {
		case protocol.TypeSubscribed:
			if m.Room == room {
				if seenSub {
					t.Fatalf("two subscribed answers")
				}
				seenSub = true
				sub = decodeData[SubscribedData](t, m)
			}
		case protocol.TypeMessage:
			if m.Room != room {
				continue
			}
			if !seenSub {
				t.Fatalf("event %s before the subscribed answer", m.ID)
			}
			var d struct{ N int }
			if err := json.Unmarshal(m.Data, &d); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, d.N)
		}
	}
	if !seenSub {
		t.Fatalf("no subscribed answer:%s", s.dump(t))
	}
	return sub, ns
}

func checkSequence(t *testing.T, what string, ns []int, from, to int) {
	t.Helper()
	if len(ns) != to-from+1 {
		t.Fatalf("%s: got %d events (%v...), want %d..%d exactly once", what, len(ns), head(ns), from, to)
	}
	for i, n := range ns {
		if n != from+i {
			t.Fatalf("%s: event %d is n=%d, want %d (gap, duplicate or reorder)", what, i, n, from+i)
		}
	}
}

func head(ns []int) []int {
	if len(ns) > 10 {
		return ns[:10]
	}
	return ns
}

// TestRecoveryUnderConcurrentPublishing subscribes with a last_event_id
// taken mid-stream while a publisher keeps going: the client must see every
// later event exactly once, in order, across the seam between replayed
// history and live delivery.
func TestRecoveryUnderConcurrentPublishing(t *testing.T) {
	const rounds, total = 40, 300
	h := newHub(t, Options{History: engine.HistoryPolicy{Size: 10000}, NoJoinLeave: true})
	ctx := context.Background()
	for round := range rounds {
		room := fmt.Sprintf("rec:%d", round)
		w, ws := connect(t, h, "watcher")
		subscribe(t, w, ws, room)
		k := 5 + (round*37)%100 // where the client left off

		mid := make(chan string, 1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= total; n++ {
				res, err := h.Publish(ctx, room, "message", json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), PublishOptions{})
				if err != nil {
					t.Errorf("publish %d: %v", n, err)
					return
				}
				if n == k {
					mid <- res.EventID
				}
			}
		}()
		lastID := <-mid
		c, cs := connect(t, h, "late")
		send(c, `{"type":"subscribe","id":"s","room":%q,"last_event_id":%q}`, room, lastID)
		wg.Wait()

		sub, ns := numbered(t, cs, room)
		if sub.Recovered == nil || !*sub.Recovered {
			t.Fatalf("round %d: recovered = %v, want true", round, sub.Recovered)
		}
		checkSequence(t, fmt.Sprintf("round %d (from n=%d, %d replayed)", round, k, sub.Replayed), ns, k+1, total)
		if sub.Replayed > len(ns) {
			t.Fatalf("round %d: replayed %d > events %d", round, sub.Replayed, len(ns))
		}
		_, wn := numbered(t, ws, room)
		checkSequence(t, "watcher", wn, 1, total)
		w.Gone()
		c.Gone()
	}
}

// TestSubscribeWithoutRecoveryHasNoGap: a plain subscribe's position is
// the last event before the live ones it gets.
func TestSubscribeWithoutRecoveryHasNoGap(t *testing.T) {
	const rounds, total = 20, 200
	h := newHub(t, Options{NoJoinLeave: true})
	ctx := context.Background()
	for round := range rounds {
		room := fmt.Sprintf("plain:%d", round)
		var wg sync.WaitGroup
		started := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= total; n++ {
				if n == 10 {
					close(started)
				}
				if _, err := h.Publish(ctx, room, "message", json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), PublishOptions{}); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
		<-started
		c, cs := connect(t, h, "u")
		send(c, `{"type":"subscribe","room":%q}`, room)
		wg.Wait()
		sub, ns := numbered(t, cs, room)
		pos, ok := protocol.ParseEventID(sub.Position)
		if !ok {
			t.Fatalf("position %q", sub.Position)
		}
		// Offsets and numbers coincide: n is published as offset n.
		checkSequence(t, fmt.Sprintf("round %d after position %d", round, pos.Offset), ns, int(pos.Offset)+1, total)
		c.Gone()
	}
}

func TestRecoveryNotPossible(t *testing.T) {
	h := newHub(t, Options{History: engine.HistoryPolicy{Size: 5}, NoJoinLeave: true})
	ctx := context.Background()
	tests := []struct {
		name      string
		last      func(ids []string, epoch string) string
		recovered bool
		replayed  int
	}{
		{"history too short", func(ids []string, _ string) string { return ids[2] }, false, 0},
		{"unknown epoch", func([]string, string) string { return "zzzzzzzz-3" }, false, 0},
		{"offset beyond the stream", func(_ []string, ep string) string { return ep + "-99" }, false, 0},
		{"just inside history", func(ids []string, _ string) string { return ids[14] }, true, 5},
		{"up to date", func(ids []string, _ string) string { return ids[19] }, true, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room := fmt.Sprintf("nr:%d", i)
			var ids []string
			for n := 1; n <= 20; n++ {
				res, err := h.Publish(ctx, room, "message", json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), PublishOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res.EventID)
			}
			epoch, _ := protocol.ParseEventID(ids[0])
			c, s := connect(t, h, "u")
			send(c, `{"type":"subscribe","id":"s","room":%q,"last_event_id":%q}`, room, tt.last(ids, epoch.Epoch))
			sub, ns := numbered(t, s, room)
			if sub.Recovered == nil || *sub.Recovered != tt.recovered || sub.Replayed != tt.replayed {
				t.Fatalf("subscribed = %+v (recovered %v), want recovered %v replayed %d", sub, deref(sub.Recovered), tt.recovered, tt.replayed)
			}
			if sub.Position != ids[19] {
				t.Errorf("position %q, want %q", sub.Position, ids[19])
			}
			if len(ns) != tt.replayed {
				t.Errorf("%d events replayed, want %d", len(ns), tt.replayed)
			}
			if tt.recovered && tt.replayed > 0 {
				checkSequence(t, "replay", ns, 21-tt.replayed, 20)
			}
			// Live events follow either way.
			if _, err := h.Publish(ctx, room, "message", json.RawMessage(`{"n":1000}`), PublishOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, ns2 := numbered(t, s, room); len(ns2) != len(ns)+1 || ns2[len(ns2)-1] != 1000 {
				t.Errorf("no live event after the subscribe: %v", ns2)
			}
			c.Gone()
		})
	}
	if st := h.Stats(); st.Recovered != 2 || st.RecoveryFailed != 3 {
		t.Errorf("stats recovered %d, failed %d; want 2, 3", st.Recovered, st.RecoveryFailed)
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestSyncReplaysMissedEvents(t *testing.T) {
	h := newHub(t, Options{NoJoinLeave: true})
	ctx := context.Background()
	c, s := connect(t, h, "u")
	subscribe(t, c, s, "r")
	var ids []string
	for n := 1; n <= 5; n++ {
		res, err := h.Publish(ctx, "r", "message", json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.EventID)
	}
	s.reset()
	// The client noticed it lost events after n=2 (say its queue dropped
	// some): sync brings it up to date without resubscribing.
	send(c, `{"type":"sync","id":"y","room":"r","last_event_id":%q}`, ids[1])
	sub, ns := numbered(t, s, "r")
	if sub.Recovered == nil || !*sub.Recovered || sub.Replayed != 3 {
		t.Fatalf("sync answer = %+v", sub)
	}
	checkSequence(t, "sync replay", ns, 3, 5)
	if h.RoomSize("r") != 1 {
		t.Errorf("sync changed membership: %d", h.RoomSize("r"))
	}
}

// asyncEngine wraps the memory engine and holds deliveries until released,
// as a broker does: Publish has stored the event and returned, and the
// subscriber's copy arrives later. The engine contract allows this.
type asyncEngine struct {
	*memory.Engine
	mu   sync.Mutex
	hold bool
	held []func()
}

type asyncHandler struct {
	a *asyncEngine
	h engine.Handler
}

func (a *asyncEngine) Run(ctx context.Context, h engine.Handler) error {
	return a.Engine.Run(ctx, &asyncHandler{a, h})
}

func (ah *asyncHandler) HandlePublication(room string, pub *engine.Publication) {
	ah.a.mu.Lock()
	if ah.a.hold {
		ah.a.held = append(ah.a.held, func() { ah.h.HandlePublication(room, pub) })
		ah.a.mu.Unlock()
		return
	}
	ah.a.mu.Unlock()
	ah.h.HandlePublication(room, pub)
}

func (ah *asyncHandler) HandleControl(data []byte) { ah.h.HandleControl(data) }

func (ah *asyncHandler) HandleGap(room string, gap engine.Gap) { ah.h.HandleGap(room, gap) }

func (a *asyncEngine) setHold(v bool) {
	a.mu.Lock()
	a.hold = v
	a.mu.Unlock()
}

// flush delivers what was held, in order.
func (a *asyncEngine) flush() {
	a.mu.Lock()
	held := a.held
	a.held, a.hold = nil, false
	a.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestRecoverySeamWithDelayedDelivery: with an engine whose deliveries
// trail Publish (every broker), events that a subscribe already replayed
// from history, or that are at or before the position it announced, must
// not be sent again when their live copy arrives.
func TestRecoverySeamWithDelayedDelivery(t *testing.T) {
	// setup subscribes the node to room r, publishes n=1..3 whose live
	// copies are held back, runs subscribe, then lets the copies through
	// and publishes n=4.
	setup := func(t *testing.T, subscribeClient func(c *Client, epoch string)) (*fakeSink, []string) {
		eng := &asyncEngine{Engine: memory.New(memory.Options{})}
		h := newHub(t, Options{Engine: eng, NoJoinLeave: true})
		ctx := context.Background()
		w, ws := connect(t, h, "watcher")
		subscribe(t, w, ws, "r")
		eng.setHold(true)
		var ids []string
		for n := 1; n <= 3; n++ {
			res, err := h.Publish(ctx, "r", "message", json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), PublishOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.EventID)
		}
		p, _ := protocol.ParseEventID(ids[0])
		c, s := connect(t, h, "client")
		subscribeClient(c, p.Epoch)
		eng.flush()
		if _, err := h.Publish(ctx, "r", "message", json.RawMessage(`{"n":4}`), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		return s, ids
	}

	t.Run("recovering subscribe", func(t *testing.T) {
		// Replays 1..3 from history while their live copies are in flight.
		s, _ := setup(t, func(c *Client, epoch string) {
			send(c, `{"type":"subscribe","room":"r","last_event_id":"%s-0"}`, epoch)
		})
		sub, got := numbered(t, s, "r")
		if sub.Recovered == nil || !*sub.Recovered {
			t.Fatalf("recovered = %v", deref(sub.Recovered))
		}
		checkSequence(t, "recovering client", got, 1, 4)
	})
	t.Run("plain subscribe", func(t *testing.T) {
		// Told its position is n=3: events up to there are not its own.
		s, ids := setup(t, func(c *Client, _ string) {
			send(c, `{"type":"subscribe","room":"r"}`)
		})
		sub, got := numbered(t, s, "r")
		if sub.Position != ids[2] {
			t.Fatalf("position %q, want %q", sub.Position, ids[2])
		}
		checkSequence(t, "new client (after its position)", got, 4, 4)
	})
}
