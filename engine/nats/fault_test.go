package nats

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Fault tests run their own nats-server, which they kill and restart, and
// so never disturb the shared one.

const faultWait = 30 * time.Second // bound on reconnecting after a fault

type ack struct {
	pos protocol.StreamPosition
	n   int
}

// publisher publishes to room in a loop until stopped, recording what was
// acknowledged and counting errors.
type publisher struct {
	mu   sync.Mutex
	acks []ack
	errs int
	stop chan struct{}
	done chan struct{}
}

func startPublisher(e *Engine, room string, policy engine.PublishOptions) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for n := 1; n <= 1_000_000; n++ {
			select {
			case <-p.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := e.Publish(ctx, room, &engine.Publication{Type: "m", Data: dataN(n)}, policy)
			cancel()
			p.mu.Lock()
			if err != nil {
				p.errs++
			} else {
				p.acks = append(p.acks, ack{res.Position, n})
			}
			p.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return p
}

func (p *publisher) counts() (acks, errs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks), p.errs
}

func (p *publisher) finish() []ack {
	close(p.stop)
	<-p.done
	return p.acks
}

// TestServerRestart kills NATS in the middle of a stream of publishes and
// starts it again on the same store: while it is down Publish fails and
// Ready reports it; every event that was acknowledged is in the stream at
// its offset afterwards; offsets go on in the same epoch; the subscribed
// room's delivery resumes with every stored event delivered once, in
// order; presence (kept in memory by the server) is put back.
func TestServerRestart(t *testing.T) {
	srv := startPrivateNATS(t, nil)
	e := newTestEngine(t, Options{URL: srv.url(), NodeID: "a", OpTimeout: time.Second, PresenceTTL: time.Second})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100_000}}
	mustNoErr(t, e.Subscribe(ctx, "room"), "subscribe")
	mustNoErr(t, e.AddPresence(ctx, "room", engine.ClientInfo{UserID: "u", ConnectionID: "c"}), "presence")

	pub := startPublisher(e, "room", policy)
	waitFor(t, 10*time.Second, "publishes before the crash", func() bool { n, _ := pub.counts(); return n >= 20 })
	srv.kill()
	waitFor(t, faultWait, "Ready to report the outage", func() bool { return e.Ready(ctx) != nil })
	_, errsBefore := pub.counts()
	waitFor(t, 10*time.Second, "publishes to fail while down", func() bool { _, n := pub.counts(); return n >= errsBefore+3 })
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := e.Subscribe(sctx, "other"); err == nil {
		t.Error("Subscribe succeeded while NATS was down")
	}
	cancel()

	srv.start()
	waitFor(t, faultWait, "Ready after the restart", func() bool { return e.Ready(ctx) == nil })
	acked, _ := pub.counts()
	waitFor(t, 10*time.Second, "publishes after the restart", func() bool { n, _ := pub.counts(); return n >= acked+20 })
	acks := pub.finish()

	h, err := e.History(ctx, "room", engine.HistoryQuery{}, policy.History)
	mustNoErr(t, err, "history")
	checkStream(t, "stream after the restart", h.Publications, int(h.Latest.Offset))
	stored := make(map[uint64]int, len(h.Publications))
	for _, p := range h.Publications {
		stored[p.Position.Offset] = readN(t, p)
	}
	for _, a := range acks {
		if a.pos.Epoch != h.Latest.Epoch {
			t.Fatalf("event %d acknowledged in epoch %q, the stream is in %q: the store survived, the epoch must too", a.n, a.pos.Epoch, h.Latest.Epoch)
		}
		if n, ok := stored[a.pos.Offset]; !ok || n != a.n {
			t.Fatalf("event %d was acknowledged at offset %d, the stream holds n=%d there (%v): an acknowledged event was lost", a.n, a.pos.Offset, n, ok)
		}
	}
	waitFor(t, 10*time.Second, "every stored event delivered", func() bool { return rec.Count("room") >= len(h.Publications) })
	got := rec.Get("room")
	checkStream(t, "deliveries", got, len(h.Publications))
	waitFor(t, 10*time.Second, "presence restored", func() bool {
		st, err := e.PresenceStats(ctx, "room")
		return err == nil && st.Clients == 1
	})
}

