package nats

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// The shared suite checks history and recovery, which core-only mode does
// not offer (documented), so core-only mode has its own tests: fan-out and
// control across nodes, per-node streams, and a History that never
// vouches for a position.

func TestCoreOnlyFanOutAndOrder(t *testing.T) {
	a, b, ra, rb := twoNodes(t, Options{CoreOnly: true})
	ctx := context.Background()
	mustNoErr(t, a.Subscribe(ctx, "r"), "subscribe")
	const n = 200
	var epoch string
	for i := 1; i <= n; i++ {
		res, err := b.Publish(ctx, "r", &engine.Publication{Type: "m", Data: dataN(i)}, engine.PublishOptions{})
		mustNoErr(t, err, "publish")
		if res.Position.Offset != uint64(i) || (epoch != "" && res.Position.Epoch != epoch) {
			t.Fatalf("publish %d at %+v", i, res.Position)
		}
		epoch = res.Position.Epoch
	}
	eph := &engine.Publication{Type: protocol.TypeUserJoined, Ephemeral: true}
	_, err := b.Publish(ctx, "r", eph, engine.PublishOptions{})
	mustNoErr(t, err, "ephemeral")
	waitFor(t, 5*time.Second, "every event on a", func() bool { return ra.Count("r") >= n+1 })
	got := ra.Get("r")
	checkStream(t, "node a", got[:n], n)
	if !got[n].Ephemeral || got[n].Position != (protocol.StreamPosition{}) {
		t.Errorf("ephemeral delivered as %+v", got[n])
	}
	if rb.Count("r") != 0 {
		t.Errorf("node b did not subscribe but got %d events", rb.Count("r"))
	}
	// a's own stream of the room is another epoch: ids never collide.
	res, err := a.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	mustNoErr(t, err, "publish on a")
	if res.Position.Epoch == epoch || res.Position.Offset != 1 {
		t.Errorf("node a's first event at %+v; want offset 1 in an epoch other than b's %q", res.Position, epoch)
	}
	mustNoErr(t, a.Unsubscribe(ctx, "r"), "unsubscribe")
	msg := []byte("ctl")
	mustNoErr(t, a.PublishControl(ctx, msg), "control")
	waitFor(t, 5*time.Second, "control on both nodes", func() bool { return ra.HasControl(msg) && rb.HasControl(msg) })
}

func TestCoreOnlyHistoryNeverVouches(t *testing.T) {
	e := newTestEngine(t, Options{CoreOnly: true})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 100}
	h, err := e.History(ctx, "r", engine.HistoryQuery{Limit: 1}, policy)
	mustNoErr(t, err, "history")
	if !h.Complete || h.Latest.Offset != 0 || h.Latest.Epoch == "" {
		t.Errorf("fresh room: %+v; want Complete, offset 0, an epoch", h)
	}
	res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
	mustNoErr(t, err, "publish")
	if res.Position != (protocol.StreamPosition{Offset: 1, Epoch: h.Latest.Epoch}) {
		t.Errorf("first event at %+v, want offset 1 in %q", res.Position, h.Latest.Epoch)
	}
	for _, since := range []protocol.StreamPosition{{Epoch: h.Latest.Epoch}, res.Position, {Offset: 1, Epoch: "other"}} {
		h, err := e.History(ctx, "r", engine.HistoryQuery{Since: since}, policy)
		mustNoErr(t, err, "history")
		if h.Complete || len(h.Publications) != 0 {
			t.Errorf("since %+v: Complete=%v with %d events; core-only mode must not vouch for any position", since, h.Complete, len(h.Publications))
		}
		if h.Latest != res.Position {
			t.Errorf("since %+v: Latest %+v, want %+v", since, h.Latest, res.Position)
		}
	}
}

func TestCoreOnlyIdempotencyAndPresenceAreLocal(t *testing.T) {
	a, b, _, _ := twoNodes(t, Options{CoreOnly: true})
	ctx := context.Background()
	opts := engine.PublishOptions{IdempotencyKey: "k"}
	first, err := a.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
	mustNoErr(t, err, "publish")
	again, err := a.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
	mustNoErr(t, err, "publish")
	if !again.Duplicate || again.Position != first.Position {
		t.Errorf("same key on the same node: %+v, want a duplicate of %+v", again, first.Position)
	}
	other, err := b.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
	mustNoErr(t, err, "publish")
	if other.Duplicate {
		t.Errorf("core-only keys are per node, but node b saw a's key")
	}

	mustNoErr(t, a.AddPresence(ctx, "p", engine.ClientInfo{UserID: "u1", ConnectionID: "c1"}), "add")
	mustNoErr(t, a.AddPresence(ctx, "p", engine.ClientInfo{UserID: "u1", ConnectionID: "c2"}), "add")
	if st, err := a.PresenceStats(ctx, "p"); err != nil || st != (engine.PresenceStats{Clients: 2, Users: 1}) {
		t.Errorf("node a stats: %+v, %v", st, err)
	}
	if list, err := a.PresenceList(ctx, "p"); err != nil || len(list) != 2 || list[0].ConnectionID != "c1" {
		t.Errorf("node a list: %+v, %v", list, err)
	}
	if st, err := b.PresenceStats(ctx, "p"); err != nil || st.Clients != 0 {
		t.Errorf("node b stats: %+v, %v; core-only presence is per node", st, err)
	}
	mustNoErr(t, a.RemovePresence(ctx, "p", "c1"), "remove")
	if st, _ := a.PresenceStats(ctx, "p"); st != (engine.PresenceStats{Clients: 1, Users: 1}) {
		t.Errorf("after remove: %+v", st)
	}
	if err := a.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
