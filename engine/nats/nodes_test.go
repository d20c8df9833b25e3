package nats

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// twoNodes starts two engines sharing one prefix, as two Switchboard nodes
// of one cluster.
func twoNodes(t *testing.T, opts Options) (a, b *Engine, ra, rb *enginetest.Recorder) {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = testPrefix()
	}
	oa, ob := opts, opts
	oa.NodeID, ob.NodeID = "node-a", "node-b"
	a, b = newTestEngine(t, oa), newTestEngine(t, ob)
	ra, rb = enginetest.NewRecorder(), enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, rb)
	return a, b, ra, rb
}

func dataN(n int) json.RawMessage { return json.RawMessage(`{"n":` + strconv.Itoa(n) + `}`) }

func readN(t *testing.T, p *engine.Publication) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(p.Data, &v); err != nil {
		t.Fatalf("data %q: %v", p.Data, err)
	}
	return v.N
}

// checkStream fails unless got holds offsets 1..n of one epoch, in order.
func checkStream(t *testing.T, what string, got []*engine.Publication, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d events, want %d", what, len(got), n)
	}
	for i, p := range got {
		if p.Position.Offset != uint64(i+1) || p.Position.Epoch != got[0].Position.Epoch {
			t.Fatalf("%s: event %d at %+v, want offset %d in one epoch", what, i, p.Position, i+1)
		}
	}
}

