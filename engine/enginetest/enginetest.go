// Package enginetest is the shared test suite of engine.Engine: every
// implementation (engine/memory now, brokers later) calls Run from its own
// tests, so the hub can rely on one contract whatever carries its events.
//
// The suite assumes nothing about timing except that delivery happens
// "eventually" (it polls for at most 5 s). To show that something was NOT
// delivered it publishes a later event as a barrier and waits for that:
// engines deliver one room's events in stream order, and on one node they
// are expected to deliver publications in the order they were published.
// Room names carry a random prefix so that a broker shared between runs
// does not mix their streams.
package enginetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// waitTimeout bounds every wait for a delivery.
const waitTimeout = 5 * time.Second

// Run runs the suite. newEngine returns a fresh, not yet started engine;
// the suite starts it with Run and closes it at the end of each subtest.
func Run(t *testing.T, newEngine func(t *testing.T) engine.Engine) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, fx *fixture)
	}{
		{"OffsetsStartAtOneInOneEpoch", testOffsets},
		{"OffsetsWithoutHistory", testOffsetsWithoutHistory},
		{"RoomsAreIndependent", testRoomsIndependent},
		{"DeliveryOnlyToSubscribedRooms", testSubscribedOnly},
		{"ConcurrentPublishersDeliverInOffsetOrder", testConcurrentOrder},
		{"Ephemeral", testEphemeral},
		{"EmptyRoomEpochIsFixed", testEmptyRoom},
		{"HistoryNewest", testHistoryNewest},
		{"HistorySince", testHistorySince},
		{"HistoryOtherEpochOrFuture", testHistoryOtherEpoch},
		{"HistoryEvicted", testHistoryEvicted},
		{"HistoryTTL", testHistoryTTL},
		{"Idempotency", testIdempotency},
		{"IdempotencyKeyExpires", testIdempotencyExpires},
		{"PublishControl", testControl},
		{"Presence", testPresence},
		{"CancelledContext", testCancelled},
		{"ReadyAndClose", testReadyClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, start(t, newEngine))
		})
	}
}

type fixture struct {
	eng    engine.Engine
	rec    *recorder
	prefix string
	closed bool
}

func start(t *testing.T, newEngine func(t *testing.T) engine.Engine) *fixture {
	t.Helper()
	fx := &fixture{eng: newEngine(t), rec: newRecorder(), prefix: "et" + randomHex(6)}
	ctx, cancel := context.WithCancel(context.Background())
	if err := fx.eng.Run(ctx, fx.rec); err != nil {
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if !fx.closed {
			if err := fx.eng.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if v := fx.rec.violation(); v != "" {
			t.Errorf("handler contract broken: %s", v)
		}
	})
	return fx
}

// room returns a room name unique to this fixture.
func (fx *fixture) room(name string) string { return fx.prefix + ":" + name }

func (fx *fixture) subscribe(t *testing.T, room string) {
	t.Helper()
	if err := fx.eng.Subscribe(context.Background(), room); err != nil {
		t.Fatalf("Subscribe(%q): %v", room, err)
	}
}

func (fx *fixture) unsubscribe(t *testing.T, room string) {
	t.Helper()
	if err := fx.eng.Unsubscribe(context.Background(), room); err != nil {
		t.Fatalf("Unsubscribe(%q): %v", room, err)
	}
}

// publish publishes an event whose data is {"n":n}.
func (fx *fixture) publish(t *testing.T, room string, n int, opts engine.PublishOptions) engine.PublishResult {
	t.Helper()
	res, err := fx.eng.Publish(context.Background(), room, newPub(n), opts)
	if err != nil {
		t.Fatalf("Publish(%q, %d): %v", room, n, err)
	}
	return res
}

func (fx *fixture) history(t *testing.T, room string, q engine.HistoryQuery, p engine.HistoryPolicy) engine.HistoryResult {
	t.Helper()
	res, err := fx.eng.History(context.Background(), room, q, p)
	if err != nil {
		t.Fatalf("History(%q, %+v): %v", room, q, err)
	}
	return res
}

func newPub(n int) *engine.Publication {
	return &engine.Publication{
		Type:     "message",
		Data:     json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		UserID:   "user-1",
		ClientID: "conn-1",
	}
}

