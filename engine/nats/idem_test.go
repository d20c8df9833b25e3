package nats

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// staleClaim writes the pending record a publisher leaves behind when it
// crashes between claiming key and recording the outcome, age ago. The
// room's top then was top.
func staleClaim(t *testing.T, e *Engine, room, key, id string, top roomTop, age time.Duration) {
	t.Helper()
	b, _ := e.box()
	rec := idemRecord{State: stPending, Claim: id, At: time.Now().Add(-age).UnixMilli(),
		AfterSeq: top.seq, AfterEpoch: top.pos.Epoch, AfterOffset: top.pos.Offset}
	_, err := e.putIdem(context.Background(), b, e.idemPrefix+token(room)+"."+token(key), rec, 0)
	mustNoErr(t, err, "write claim")
}

// appendClaimed stores an event under claim id, as the crashed publisher
// did before it died.
func appendClaimed(t *testing.T, e *Engine, room, id string) protocol.StreamPosition {
	t.Helper()
	b, _ := e.box()
	st := &pubState{}
	pos, _, err := e.appendEvent(context.Background(), b, e.histSubject(room), st, &engine.Publication{Type: "m", Data: dataN(1)}, &claim{id: id})
	mustNoErr(t, err, "append")
	return pos
}

func topOf(t *testing.T, e *Engine, room string) roomTop {
	t.Helper()
	b, _ := e.box()
	top, err := e.top(context.Background(), b, e.histSubject(room), false)
	mustNoErr(t, err, "top")
	return top
}

func TestStaleClaimResolved(t *testing.T) {
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 100}}
	tests := []struct {
		name    string
		before  int  // events in the room before the claim
		stored  bool // the crashed publisher stored its event
		after   int  // events others published after it
		age     time.Duration
		wantDup bool
	}{
		// A minute: past the claim's lease, within the key's TTL (2 min).
		{"stored, empty room", 0, true, 0, time.Minute, true},
		{"stored, then more events", 3, true, 5, time.Minute, true},
		{"not stored", 3, false, 2, time.Minute, false},
		{"not stored, nothing after", 2, false, 0, time.Minute, false},
		{"not stored, empty room", 0, false, 0, time.Minute, false},
		// Past the key's TTL: the key is free whatever became of it.
		{"stored, key expired", 1, true, 1, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, Options{})
			startEngine(t, e, enginetest.NewRecorder())
			ctx := context.Background()
			for i := 0; i < tt.before; i++ {
				_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, policy)
				mustNoErr(t, err, "publish")
			}
			staleClaim(t, e, "r", "k", "dead-claim", topOf(t, e, "r"), tt.age)
			var stored protocol.StreamPosition
			if tt.stored {
				stored = appendClaimed(t, e, "r", "dead-claim")
			}
			for i := 0; i < tt.after; i++ {
				_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, policy)
				mustNoErr(t, err, "publish")
			}
			opts := policy
			opts.IdempotencyKey = "k"
			res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
			if err != nil {
				t.Fatalf("publish with the key: %v", err)
			}
			if tt.wantDup {
				if !res.Duplicate || res.Position != stored {
					t.Errorf("got %+v, want a duplicate of the crashed publisher's event at %+v", res, stored)
				}
			} else if want := tt.before + tt.after + 1 + btoi(tt.stored); res.Duplicate || res.Position.Offset != uint64(want) {
				t.Errorf("got %+v, want a new event at offset %d", res, want)
			}
			// Resolved for good: the next one is a plain duplicate.
			again, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
			mustNoErr(t, err, "publish again")
			if !again.Duplicate || again.Position != res.Position {
				t.Errorf("again: %+v, want a duplicate at %+v", again, res.Position)
			}
		})
	}
}