// TestServerLosesData restarts NATS on an empty store: the room starts a
// new epoch at offset 1 (the cached top of the lost stream is not trusted),
// the streams are recreated, and a client's old position is reported as
// not recoverable.
func TestServerLosesData(t *testing.T) {
	srv := startPrivateNATS(t, nil)
	e := newTestEngine(t, Options{URL: srv.url(), OpTimeout: time.Second})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}
	mustNoErr(t, e.Subscribe(ctx, "room"), "subscribe")
	var last engine.PublishResult
	for i := 1; i <= 3; i++ {
		var err error
		last, err = e.Publish(ctx, "room", &engine.Publication{Type: "m", Data: dataN(i)}, policy)
		mustNoErr(t, err, "publish")
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return rec.Count("room") == 3 })

	srv.kill()
	mustNoErr(t, os.RemoveAll(filepath.Join(srv.dir, "store")), "wipe the store")
	srv.start()
	waitFor(t, faultWait, "Ready after the restart", func() bool { return e.Ready(ctx) == nil })

	var res engine.PublishResult
	waitFor(t, faultWait, "a publish to succeed", func() bool {
		var err error
		res, err = e.Publish(ctx, "room", &engine.Publication{Type: "m", Data: dataN(4)}, policy)
		return err == nil
	})
	if res.Position.Offset != 1 || res.Position.Epoch == last.Position.Epoch {
		t.Errorf("after the data was lost: %+v, want offset 1 in a new epoch (old %q)", res.Position, last.Position.Epoch)
	}
	h, err := e.History(ctx, "room", engine.HistoryQuery{Since: last.Position}, policy.History)
	mustNoErr(t, err, "history")
	if h.Complete || h.Latest != res.Position {
		t.Errorf("history since the old position: Complete=%v Latest=%+v; want incomplete, latest %+v", h.Complete, h.Latest, res.Position)
	}
	waitFor(t, 5*time.Second, "the new epoch's event delivered", func() bool { return rec.Count("room") == 4 })
	if got := rec.Get("room")[3]; got.Position != res.Position {
		t.Errorf("delivered %+v, want %+v", got.Position, res.Position)
	}
	// The node cannot know what of the old stream it missed: it says so.
	gaps := rec.Gaps("room")
	if len(gaps) != 1 || gaps[0].After != last.Position {
		t.Fatalf("declared gaps %+v, want one after %+v", gaps, last.Position)
	}
	g := gaps[0]
	lost := g.Reason == engine.GapStreamLost && g.Until == protocol.StreamPosition{Epoch: res.Position.Epoch}
	if !lost && g.Reason != engine.GapUnavailable {
		t.Errorf("declared %+v, want stream_lost until %s-0 (or unavailable, if the stream was read before it was recreated)", g, res.Position.Epoch)
	}
}

// TestRestartPublishBeforeReconnectHandler restarts a NATS that keeps the
// streams in memory (so it comes back without them) and publishes as soon
// as the connection is back, before the engine's reconnect handler has
// run (nats.go runs it later, on its callback goroutine; here a test
// disconnect handler holds that goroutine, as a loaded machine may). A
// publish to a room whose top is not cached reads the top with a direct
// get, which a missing stream never answers: it must not wait out its
// deadline but find the streams recreated.
func TestRestartPublishBeforeReconnectHandler(t *testing.T) {
	srv := startPrivateNATS(t, nil)
	e := newTestEngine(t, Options{URL: srv.url(), MemoryStorage: true})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}
	_, err := e.Publish(ctx, "before", &engine.Publication{Type: "m", Data: dataN(1)}, policy)
	mustNoErr(t, err, "publish before the restart")

	release := make(chan struct{})
	defer close(release)
	e.conn.Load().nc.SetDisconnectErrHandler(func(*natsgo.Conn, error) {
		select { // hold the callbacks, the reconnect handler among them
		case <-release:
		case <-time.After(faultWait):
		}
	})
	srv.kill()
	srv.start()
	waitFor(t, faultWait, "the connection back", func() bool { return e.Ready(ctx) == nil })

	// A generous bound: without the streams, the direct get waits for all of it.
	const bound = 5 * time.Second
	for i, room := range []string{"fresh", "keyed", "before"} {
		p := policy
		if room == "keyed" {
			p.IdempotencyKey = "k"
		}
		pctx, cancel := context.WithTimeout(ctx, bound)
		res, err := e.Publish(pctx, room, &engine.Publication{Type: "m", Data: dataN(i + 2)}, p)
		cancel()
		mustNoErr(t, err, "publish to %q within %s of the connection's return", room, bound)
		if res.Position.Offset != 1 {
			t.Errorf("publish to %q after the streams were lost: %+v, want offset 1", room, res.Position)
		}
	}
}

// TestStreamDeletedWhileConnected: the room stream is deleted (say by an
// operator) while the engine stays connected, so no reconnect makes the
// engine recreate it. A direct get from a missing stream is never
// answered; the engine must notice within a few seconds, recreate the
// stream and publish, not wait out every publish's whole deadline.
func TestStreamDeletedWhileConnected(t *testing.T) {
	srv := startPrivateNATS(t, nil)
	e := newTestEngine(t, Options{URL: srv.url(), MemoryStorage: true})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}
	_, err := e.Publish(ctx, "before", &engine.Publication{Type: "m", Data: dataN(1)}, policy)
	mustNoErr(t, err, "publish before the deletion")

	js, err := jetstream.New(e.conn.Load().nc)
	mustNoErr(t, err, "jetstream")
	mustNoErr(t, js.DeleteStream(ctx, e.histStream), "delete %s", e.histStream)

	// Without the check the direct get of the new room's top waits for all of it.
	const bound = 8 * time.Second
	pctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	res, err := e.Publish(pctx, "fresh", &engine.Publication{Type: "m", Data: dataN(2)}, policy)
	mustNoErr(t, err, "publish to a new room within %s of the stream's deletion", bound)
	if res.Position.Offset != 1 {
		t.Errorf("publish after the stream was deleted: %+v, want offset 1", res.Position)
	}
}