// pubN reads back the n of newPub's data.
func pubN(t *testing.T, p *engine.Publication) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(p.Data, &v); err != nil {
		t.Fatalf("publication data %q: %v", p.Data, err)
	}
	return v.N
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var history100 = engine.HistoryPolicy{Size: 100}

// recorder is the Handler under test: it keeps what was delivered and
// checks the Handler contract (stream order, no concurrent calls per room).
type recorder struct {
	inflight sync.Map // room -> *atomic.Int32

	mu       sync.Mutex
	pubs     map[string][]engine.Publication
	controls [][]byte
	broken   string
}

func newRecorder() *recorder { return &recorder{pubs: map[string][]engine.Publication{}} }

func (r *recorder) HandlePublication(room string, pub *engine.Publication) {
	v, _ := r.inflight.LoadOrStore(room, new(atomic.Int32))
	in := v.(*atomic.Int32)
	concurrent := in.Add(1) > 1
	defer in.Add(-1)

	r.mu.Lock()
	defer r.mu.Unlock()
	if concurrent && r.broken == "" {
		r.broken = fmt.Sprintf("concurrent HandlePublication calls for room %q", room)
	}
	if !pub.Ephemeral {
		list := r.pubs[room]
		for i := len(list) - 1; i >= 0; i-- {
			if list[i].Ephemeral {
				continue
			}
			if prev := list[i].Position; prev.Epoch == pub.Position.Epoch && pub.Position.Offset <= prev.Offset && r.broken == "" {
				r.broken = fmt.Sprintf("room %q: offset %d delivered after %d", room, pub.Position.Offset, prev.Offset)
			}
			break
		}
	}
	r.pubs[room] = append(r.pubs[room], *pub)
}

// HandleGap implements engine.Handler. The suite injects no faults, so a
// gap is a lost event.
func (r *recorder) HandleGap(room string, gap engine.Gap) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken == "" {
		r.broken = fmt.Sprintf("room %q: gap declared after %v until %v (%s) with no fault injected", room, gap.After, gap.Until, gap.Reason)
	}
}

func (r *recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, bytes.Clone(data))
	r.mu.Unlock()
}

func (r *recorder) delivered(room string) []engine.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Publication(nil), r.pubs[room]...)
}

func (r *recorder) count(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pubs[room])
}

func (r *recorder) violation() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broken
}

func (r *recorder) controlMessages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.controls...)
}

func testOffsets(t *testing.T, fx *fixture) {
	room := fx.room("a")
	fx.subscribe(t, room)
	var epoch string
	for i := 1; i <= 3; i++ {
		res := fx.publish(t, room, i, engine.PublishOptions{History: history100})
		if res.Duplicate {
			t.Errorf("publish %d: Duplicate without an idempotency key", i)
		}
		if res.Position.Offset != uint64(i) {
			t.Errorf("publish %d: offset %d, want %d", i, res.Position.Offset, i)
		}
		if i == 1 {
			epoch = res.Position.Epoch
		} else if res.Position.Epoch != epoch {
			t.Errorf("publish %d: epoch %q, want %q (the epoch must be stable)", i, res.Position.Epoch, epoch)
		}
	}
	if epoch == "" {
		t.Fatal("empty epoch")
	}
	// Clients send the event id back as last_event_id; it must parse.
	id := protocol.StreamPosition{Offset: 3, Epoch: epoch}.EventID()
	if p, ok := protocol.ParseEventID(id); !ok || p.Epoch != epoch {
		t.Errorf("epoch %q makes event id %q that ParseEventID rejects", epoch, id)
	}

	waitFor(t, "3 deliveries", func() bool { return fx.rec.count(room) >= 3 })
	got := fx.rec.delivered(room)
	if len(got) != 3 {
		t.Fatalf("delivered %d events, want 3", len(got))
	}
	for i, p := range got {
		want := protocol.StreamPosition{Offset: uint64(i + 1), Epoch: epoch}
		if p.Position != want || pubN(t, &p) != i+1 {
			t.Errorf("delivery %d: position %+v n=%d, want %+v n=%d", i, p.Position, pubN(t, &p), want, i+1)
		}
		if p.Type != "message" || p.UserID != "user-1" || p.ClientID != "conn-1" || p.Ephemeral {
			t.Errorf("delivery %d: fields not preserved: %+v", i, p)
		}
		if p.Time <= 0 {
			t.Errorf("delivery %d: Time not set", i)
		}
	}
	h := fx.history(t, room, engine.HistoryQuery{}, history100)
	if h.Latest != (protocol.StreamPosition{Offset: 3, Epoch: epoch}) {
		t.Errorf("History Latest = %+v, want offset 3 epoch %q", h.Latest, epoch)
	}
}