// TestConcurrentPublishersOnTwoNodes: publishers on two nodes share one
// room stream: offsets are exactly 1..N, every node delivers all of them
// in offset order, and history agrees with delivery.
func TestConcurrentPublishersOnTwoNodes(t *testing.T) {
	a, b, ra, rb := twoNodes(t, Options{})
	ctx := context.Background()
	const room, perNode, goroutines = "busy", 160, 4 // perNode divisible by goroutines
	mustNoErr(t, a.Subscribe(ctx, room), "subscribe a")
	mustNoErr(t, b.Subscribe(ctx, room), "subscribe b")
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 2 * perNode}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	offsets := map[uint64]int{}
	for i, e := range []*Engine{a, b} {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range perNode / goroutines {
					n := i*perNode + g*(perNode/goroutines) + k
					res, err := e.Publish(ctx, room, &engine.Publication{Type: "m", Data: dataN(n)}, policy)
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					mu.Lock()
					if prev, dup := offsets[res.Position.Offset]; dup {
						t.Errorf("offset %d given to events %d and %d", res.Position.Offset, prev, n)
					}
					offsets[res.Position.Offset] = n
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	const total = 2 * perNode
	for off := uint64(1); off <= total; off++ {
		if _, ok := offsets[off]; !ok {
			t.Fatalf("offset %d was never returned: offsets must be exactly 1..%d", off, total)
		}
	}
	waitFor(t, 10*time.Second, "every event on both nodes", func() bool { return ra.Count(room) >= total && rb.Count(room) >= total })
	for name, rec := range map[string]*enginetest.Recorder{"a": ra, "b": rb} {
		got := rec.Get(room)
		checkStream(t, "node "+name, got, total)
		for _, p := range got {
			if readN(t, p) != offsets[p.Position.Offset] {
				t.Fatalf("node %s: offset %d carries n=%d, Publish returned it for n=%d", name, p.Position.Offset, readN(t, p), offsets[p.Position.Offset])
			}
		}
	}
	h, err := b.History(ctx, room, engine.HistoryQuery{}, policy.History)
	mustNoErr(t, err, "history")
	checkStream(t, "history", h.Publications, total)
}

// TestIdempotencyAcrossNodes: the same key sent at once through two nodes
// is stored and delivered once; every caller gets its position.
func TestIdempotencyAcrossNodes(t *testing.T) {
	a, b, ra, _ := twoNodes(t, Options{})
	ctx := context.Background()
	mustNoErr(t, a.Subscribe(ctx, "r"), "subscribe")
	opts := engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}, IdempotencyKey: "same"}
	const callers = 8
	results := make(chan engine.PublishResult, callers)
	var wg sync.WaitGroup
	for i := range callers {
		e := a
		if i%2 == 1 {
			e = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m", Data: dataN(i)}, opts)
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	firsts := 0
	var pos protocol.StreamPosition
	for res := range results {
		if !res.Duplicate {
			firsts++
		}
		if pos.Epoch == "" {
			pos = res.Position
		} else if res.Position != pos {
			t.Errorf("positions differ: %+v and %+v", res.Position, pos)
		}
	}
	if firsts != 1 {
		t.Errorf("%d publishes were not duplicates, want exactly 1", firsts)
	}
	// A barrier: a second delivery of the key's event would come before it.
	_, err := b.Publish(ctx, "r", &engine.Publication{Type: "barrier"}, engine.PublishOptions{History: opts.History})
	mustNoErr(t, err, "barrier")
	waitFor(t, 5*time.Second, "the barrier", func() bool { return ra.Count("r") >= 2 })
	if got := ra.Get("r"); len(got) != 2 || got[0].Position != pos {
		t.Errorf("delivered %d events (first at %+v), want the keyed one once at %+v", len(got), got[0].Position, pos)
	}
}

// TestPresenceAndControlAcrossNodes: entries added on one node are listed
// and counted on the other; a control message reaches both nodes.
func TestPresenceAndControlAcrossNodes(t *testing.T) {
	a, b, ra, rb := twoNodes(t, Options{})
	ctx := context.Background()
	mustNoErr(t, a.AddPresence(ctx, "p", engine.ClientInfo{UserID: "alice", ConnectionID: "c1", Info: json.RawMessage(`{"x":1}`)}), "add")
	mustNoErr(t, b.AddPresence(ctx, "p", engine.ClientInfo{UserID: "alice", ConnectionID: "c2"}), "add")
	mustNoErr(t, b.AddPresence(ctx, "p", engine.ClientInfo{UserID: "bob", ConnectionID: "c3"}), "add")
	for name, e := range map[string]*Engine{"a": a, "b": b} {
		st, err := e.PresenceStats(ctx, "p")
		if err != nil || st != (engine.PresenceStats{Clients: 3, Users: 2}) {
			t.Errorf("node %s: stats %+v, %v; want 3 clients, 2 users", name, st, err)
		}
		list, err := e.PresenceList(ctx, "p")
		if err != nil || len(list) != 3 || list[0].ConnectionID != "c1" || string(list[0].Info) != `{"x":1}` || list[2].UserID != "bob" {
			t.Errorf("node %s: list %+v, %v", name, list, err)
		}
	}
	// Any node may remove an entry (the hub removes its own).
	mustNoErr(t, a.RemovePresence(ctx, "p", "c3"), "remove")
	st, err := b.PresenceStats(ctx, "p")
	if err != nil || st != (engine.PresenceStats{Clients: 2, Users: 1}) {
		t.Errorf("after removing c3: %+v, %v", st, err)
	}
	msg := []byte(`{"op":"kick","user":"bob"}`)
	mustNoErr(t, b.PublishControl(ctx, msg), "control")
	waitFor(t, 5*time.Second, "the control message on both nodes", func() bool { return ra.HasControl(msg) && rb.HasControl(msg) })
}

// TestPresenceOfCrashedNodeExpires: a node that stops without removing its
// entries (its connection simply dies) loses them within PresenceTTL,
// while a live node's entries are refreshed and stay.
func TestPresenceOfCrashedNodeExpires(t *testing.T) {
	a, b, _, _ := twoNodes(t, Options{PresenceTTL: time.Second})
	ctx := context.Background()
	mustNoErr(t, a.AddPresence(ctx, "p", engine.ClientInfo{UserID: "ua", ConnectionID: "ca"}), "add a")
	mustNoErr(t, b.AddPresence(ctx, "p", engine.ClientInfo{UserID: "ub", ConnectionID: "cb"}), "add b")
	// Crash a: its connection goes, no cleanup runs.
	box, _ := a.box()
	a.cancel()
	box.nc.Close()
	waitFor(t, 10*time.Second, "the crashed node's entry to expire", func() bool {
		st, err := b.PresenceStats(ctx, "p")
		return err == nil && st == engine.PresenceStats{Clients: 1, Users: 1}
	})
	// b's own entry outlives several TTLs.
	time.Sleep(2500 * time.Millisecond)
	list, err := b.PresenceList(ctx, "p")
	if err != nil || len(list) != 1 || list[0].ConnectionID != "cb" {
		t.Errorf("live node's entry after 2.5 TTLs: %+v, %v", list, err)
	}
}

// TestCloseRemovesPresence: a node closing cleanly removes its entries at
// once.
func TestCloseRemovesPresence(t *testing.T) {
	a, b, _, _ := twoNodes(t, Options{})
	ctx := context.Background()
	mustNoErr(t, a.AddPresence(ctx, "p", engine.ClientInfo{UserID: "u", ConnectionID: "c"}), "add")
	a.Close()
	st, err := b.PresenceStats(ctx, "p")
	if err != nil || st.Clients != 0 {
		t.Errorf("after Close: %+v, %v; want no entries", st, err)
	}
}

// TestGapFilledAfterReconnect: node a loses NATS (its proxy is cut) while
// node b publishes; after a reconnects it delivers the missed events from
// the stream, in order, then the live ones, each once.
func TestGapFilledAfterReconnect(t *testing.T) {
	url := testNATSURL(t)
	p := startProxy(t, natsHostPort(t, url))
	prefix := testPrefix()
	a := newTestEngine(t, Options{Prefix: prefix, NodeID: "a", OpTimeout: time.Second})
	a.opts.URL = p.url() // through the proxy; streams are still cleaned up via the real URL
	b := newTestEngine(t, Options{Prefix: prefix, NodeID: "b"})
	ra := enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}
	mustNoErr(t, a.Subscribe(ctx, "r"), "subscribe")
	publish := func(n int) {
		t.Helper()
		_, err := b.Publish(ctx, "r", &engine.Publication{Type: "m", Data: dataN(n)}, policy)
		mustNoErr(t, err, "publish %d", n)
	}
	publish(1)
	waitFor(t, 5*time.Second, "event 1", func() bool { return ra.Count("r") == 1 })

	p.cut()
	waitFor(t, 10*time.Second, "a to notice", func() bool { return a.Ready(ctx) != nil })
	for n := 2; n <= 4; n++ {
		publish(n)
	}
	p.restore()
	waitFor(t, 20*time.Second, "a to reconnect", func() bool { return a.Ready(ctx) == nil })
	waitFor(t, 10*time.Second, "the missed events", func() bool { return ra.Count("r") >= 4 })
	publish(5)
	waitFor(t, 5*time.Second, "the live event after", func() bool { return ra.Count("r") >= 5 })
	got := ra.Get("r")
	checkStream(t, "node a", got, 5)
	for i, ev := range got {
		if readN(t, ev) != i+1 {
			t.Errorf("delivery %d carries n=%d", i, readN(t, ev))
		}
	}
}

func natsHostPort(t *testing.T, url string) string {
	t.Helper()
	nc, err := natsgo.Connect(url)
	mustNoErr(t, err, "connect")
	defer nc.Close()
	return nc.ConnectedAddr()
}
