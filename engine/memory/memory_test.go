package memory

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestEngineSuite(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		return New(Options{})
	})
}

// TestEngineSuiteBusySweeper runs the suite with a sweeper that runs all the
// time, so that sweeping cannot break the contract.
func TestEngineSuiteBusySweeper(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		return New(Options{SweepInterval: time.Millisecond})
	})
}

// fakeClock is a settable Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type nopHandler struct{ n atomic.Int64 }

func (h *nopHandler) HandlePublication(string, *engine.Publication) { h.n.Add(1) }
func (h *nopHandler) HandleControl([]byte)                          {}
func (h *nopHandler) HandleGap(string, engine.Gap)                  {}

func pub(n int) *engine.Publication {
	return &engine.Publication{Type: "message", Data: json.RawMessage(`{"n":` + itoa(n) + `}`)}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func hasStream(e *Engine, room string) bool { return e.stream(room, false) != nil }

func mustPublish(t *testing.T, e *Engine, room string, n int, opts engine.PublishOptions) engine.PublishResult {
	t.Helper()
	res, err := e.Publish(context.Background(), room, pub(n), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSweeperDropsIdleStreamNewEpoch(t *testing.T) {
	clock := newFakeClock()
	e := New(Options{SweepInterval: 2 * time.Millisecond, Now: clock.Now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer e.Close()
	if err := e.Run(ctx, &nopHandler{}); err != nil {
		t.Fatal(err)
	}
	policy := engine.HistoryPolicy{Size: 10, TTL: time.Minute}
	mustPublish(t, e, "r", 1, engine.PublishOptions{History: policy})
	old := mustPublish(t, e, "r", 2, engine.PublishOptions{History: policy}).Position

	// Retained history keeps the stream (and its epoch) alive; once the
	// history expires, nothing holds it and the sweeper drops it.
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for hasStream(e, "r") {
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not drop the idle stream within 5 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	res := mustPublish(t, e, "r", 3, engine.PublishOptions{History: policy})
	if res.Position.Offset != 1 || res.Position.Epoch == old.Epoch {
		t.Fatalf("re-created stream at %+v, want offset 1 in an epoch other than %q", res.Position, old.Epoch)
	}
	h, err := e.History(ctx, "r", engine.HistoryQuery{Since: old}, policy)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Fatal("History since a position of the dropped stream reports Complete")
	}
}

func TestSweepKeepsStreamsInUse(t *testing.T) {
	clock := newFakeClock()
	e := New(Options{Now: clock.Now}) // sweep called directly
	ctx := context.Background()
	if err := e.Subscribe(ctx, "subscribed"); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, e, "subscribed", 1, engine.PublishOptions{})
	mustPublish(t, e, "retained", 1, engine.PublishOptions{History: engine.HistoryPolicy{Size: 5}})
	mustPublish(t, e, "keyed", 1, engine.PublishOptions{IdempotencyKey: "k", IdempotencyTTL: time.Minute})
	mustPublish(t, e, "idle", 1, engine.PublishOptions{})

	e.sweep()
	for room, want := range map[string]bool{"subscribed": true, "retained": true, "keyed": true, "idle": false} {
		if got := hasStream(e, room); got != want {
			t.Errorf("after sweep, stream %q exists = %v, want %v", room, got, want)
		}
	}

	// The key keeps its room only while it lives; events without a TTL
	// stay until evicted; a subscription holds until Unsubscribe.
	clock.Advance(time.Minute + time.Second)
	if err := e.Unsubscribe(ctx, "subscribed"); err != nil {
		t.Fatal(err)
	}
	e.sweep()
	for room, want := range map[string]bool{"subscribed": false, "retained": true, "keyed": false} {
		if got := hasStream(e, room); got != want {
			t.Errorf("after expiry, stream %q exists = %v, want %v", room, got, want)
		}
	}
}

func TestSweepExpiresIdempotencyKeys(t *testing.T) {
	clock := newFakeClock()
	e := New(Options{Now: clock.Now})
	opts := engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}, IdempotencyKey: "k"} // default TTL: 2 min
	first := mustPublish(t, e, "r", 1, opts)
	clock.Advance(119 * time.Second)
	e.sweep()
	if r := mustPublish(t, e, "r", 2, opts); !r.Duplicate || r.Position != first.Position {
		t.Fatalf("within the default 2 min window: %+v, want duplicate of %+v", r, first.Position)
	}
	clock.Advance(2 * time.Second)
	e.sweep()
	if r := mustPublish(t, e, "r", 3, opts); r.Duplicate || r.Position.Offset != 2 {
		t.Fatalf("after the window: %+v, want a new event at offset 2", r)
	}
}

func TestHistoryTTLFakeClock(t *testing.T) {
	clock := newFakeClock()
	e := New(Options{Now: clock.Now})
	policy := engine.HistoryPolicy{Size: 10, TTL: time.Minute}
	for i := 1; i <= 3; i++ {
		mustPublish(t, e, "r", i, engine.PublishOptions{History: policy})
		clock.Advance(20 * time.Second)
	}
	// Now at +60 s: event 1 (at +0 s) is exactly one TTL old and is kept;
	// events younger than the TTL are kept.
	h, _ := e.History(context.Background(), "r", engine.HistoryQuery{}, policy)
	if len(h.Publications) != 3 {
		t.Fatalf("at +60s: %d events, want 3", len(h.Publications))
	}
	clock.Advance(15 * time.Second) // +75 s: event 1 (+0 s) expired, 2 (+20 s) not
	h, _ = e.History(context.Background(), "r", engine.HistoryQuery{}, policy)
	if len(h.Publications) != 2 || h.Publications[0].Position.Offset != 2 {
		t.Fatalf("at +75s: %d events, want offsets 2, 3", len(h.Publications))
	}
	if h.Latest.Offset != 3 {
		t.Fatalf("Latest = %d, want 3", h.Latest.Offset)
	}
}

func TestHistoryPolicyChange(t *testing.T) {
	e := New(Options{})
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		mustPublish(t, e, "r", i, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
	}
	// Shrinking keeps the newest events.
	mustPublish(t, e, "r", 11, engine.PublishOptions{History: engine.HistoryPolicy{Size: 3}})
	h, _ := e.History(ctx, "r", engine.HistoryQuery{}, engine.HistoryPolicy{Size: 3})
	if len(h.Publications) != 3 || h.Publications[0].Position.Offset != 9 || h.Publications[2].Position.Offset != 11 {
		t.Fatalf("after shrinking: %d events starting at %d", len(h.Publications), h.Publications[0].Position.Offset)
	}
	// Growing keeps what is there and makes room for more.
	for i := 12; i <= 20; i++ {
		mustPublish(t, e, "r", i, engine.PublishOptions{History: engine.HistoryPolicy{Size: 8}})
	}
	h, _ = e.History(ctx, "r", engine.HistoryQuery{}, engine.HistoryPolicy{Size: 8})
	if len(h.Publications) != 8 || h.Publications[0].Position.Offset != 13 {
		t.Fatalf("after growing: %d events starting at %d", len(h.Publications), h.Publications[0].Position.Offset)
	}
	// Turning history off drops what was kept.
	mustPublish(t, e, "r", 21, engine.PublishOptions{})
	h, _ = e.History(ctx, "r", engine.HistoryQuery{}, engine.HistoryPolicy{})
	if len(h.Publications) != 0 || h.Latest.Offset != 21 {
		t.Fatalf("after turning history off: %d events, latest %d", len(h.Publications), h.Latest.Offset)
	}
}

// TestSweepRacesSubscribe checks that a stream the sweeper drops cannot be
// the one a concurrent Subscribe or Publish is using: if it were, the
// subscription would land on a stream nobody publishes to any more and the
// node would stop receiving the room's events.
func TestSweepRacesSubscribe(t *testing.T) {
	e := New(Options{})
	h := &nopHandler{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Run(ctx, h); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				e.sweep()
			}
		}
	}()
	const rounds = 20000
	lost := 0
	for i := 0; i < rounds; i++ {
		room := "r" + itoa(i%8)
		if err := e.Unsubscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
		if err := e.Subscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
		before := h.n.Load()
		mustPublish(t, e, room, i, engine.PublishOptions{})
		// Delivery is synchronous in this engine.
		if h.n.Load() == before {
			lost++
		}
	}
	close(stop)
	wg.Wait()
	if lost > 0 {
		t.Fatalf("%d of %d publications to a subscribed room were not delivered", lost, rounds)
	}
}