func testOffsetsWithoutHistory(t *testing.T, fx *fixture) {
	room := fx.room("nohist")
	fx.subscribe(t, room)
	r1 := fx.publish(t, room, 1, engine.PublishOptions{})
	r2 := fx.publish(t, room, 2, engine.PublishOptions{})
	if r1.Position.Offset != 1 || r2.Position.Offset != 2 || r1.Position.Epoch == "" || r1.Position.Epoch != r2.Position.Epoch {
		t.Errorf("positions without history: %+v, %+v; want offsets 1, 2 in one epoch", r1.Position, r2.Position)
	}
	h := fx.history(t, room, engine.HistoryQuery{}, engine.HistoryPolicy{})
	if len(h.Publications) != 0 {
		t.Errorf("history kept %d events with a zero policy", len(h.Publications))
	}
	// Nothing is kept, so a client at offset 1 cannot be brought up to date.
	h = fx.history(t, room, engine.HistoryQuery{Since: r1.Position}, engine.HistoryPolicy{})
	if h.Complete {
		t.Errorf("History since offset 1 with no history kept reports Complete")
	}
	waitFor(t, "2 deliveries", func() bool { return fx.rec.count(room) >= 2 })
}

func testRoomsIndependent(t *testing.T, fx *fixture) {
	a, b := fx.room("a"), fx.room("b")
	fx.subscribe(t, a)
	fx.subscribe(t, b)
	fx.publish(t, a, 1, engine.PublishOptions{History: history100})
	fx.publish(t, a, 2, engine.PublishOptions{History: history100})
	rb := fx.publish(t, b, 1, engine.PublishOptions{History: history100})
	ra := fx.publish(t, a, 3, engine.PublishOptions{History: history100})
	if rb.Position.Offset != 1 {
		t.Errorf("first event of room b got offset %d, want 1", rb.Position.Offset)
	}
	if ra.Position.Offset != 3 {
		t.Errorf("third event of room a got offset %d, want 3", ra.Position.Offset)
	}
	waitFor(t, "deliveries", func() bool { return fx.rec.count(a) >= 3 && fx.rec.count(b) >= 1 })
	if n := len(fx.rec.delivered(b)); n != 1 {
		t.Errorf("room b got %d deliveries, want 1", n)
	}
	hb := fx.history(t, b, engine.HistoryQuery{}, history100)
	if len(hb.Publications) != 1 || hb.Latest.Offset != 1 {
		t.Errorf("room b history: %d events, latest %+v", len(hb.Publications), hb.Latest)
	}
}

func testSubscribedOnly(t *testing.T, fx *fixture) {
	a, b, barrier := fx.room("a"), fx.room("b"), fx.room("barrier")
	fx.subscribe(t, a)
	fx.subscribe(t, barrier)
	fx.publish(t, b, 1, engine.PublishOptions{})
	fx.publish(t, a, 1, engine.PublishOptions{})
	fx.publish(t, barrier, 1, engine.PublishOptions{})
	waitFor(t, "barrier", func() bool { return fx.rec.count(barrier) >= 1 })
	waitFor(t, "room a", func() bool { return fx.rec.count(a) >= 1 })
	if n := fx.rec.count(b); n != 0 {
		t.Errorf("unsubscribed room b got %d deliveries", n)
	}

	fx.unsubscribe(t, a)
	fx.publish(t, a, 2, engine.PublishOptions{})
	fx.publish(t, barrier, 2, engine.PublishOptions{})
	waitFor(t, "barrier 2", func() bool { return fx.rec.count(barrier) >= 2 })
	if n := fx.rec.count(a); n != 1 {
		t.Errorf("room a got %d deliveries after Unsubscribe, want 1 (from before)", n)
	}

	fx.subscribe(t, a) // subscribing again resumes delivery
	fx.publish(t, a, 3, engine.PublishOptions{})
	waitFor(t, "room a after resubscribe", func() bool { return fx.rec.count(a) >= 2 })
	if got := fx.rec.delivered(a); pubN(t, &got[len(got)-1]) != 3 {
		t.Errorf("after resubscribe got n=%d, want 3", pubN(t, &got[len(got)-1]))
	}
	// Unsubscribing a room never subscribed is harmless.
	fx.unsubscribe(t, fx.room("never"))
}

