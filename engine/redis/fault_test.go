package redis

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Fault tests run their own redis-server, which they kill and restart,
// and so never disturb the shared one.

const faultWait = 30 * time.Second // bound on reconnecting after a fault

func checkOffsets(t *testing.T, got []*engine.Publication, epoch string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("delivered %d events, want %d", len(got), n)
	}
	for i, p := range got {
		if p.Position != (protocol.StreamPosition{Offset: uint64(i + 1), Epoch: epoch}) {
			t.Fatalf("delivery %d at %+v, want offset %d in %q (every event once, in order)", i, p.Position, i+1, epoch)
		}
	}
}

// TestRedisRestart kills Redis (no persistence: every key is lost) and
// starts it again: meanwhile Publish fails and Ready reports the outage;
// afterwards the engine has resubscribed its rooms and the control
// channel, streams continue in a new epoch, and presence is restored.
func TestRedisRestart(t *testing.T) {
	r := startPrivateRedis(t)
	a := newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:", PresenceTTL: time.Second, NodeID: "a"})
	b := newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:", NodeID: "b"})
	ra, rb := enginetest.NewRecorder(), enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, rb)
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}

	mustNoErr(t, a.Subscribe(ctx, "room"), "subscribe")
	mustNoErr(t, a.AddPresence(ctx, "room", engine.ClientInfo{UserID: "u", ConnectionID: "c"}), "presence")
	first, err := b.Publish(ctx, "room", &engine.Publication{Type: "m"}, policy)
	mustNoErr(t, err, "publish")
	waitFor(t, 5*time.Second, "the first event", func() bool { return ra.Count("room") == 1 })

	r.kill()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = b.Publish(pctx, "room", &engine.Publication{Type: "m"}, policy)
	cancel()
	if err == nil {
		t.Fatal("Publish succeeded while Redis was down")
	}
	waitFor(t, faultWait, "Ready to report the outage", func() bool { return a.Ready(ctx) != nil })
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = a.Subscribe(sctx, "other")
	cancel()
	if err == nil {
		t.Error("Subscribe succeeded while Redis was down")
	}

	r.start()
	waitFor(t, faultWait, "both nodes to be ready again", func() bool { return a.Ready(ctx) == nil && b.Ready(ctx) == nil })

	// b's command connections from before the restart may not have been
	// found dead yet; with an idempotency key, Publish retries on a fresh
	// one, which is safe.
	keyed := policy
	keyed.IdempotencyKey = "after-restart"
	second, err := b.Publish(ctx, "room", &engine.Publication{Type: "m"}, keyed)
	mustNoErr(t, err, "publish after restart")
	if second.Position.Offset != 1 || second.Position.Epoch == first.Position.Epoch {
		t.Errorf("after losing the data: %+v, want offset 1 in a new epoch (old %q)", second.Position, first.Position.Epoch)
	}
	waitFor(t, 5*time.Second, "the event after the restart (room resubscribed)", func() bool { return ra.Count("room") == 2 })
	if got := ra.Get("room")[1]; got.Position != second.Position {
		t.Errorf("delivered %+v, want %+v", got.Position, second.Position)
	}
	msg := []byte("after-restart")
	mustNoErr(t, b.PublishControl(ctx, msg), "control")
	waitFor(t, 5*time.Second, "control on both nodes (control channel resubscribed)", func() bool { return ra.HasControl(msg) && rb.HasControl(msg) })
	waitFor(t, faultWait, "a's presence entry to be refreshed back", func() bool {
		st, err := b.PresenceStats(ctx, "room")
		return err == nil && st == engine.PresenceStats{Clients: 1, Users: 1}
	})
	// The subscription that failed during the outage left nothing behind.
	a.roomsMu.RLock()
	_, leaked := a.rooms[a.channel("other")]
	a.roomsMu.RUnlock()
	if leaked {
		t.Error("a failed Subscribe left the room registered")
	}
}

// pubsubOutage is two engines on a private Redis, a subscribed to "room"
// and holding its first 3 events, and the means to keep a's pub/sub
// connection down while b publishes: the ACL change keeps a from
// resubscribing until up, so the gap is certain.
type pubsubOutage struct {
	t      *testing.T
	r      *privateRedis
	a, b   *Engine
	ra     *enginetest.Recorder
	policy engine.PublishOptions
	epoch  string
}

func newPubsubOutage(t *testing.T, historySize int) *pubsubOutage {
	r := startPrivateRedis(t)
	o := &pubsubOutage{t: t, r: r, ra: enginetest.NewRecorder(),
		a:      newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:", NodeID: "a"}),
		b:      newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:", NodeID: "b"}),
		policy: engine.PublishOptions{History: engine.HistoryPolicy{Size: historySize}}}
	startEngine(t, o.a, o.ra)
	startEngine(t, o.b, enginetest.NewRecorder())
	mustNoErr(t, o.a.Subscribe(context.Background(), "room"), "subscribe")
	o.publish(3)
	waitFor(t, 5*time.Second, "the first events", func() bool { return o.ra.Count("room") == 3 })
	return o
}

// publish publishes n events to the room through b.
func (o *pubsubOutage) publish(n int) {
	for i := 0; i < n; i++ {
		res, err := o.b.Publish(context.Background(), "room", &engine.Publication{Type: "m"}, o.policy)
		mustNoErr(o.t, err, "publish")
		o.epoch = res.Position.Epoch
	}
}