func TestRunAfterClose(t *testing.T) {
	e := New(Options{})
	_ = e.Close()
	if err := e.Run(context.Background(), &nopHandler{}); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

func TestEpochFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		ep := newEpoch()
		if _, ok := protocol.ParseEventID(ep + "-1"); !ok || len(ep) != 8 {
			t.Fatalf("epoch %q does not make a valid event id", ep)
		}
		seen[ep] = true
	}
	if len(seen) < 99 {
		t.Fatalf("only %d distinct epochs in 100", len(seen))
	}
}

func BenchmarkPublishHistory(b *testing.B) {
	e := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Run(ctx, &nopHandler{}); err != nil {
		b.Fatal(err)
	}
	if err := e.Subscribe(ctx, "chat:bench"); err != nil {
		b.Fatal(err)
	}
	opts := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}}
	data := json.RawMessage(`{"text":"hello, world"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Publish(ctx, "chat:bench", &engine.Publication{Type: "message", Data: data}, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHistoryRead(b *testing.B) {
	e := New(Options{})
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 1000, TTL: 5 * time.Minute}
	var last protocol.StreamPosition
	for i := 0; i < 1000; i++ {
		res, err := e.Publish(ctx, "chat:bench", pub(i), engine.PublishOptions{History: policy})
		if err != nil {
			b.Fatal(err)
		}
		last = res.Position
	}
	since := protocol.StreamPosition{Offset: last.Offset - 100, Epoch: last.Epoch}
	b.ReportAllocs()
	for b.Loop() {
		h, err := e.History(ctx, "chat:bench", engine.HistoryQuery{Since: since}, policy)
		if err != nil || len(h.Publications) != 100 || !h.Complete {
			b.Fatalf("History: %d events, complete %v, err %v", len(h.Publications), h.Complete, err)
		}
	}
}