func testConcurrentOrder(t *testing.T, fx *fixture) {
	const publishers, each = 8, 100
	const total = publishers * each
	room := fx.room("busy")
	fx.subscribe(t, room)
	offsets := make(chan uint64, total)
	var wg sync.WaitGroup
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				res, err := fx.eng.Publish(context.Background(), room, newPub(g*each+i), engine.PublishOptions{History: engine.HistoryPolicy{Size: total}})
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				offsets <- res.Position.Offset
			}
		}()
	}
	wg.Wait()
	close(offsets)
	seen := make([]bool, total+1)
	for off := range offsets {
		if off < 1 || off > total || seen[off] {
			t.Fatalf("Publish returned offset %d twice or out of 1..%d", off, total)
		}
		seen[off] = true
	}

	waitFor(t, fmt.Sprintf("%d deliveries", total), func() bool { return fx.rec.count(room) >= total })
	got := fx.rec.delivered(room)
	if len(got) != total {
		t.Fatalf("delivered %d, want %d", len(got), total)
	}
	for i, p := range got {
		if p.Position.Offset != uint64(i+1) {
			t.Fatalf("delivery %d has offset %d: delivery order must equal offset order", i, p.Position.Offset)
		}
	}
	h := fx.history(t, room, engine.HistoryQuery{}, engine.HistoryPolicy{Size: total})
	if len(h.Publications) != total {
		t.Fatalf("history has %d events, want %d", len(h.Publications), total)
	}
	for i, p := range h.Publications {
		// History and delivery agree on which event has which offset.
		if p.Position.Offset != uint64(i+1) || pubN(t, p) != pubN(t, &got[i]) {
			t.Fatalf("history event %d: offset %d n=%d; delivered n=%d", i, p.Position.Offset, pubN(t, p), pubN(t, &got[i]))
		}
	}
}