// down cuts a's pub/sub connection and keeps it from resubscribing.
func (o *pubsubOutage) down() {
	_, err := o.r.do("ACL", "SETUSER", "default", "-subscribe")
	mustNoErr(o.t, err, "acl")
	_, err = o.r.do("CLIENT", "KILL", "TYPE", "pubsub")
	mustNoErr(o.t, err, "client kill")
	waitFor(o.t, faultWait, "Ready to report the lost pub/sub connection", func() bool { return o.a.Ready(context.Background()) != nil })
}

// up lets a resubscribe.
func (o *pubsubOutage) up() {
	_, err := o.r.do("ACL", "SETUSER", "default", "+subscribe")
	mustNoErr(o.t, err, "acl")
}

// TestGapFilledAfterReconnect: events published while a node's pub/sub
// connection is down (Redis keeps the data) reach it after it reconnects,
// from history, each once and in order.
func TestGapFilledAfterReconnect(t *testing.T) {
	o := newPubsubOutage(t, 1000)
	o.down()
	o.publish(50) // a is not subscribed now
	if n := o.ra.Count("room"); n != 3 {
		t.Fatalf("a got %d events while unsubscribed", n)
	}
	o.up()
	waitFor(t, faultWait, "the missed events", func() bool { return o.ra.Count("room") >= 53 })
	o.publish(2) // live again, after the filled ones
	waitFor(t, 5*time.Second, "the live events", func() bool { return o.ra.Count("room") >= 55 })
	time.Sleep(50 * time.Millisecond) // let any wrong extra delivery land
	checkOffsets(t, o.ra.Get("room"), o.epoch, 55)
	if n := o.a.filled.Load(); n != 50 {
		t.Errorf("filled %d events from history, want the 50 missed", n)
	}
	if g := o.ra.Gaps("room"); len(g) != 0 {
		t.Errorf("declared gaps %+v although history held every missed event", g)
	}
}

// TestGapEvictedAfterReconnect: more events than the history keeps are
// published while a node's pub/sub connection is down. After it
// reconnects the node delivers what history still holds and declares the
// rest (HandleGap) before it: nothing is skipped without notice.
func TestGapEvictedAfterReconnect(t *testing.T) {
	o := newPubsubOutage(t, 20)
	o.down()
	// Offsets 4..503. Redis trims the history approximately (whole stream
	// nodes of 100 entries), so it keeps the newest 20 to about 120.
	o.publish(500)
	o.up()
	last := func() uint64 { got := o.ra.Get("room"); return got[len(got)-1].Position.Offset }
	waitFor(t, faultWait, "the retained events", func() bool { return last() == 503 })
	o.publish(1)
	waitFor(t, 5*time.Second, "the live event", func() bool { return last() == 504 })
	time.Sleep(50 * time.Millisecond) // let any wrong extra delivery land
	got := o.ra.Get("room")
	first := got[3].Position.Offset // the oldest event history still held
	checkOffsets(t, got[:3], o.epoch, 3)
	for i, p := range got[3:] {
		if p.Position != (protocol.StreamPosition{Epoch: o.epoch, Offset: first + uint64(i)}) {
			t.Fatalf("delivered %+v after the gap, want %d: every retained event once, in order", p.Position, first+uint64(i))
		}
	}
	if first <= 4 || first > 504-20 || last() != 504 {
		t.Errorf("after the gap: offsets %d..%d, want the retained tail of 4..503 (history 20, trimmed approximately), then 504", first, last())
	}
	gaps := o.ra.Gaps("room")
	wantGap := engine.Gap{After: protocol.StreamPosition{Epoch: o.epoch, Offset: 3}, Until: protocol.StreamPosition{Epoch: o.epoch, Offset: first - 1}, Reason: engine.GapEvicted}
	if len(gaps) != 1 || gaps[0] != wantGap {
		t.Errorf("declared gaps %+v, want %+v", gaps, wantGap)
	}
	t.Logf("history held %d..503 of 4..503; declared 4..%d", first, first-1)
}

// TestReconnectChaos kills the pub/sub connections again and again while
// events are published: whatever the timing, the subscriber ends up with
// every event exactly once, in order.
func TestReconnectChaos(t *testing.T) {
	r := startPrivateRedis(t)
	a := newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:"})
	b := newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "f:"})
	ra := enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, enginetest.NewRecorder())
	ctx := context.Background()
	const rooms, each = 4, 1000
	for i := range rooms {
		mustNoErr(t, a.Subscribe(ctx, fmt.Sprint("room", i)), "subscribe")
	}
	done := make(chan struct{})
	var kills int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k < 500; k++ {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := r.do("CLIENT", "KILL", "TYPE", "pubsub"); err == nil {
				kills++
			}
		}
	}()
	epochs := make([]string, rooms)
	for i := 0; i < each; i++ {
		for j := range rooms {
			res, err := b.Publish(ctx, fmt.Sprint("room", j), &engine.Publication{Type: "m"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: each}})
			mustNoErr(t, err, "publish")
			epochs[j] = res.Position.Epoch
		}
	}
	close(done)
	wg.Wait()
	for j := range rooms {
		room := fmt.Sprint("room", j)
		waitFor(t, faultWait, "every event of "+room, func() bool { return ra.Count(room) >= each })
	}
	time.Sleep(50 * time.Millisecond)
	for j := range rooms {
		checkOffsets(t, ra.Get(fmt.Sprint("room", j)), epochs[j], each)
	}
	t.Logf("%d pub/sub connection kills, %d events filled from history", kills, a.filled.Load())
}