// TestStaleClaimUndecidable: when the messages after a stale claim were
// trimmed, whether its event was stored cannot be told; Publish reports
// an error rather than risk publishing twice.
func TestStaleClaimUndecidable(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 1}}
	_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, policy)
	mustNoErr(t, err, "publish")
	staleClaim(t, e, "r", "k", "dead-claim", topOf(t, e, "r"), time.Minute)
	appendClaimed(t, e, "r", "dead-claim")
	for i := 0; i < 3; i++ {
		_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, policy)
		mustNoErr(t, err, "publish")
	}
	b, _ := e.box()
	e.trim(b, e.histSubject("r"), 1)
	waitFor(t, 5*time.Second, "the trim", func() bool {
		n, err := e.subjectCounts(ctx, b, e.histStream, e.histSubject("r"))
		return err == nil && n[e.histSubject("r")] == 1
	})
	opts := policy
	opts.IdempotencyKey = "k"
	_, err = e.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
	if !errors.Is(err, errClaimUnknown) {
		t.Fatalf("publish with the key: %v, want errClaimUnknown", err)
	}
}

// TestFailedPublishReleasesKey: a publish that JetStream rejected (so
// stored nothing) releases its key at once: a retry publishes.
func TestFailedPublishReleasesKey(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	opts := engine.PublishOptions{IdempotencyKey: "k"}
	// A payload over the server's max_payload (1 MiB by default) is
	// refused before anything is stored.
	big := &engine.Publication{Type: "m", Data: make([]byte, 2<<20)}
	if _, err := e.Publish(ctx, "r", big, opts); err == nil {
		t.Fatal("a 2 MiB event was accepted")
	}
	res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, opts)
	mustNoErr(t, err, "retry")
	if res.Duplicate || res.Position.Offset != 1 {
		t.Errorf("retry: %+v, want a new event at offset 1", res)
	}
}

// TestTrimKeepsHistorySize: a room's messages are trimmed to its history
// size (plus at most one trim step), history stays right, and offsets go
// on from the top.
func TestTrimKeepsHistorySize(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 5}
	const n = 200
	for i := 1; i <= n; i++ {
		_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m", Data: dataN(i)}, engine.PublishOptions{History: policy})
		mustNoErr(t, err, "publish")
	}
	b, _ := e.box()
	subj := e.histSubject("r")
	waitFor(t, 5*time.Second, "trims", func() bool {
		c, err := e.subjectCounts(ctx, b, e.histStream, subj)
		return err == nil && c[subj] <= uint64(policy.Size)+trimStep(policy.Size)
	})
	h, err := e.History(ctx, "r", engine.HistoryQuery{}, policy)
	mustNoErr(t, err, "history")
	if len(h.Publications) != 5 || h.Publications[0].Position.Offset != n-4 || h.Latest.Offset != n {
		t.Errorf("history after trims: %d events from %+v, latest %+v", len(h.Publications), h.Publications, h.Latest)
	}
	res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
	mustNoErr(t, err, "publish")
	if res.Position.Offset != n+1 {
		t.Errorf("after trims: offset %d, want %d", res.Position.Offset, n+1)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReadsLeaveNoConsumers: every multi-event read creates a consumer;
// they are deleted right after, well before the server would drop them
// for inactivity.
func TestReadsLeaveNoConsumers(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 100}
	var first engine.PublishResult
	for i := 1; i <= 10; i++ {
		res, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
		mustNoErr(t, err, "publish")
		if i == 1 {
			first = res
		}
	}
	for i := 0; i < 20; i++ {
		h, err := e.History(ctx, "r", engine.HistoryQuery{Since: first.Position}, policy)
		mustNoErr(t, err, "history")
		if len(h.Publications) != 9 || !h.Complete {
			t.Fatalf("history: %d events, complete %v", len(h.Publications), h.Complete)
		}
	}
	b, _ := e.box()
	waitFor(t, readInactive/2, "the read consumers to be deleted", func() bool {
		info, err := b.js.Stream(ctx, e.histStream)
		if err != nil {
			return false
		}
		return info.CachedInfo().State.Consumers == 0
	})
}