func testEphemeral(t *testing.T, fx *fixture) {
	room := fx.room("eph")
	fx.subscribe(t, room)
	fx.publish(t, room, 1, engine.PublishOptions{History: history100})
	eph := newPub(100)
	eph.Type, eph.Ephemeral = protocol.TypeUserJoined, true
	res, err := fx.eng.Publish(context.Background(), room, eph, engine.PublishOptions{History: history100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position != (protocol.StreamPosition{}) || res.Duplicate {
		t.Errorf("ephemeral publish returned %+v, want a zero result", res)
	}
	r2 := fx.publish(t, room, 2, engine.PublishOptions{History: history100})
	if r2.Position.Offset != 2 {
		t.Errorf("event after an ephemeral one has offset %d, want 2 (ephemeral events take no offset)", r2.Position.Offset)
	}
	waitFor(t, "3 deliveries", func() bool { return fx.rec.count(room) >= 3 })
	got := fx.rec.delivered(room)
	if len(got) != 3 {
		t.Fatalf("delivered %d, want 3", len(got))
	}
	if !got[1].Ephemeral || got[1].Position != (protocol.StreamPosition{}) || got[1].Type != protocol.TypeUserJoined || pubN(t, &got[1]) != 100 {
		t.Errorf("ephemeral delivery = %+v, want Ephemeral, zero position, type and data kept", got[1])
	}
	if got[0].Position.Offset != 1 || got[2].Position.Offset != 2 {
		t.Errorf("ephemeral event not delivered in publish order: %+v", got)
	}
	h := fx.history(t, room, engine.HistoryQuery{}, history100)
	if len(h.Publications) != 2 || h.Latest.Offset != 2 {
		t.Fatalf("history has %d events, latest %d; want 2, 2 (no ephemeral)", len(h.Publications), h.Latest.Offset)
	}
	for _, p := range h.Publications {
		if p.Ephemeral {
			t.Errorf("ephemeral event in history")
		}
	}
	// An ephemeral event to a room nobody subscribed is simply dropped.
	other := newPub(1)
	other.Ephemeral = true
	if _, err := fx.eng.Publish(context.Background(), fx.room("nobody"), other, engine.PublishOptions{}); err != nil {
		t.Errorf("ephemeral publish to an unsubscribed room: %v", err)
	}
}

func testEmptyRoom(t *testing.T, fx *fixture) {
	room := fx.room("empty")
	fx.subscribe(t, room)
	h := fx.history(t, room, engine.HistoryQuery{Limit: 1}, history100)
	if !h.Complete || len(h.Publications) != 0 || h.Latest.Offset != 0 || h.Latest.Epoch == "" {
		t.Fatalf("History of a new room = %+v; want Complete, no events, offset 0 and an epoch", h)
	}
	// A subscriber told "epoch E, offset 0" must be able to recover from it.
	res := fx.publish(t, room, 1, engine.PublishOptions{History: history100})
	if res.Position != (protocol.StreamPosition{Offset: 1, Epoch: h.Latest.Epoch}) {
		t.Fatalf("first event at %+v, want offset 1 in the epoch History announced (%q)", res.Position, h.Latest.Epoch)
	}
	h = fx.history(t, room, engine.HistoryQuery{Since: protocol.StreamPosition{Epoch: h.Latest.Epoch}}, history100)
	if !h.Complete || len(h.Publications) != 1 || h.Publications[0].Position.Offset != 1 {
		t.Fatalf("History since offset 0 = %+v; want the one event, Complete", h)
	}
}

// publishN publishes events 1..n to room with policy and returns the epoch.
func publishN(t *testing.T, fx *fixture, room string, n int, policy engine.HistoryPolicy) string {
	t.Helper()
	var epoch string
	for i := 1; i <= n; i++ {
		epoch = fx.publish(t, room, i, engine.PublishOptions{History: policy}).Position.Epoch
	}
	return epoch
}

// checkEvents fails unless pubs are exactly the events numbered from..to.
func checkEvents(t *testing.T, what string, pubs []*engine.Publication, from, to int) {
	t.Helper()
	if len(pubs) != to-from+1 {
		t.Errorf("%s: %d events, want %d..%d", what, len(pubs), from, to)
		return
	}
	for i, p := range pubs {
		if want := from + i; p.Position.Offset != uint64(want) || pubN(t, p) != want {
			t.Errorf("%s: event %d has offset %d n=%d, want %d", what, i, p.Position.Offset, pubN(t, p), want)
		}
	}
}

func testHistoryNewest(t *testing.T, fx *fixture) {
	room := fx.room("h")
	epoch := publishN(t, fx, room, 10, history100)
	h := fx.history(t, room, engine.HistoryQuery{Limit: 3}, history100)
	checkEvents(t, "newest 3", h.Publications, 8, 10)
	if !h.Complete || h.Latest != (protocol.StreamPosition{Offset: 10, Epoch: epoch}) {
		t.Errorf("newest 3: Complete=%v Latest=%+v", h.Complete, h.Latest)
	}
	h = fx.history(t, room, engine.HistoryQuery{}, history100)
	checkEvents(t, "no limit", h.Publications, 1, 10)
	h = fx.history(t, room, engine.HistoryQuery{Limit: 50}, history100)
	checkEvents(t, "limit above size", h.Publications, 1, 10)
	p := h.Publications[0]
	if p.Type != "message" || p.UserID != "user-1" || p.ClientID != "conn-1" || p.Time <= 0 {
		t.Errorf("history does not keep the publication's fields: %+v", p)
	}
}

func testHistorySince(t *testing.T, fx *fixture) {
	room := fx.room("h")
	epoch := publishN(t, fx, room, 10, history100)
	at := func(off uint64) protocol.StreamPosition { return protocol.StreamPosition{Offset: off, Epoch: epoch} }
	tests := []struct {
		name     string
		q        engine.HistoryQuery
		from, to int
	}{
		{"since 4", engine.HistoryQuery{Since: at(4)}, 5, 10},
		{"since 4 limit 2", engine.HistoryQuery{Since: at(4), Limit: 2}, 5, 6},
		{"since 0", engine.HistoryQuery{Since: at(0)}, 1, 10},
		{"since 9", engine.HistoryQuery{Since: at(9)}, 10, 10},
		{"since latest", engine.HistoryQuery{Since: at(10)}, 11, 10},
	}
	for _, tt := range tests {
		h := fx.history(t, room, tt.q, history100)
		checkEvents(t, tt.name, h.Publications, tt.from, tt.to)
		if !h.Complete {
			t.Errorf("%s: Complete = false", tt.name)
		}
		if h.Latest != at(10) {
			t.Errorf("%s: Latest = %+v", tt.name, h.Latest)
		}
	}
}

func testHistoryOtherEpoch(t *testing.T, fx *fixture) {
	room := fx.room("h")
	epoch := publishN(t, fx, room, 5, history100)
	other := "zz" + epoch
	if len(other) > protocol.MaxEpochLen {
		other = other[:protocol.MaxEpochLen]
	}
	for _, since := range []protocol.StreamPosition{
		{Offset: 3, Epoch: other},
		{Offset: 0, Epoch: other},
		{Offset: 6, Epoch: epoch}, // beyond the stream: not a position it ever had
	} {
		h := fx.history(t, room, engine.HistoryQuery{Since: since}, history100)
		if h.Complete {
			t.Errorf("since %+v: Complete = true, want false", since)
		}
		if h.Latest != (protocol.StreamPosition{Offset: 5, Epoch: epoch}) {
			t.Errorf("since %+v: Latest = %+v", since, h.Latest)
		}
	}
}

func testHistoryEvicted(t *testing.T, fx *fixture) {
	room := fx.room("h")
	policy := engine.HistoryPolicy{Size: 5}
	epoch := publishN(t, fx, room, 12, policy)
	at := func(off uint64) protocol.StreamPosition { return protocol.StreamPosition{Offset: off, Epoch: epoch} }
	h := fx.history(t, room, engine.HistoryQuery{}, policy)
	checkEvents(t, "retained", h.Publications, 8, 12)
	h = fx.history(t, room, engine.HistoryQuery{Since: at(7)}, policy)
	checkEvents(t, "since 7 (first evicted one)", h.Publications, 8, 12)
	if !h.Complete {
		t.Errorf("since 7: every later event is retained, but Complete = false")
	}
	for _, off := range []uint64{6, 1, 0} {
		h = fx.history(t, room, engine.HistoryQuery{Since: at(off)}, policy)
		if h.Complete {
			t.Errorf("since %d: events were evicted, but Complete = true", off)
		}
		if h.Latest != at(12) {
			t.Errorf("since %d: Latest = %+v", off, h.Latest)
		}
	}
}

func testHistoryTTL(t *testing.T, fx *fixture) {
	room := fx.room("ttl")
	policy := engine.HistoryPolicy{Size: 100, TTL: 50 * time.Millisecond}
	epoch := publishN(t, fx, room, 3, policy)
	waitFor(t, "history to expire", func() bool {
		return len(fx.history(t, room, engine.HistoryQuery{}, policy).Publications) == 0
	})
	h := fx.history(t, room, engine.HistoryQuery{Since: protocol.StreamPosition{Epoch: epoch}}, policy)
	if h.Complete || len(h.Publications) != 0 {
		t.Errorf("since offset 0 after expiry: Complete=%v, %d events; want incomplete", h.Complete, len(h.Publications))
	}
}

func testIdempotency(t *testing.T, fx *fixture) {
	room := fx.room("idem")
	fx.subscribe(t, room)
	opts := engine.PublishOptions{History: history100, IdempotencyKey: "k1"}
	first := fx.publish(t, room, 1, opts)
	if first.Duplicate {
		t.Fatal("first publish reported Duplicate")
	}
	again := fx.publish(t, room, 99, opts)
	if !again.Duplicate || again.Position != first.Position {
		t.Errorf("second publish with the key = %+v, want Duplicate at %+v", again, first.Position)
	}
	second := fx.publish(t, room, 2, engine.PublishOptions{History: history100, IdempotencyKey: "k2"})
	if second.Duplicate || second.Position.Offset != 2 {
		t.Errorf("publish with another key = %+v, want offset 2", second)
	}
	// Keys belong to a room.
	if r := fx.publish(t, fx.room("idem2"), 1, opts); r.Duplicate {
		t.Errorf("same key in another room reported Duplicate")
	}
	waitFor(t, "2 deliveries", func() bool { return fx.rec.count(room) >= 2 })
	got := fx.rec.delivered(room)
	if len(got) != 2 || pubN(t, &got[0]) != 1 || pubN(t, &got[1]) != 2 {
		t.Errorf("delivered %d events (want n=1, n=2): the duplicate must not be delivered", len(got))
	}
	h := fx.history(t, room, engine.HistoryQuery{}, history100)
	checkEvents(t, "history", h.Publications, 1, 2)
}

func testIdempotencyExpires(t *testing.T, fx *fixture) {
	room := fx.room("idem")
	opts := engine.PublishOptions{IdempotencyKey: "k", IdempotencyTTL: 50 * time.Millisecond}
	first := fx.publish(t, room, 1, opts)
	var res engine.PublishResult
	waitFor(t, "the idempotency key to expire", func() bool {
		res = fx.publish(t, room, 2, opts)
		return !res.Duplicate
	})
	if res.Position.Epoch == first.Position.Epoch && res.Position.Offset != first.Position.Offset+1 {
		t.Errorf("publish after the key expired at %+v, want offset %d", res.Position, first.Position.Offset+1)
	}
}

func testControl(t *testing.T, fx *fixture) {
	msg := []byte(`{"op":"broadcast","type":"x","data":{"a":"` + fx.prefix + `"}}`)
	if err := fx.eng.PublishControl(context.Background(), msg); err != nil {
		t.Fatalf("PublishControl: %v", err)
	}
	waitFor(t, "the control message", func() bool {
		for _, m := range fx.rec.controlMessages() {
			if bytes.Equal(m, msg) {
				return true
			}
		}
		return false
	})
}

func testPresence(t *testing.T, fx *fixture) {
	ctx := context.Background()
	room, other := fx.room("p"), fx.room("p2")
	add := func(room, user, conn, info string) {
		t.Helper()
		ci := engine.ClientInfo{UserID: user, ConnectionID: conn}
		if info != "" {
			ci.Info = json.RawMessage(info)
		}
		if err := fx.eng.AddPresence(ctx, room, ci); err != nil {
			t.Fatalf("AddPresence: %v", err)
		}
	}
	check := func(what, room string, clients, users int) []engine.ClientInfo {
		t.Helper()
		st, err := fx.eng.PresenceStats(ctx, room)
		if err != nil || st != (engine.PresenceStats{Clients: clients, Users: users}) {
			t.Errorf("%s: PresenceStats = %+v, %v; want %d clients, %d users", what, st, err, clients, users)
		}
		list, err := fx.eng.PresenceList(ctx, room)
		if err != nil || len(list) != clients {
			t.Errorf("%s: PresenceList has %d entries (%v), want %d", what, len(list), err, clients)
		}
		return list
	}
	check("empty room", room, 0, 0)
	add(room, "alice", "c1", `{"name":"Alice"}`)
	add(room, "alice", "c2", "")
	add(room, "bob", "c3", "")
	add(other, "carol", "c4", "")
	list := check("three connections", room, 3, 2)
	found := false
	for _, ci := range list {
		if ci.ConnectionID == "c1" {
			found = ci.UserID == "alice" && string(ci.Info) == `{"name":"Alice"}`
		}
	}
	if !found {
		t.Errorf("entry c1 with its info missing: %+v", list)
	}
	add(room, "alice", "c1", `{"name":"Alice"}`) // refreshing is not a new entry
	check("after refresh", room, 3, 2)
	if err := fx.eng.RemovePresence(ctx, room, "c1"); err != nil {
		t.Fatal(err)
	}
	check("alice has one connection left", room, 2, 2)
	if err := fx.eng.RemovePresence(ctx, room, "c2"); err != nil {
		t.Fatal(err)
	}
	check("alice gone", room, 1, 1)
	if err := fx.eng.RemovePresence(ctx, room, "nobody"); err != nil {
		t.Errorf("removing an unknown connection: %v", err)
	}
	check("rooms are independent", other, 1, 1)
}

func testCancelled(t *testing.T, fx *fixture) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fx.eng.Publish(ctx, fx.room("c"), newPub(1), engine.PublishOptions{}); err == nil {
		t.Error("Publish with a cancelled context succeeded")
	}
	if _, err := fx.eng.History(ctx, fx.room("c"), engine.HistoryQuery{}, history100); err == nil {
		t.Error("History with a cancelled context succeeded")
	}
}

func testReadyClose(t *testing.T, fx *fixture) {
	if err := fx.eng.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := fx.eng.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fx.closed = true
	_, err := fx.eng.Publish(context.Background(), fx.room("x"), newPub(1), engine.PublishOptions{})
	if !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Publish after Close: %v, want engine.ErrClosed", err)
	}
	if err := fx.eng.Ready(context.Background()); err == nil {
		t.Error("Ready after Close = nil")
	}
}
