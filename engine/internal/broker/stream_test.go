package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// fakeStream is a room's stream as a broker keeps it: epoch, top offset,
// and the retained offsets lo..top (lo > top: none retained). Its read
// answers as the engines' History does without a size or TTL bound.
type fakeStream struct {
	epoch   string // "": the broker has no stream for the room
	top, lo uint64
	fail    int // the next fail reads return an error
	reads   int
}

func (s *fakeStream) read(_ context.Context, q engine.HistoryQuery) (engine.HistoryResult, error) {
	s.reads++
	if s.fail > 0 {
		s.fail--
		return engine.HistoryResult{}, errors.New("connection reset")
	}
	res := engine.HistoryResult{Latest: protocol.StreamPosition{Epoch: s.epoch, Offset: s.top}}
	pub := func(off uint64) *engine.Publication {
		return &engine.Publication{Type: "m", Position: protocol.StreamPosition{Epoch: s.epoch, Offset: off}}
	}
	if s.epoch == "" {
		res.Complete = q.Since == (protocol.StreamPosition{})
		return res, nil
	}
	if q.Since == (protocol.StreamPosition{}) {
		res.Complete = true
		from := s.lo
		if q.Limit > 0 && s.top >= uint64(q.Limit) && s.top-uint64(q.Limit)+1 > from {
			from = s.top - uint64(q.Limit) + 1
		}
		for o := from; o <= s.top; o++ {
			res.Publications = append(res.Publications, pub(o))
		}
		return res, nil
	}
	if q.Since.Epoch != s.epoch || q.Since.Offset > s.top {
		return res, nil
	}
	if q.Since.Offset == s.top {
		res.Complete = true
		return res, nil
	}
	if q.Since.Offset+1 < s.lo {
		return res, nil
	}
	res.Complete = true
	for o := q.Since.Offset + 1; o <= s.top && (q.Limit == 0 || len(res.Publications) < q.Limit); o++ {
		res.Publications = append(res.Publications, pub(o))
	}
	return res, nil
}

// log records what the tracker handed over, as "E-N" for an event and
// "gap AFTER..UNTIL REASON" for a gap.
type log struct{ got []string }

func (l *log) HandlePublication(_ string, p *engine.Publication) {
	l.got = append(l.got, id(p.Position))
}
func (l *log) HandleControl([]byte) {}
func (l *log) HandleGap(_ string, g engine.Gap) {
	l.got = append(l.got, fmt.Sprintf("gap %s..%s %s", id(g.After), id(g.Until), g.Reason))
}

func id(p protocol.StreamPosition) string {
	if p.Epoch == "" {
		return "?"
	}
	return fmt.Sprintf("%s-%d", p.Epoch, p.Offset)
}

func live(epoch string, off uint64) *engine.Publication {
	return &engine.Publication{Type: "m", Position: protocol.StreamPosition{Epoch: epoch, Offset: off}}
}

// ids lists epoch-from .. epoch-to.
func ids(epoch string, from, to uint64) []string {
	var out []string
	for o := from; o <= to; o++ {
		out = append(out, fmt.Sprintf("%s-%d", epoch, o))
	}
	return out
}

func cat(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		}
	}
	return out
}

func pos(epoch string, off uint64) protocol.StreamPosition {
	return protocol.StreamPosition{Epoch: epoch, Offset: off}
}

// TestTracker: every case ends with the events delivered once, in order,
// and a gap declared (before what follows it) for exactly what could not
// be delivered.
func TestTracker(t *testing.T) {
	type step struct {
		pub    *engine.Publication // a live event, or
		resync bool                // a reconnect's resync
		stream *fakeStream         // the broker's state from this step on
	}
	cases := []struct {
		name     string
		baseline *protocol.StreamPosition
		max      int
		stream   *fakeStream
		steps    []step
		want     []string
	}{
		{
			name: "in order", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 3, lo: 1},
			steps:  []step{{pub: live("a", 1)}, {pub: live("a", 2)}, {pub: live("a", 3)}},
			want:   ids("a", 1, 3),
		},
		{
			name: "duplicates dropped", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 3, lo: 1},
			steps:  []step{{pub: live("a", 1)}, {pub: live("a", 2)}, {pub: live("a", 2)}, {pub: live("a", 1)}, {pub: live("a", 3)}},
			want:   ids("a", 1, 3),
		},
		{
			name: "at or before the baseline dropped", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "a", top: 6, lo: 1},
			steps:  []step{{pub: live("a", 4)}, {pub: live("a", 5)}, {pub: live("a", 6)}},
			want:   ids("a", 6, 6),
		},
		{
			name: "gap filled fully", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 6, lo: 1},
			steps:  []step{{pub: live("a", 1)}, {pub: live("a", 6)}},
			want:   ids("a", 1, 6),
		},
		{
			name: "gap partly evicted", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 10, lo: 4},
			steps:  []step{{pub: live("a", 1)}, {pub: live("a", 8)}},
			want:   cat("a-1", "gap a-1..a-3 evicted", ids("a", 4, 8)),
		},
		{
			name: "gap fully evicted", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 10, lo: 10},
			steps:  []step{{pub: live("a", 1)}, {pub: live("a", 10)}},
			want:   cat("a-1", "gap a-1..a-9 evicted", "a-10"),
		},
		{
			name: "history off", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 2},
			stream: &fakeStream{epoch: "a", top: 11, lo: 12},
			steps:  []step{{pub: live("a", 11)}},
			want:   cat("gap a-2..a-10 evicted", "a-11"),
		},
		{
			name: "epoch change, new stream partly evicted", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "b", top: 10, lo: 3},
			steps:  []step{{pub: live("b", 7)}},
			want:   cat("gap a-5..b-2 stream_lost", ids("b", 3, 7)),
		},
		{
			name: "epoch change, new stream whole", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "b", top: 3, lo: 1},
			steps:  []step{{pub: live("b", 3)}, {pub: live("a", 6)}},
			want:   cat("gap a-5..b-0 stream_lost", ids("b", 1, 3), "gap b-3..a-5 stream_lost", "a-6"),
		},
		{
			name: "epoch change at offset 1", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "b", top: 1, lo: 1},
			steps:  []step{{pub: live("b", 1)}, {pub: live("b", 2)}},
			want:   cat("gap a-5..b-0 stream_lost", "b-1", "b-2"),
		},
		{
			name: "room without a stream: first epoch is new", baseline: &protocol.StreamPosition{},
			stream: &fakeStream{epoch: "a", top: 3, lo: 1},
			steps:  []step{{pub: live("a", 3)}},
			want:   ids("a", 1, 3),
		},
		{
			name: "room without a stream, first events evicted", baseline: &protocol.StreamPosition{},
			stream: &fakeStream{epoch: "a", top: 9, lo: 6},
			steps:  []step{{pub: live("a", 8)}},
			want:   cat("gap ?..a-5 evicted", ids("a", 6, 8)),
		},
		{
			name: "resync fills fully", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 2},
			stream: &fakeStream{epoch: "a", top: 10, lo: 1},
			steps:  []step{{resync: true}, {pub: live("a", 9)}, {pub: live("a", 11)}},
			want:   ids("a", 3, 11),
		},
		{
			name: "resync with nothing missed", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 10},
			stream: &fakeStream{epoch: "a", top: 10, lo: 1},
			steps:  []step{{resync: true}, {pub: live("a", 11)}},
			want:   ids("a", 11, 11),
		},
		{
			name: "resync partly evicted", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 2},
			stream: &fakeStream{epoch: "a", top: 10, lo: 6},
			steps:  []step{{resync: true}},
			want:   cat("gap a-2..a-5 evicted", ids("a", 6, 10)),
		},
		{
			// The case: the broker restarted empty and a burst
			// larger than the history was published before the node read.
			name: "resync after the stream was lost and refilled", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "b", top: 300, lo: 201},
			steps:  []step{{resync: true}, {pub: live("b", 250)}, {pub: live("b", 301)}},
			want:   cat("gap a-5..b-200 stream_lost", ids("b", 201, 301)),
		},
		{
			name: "live event of the new stream before the resync", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 5},
			stream: &fakeStream{epoch: "b", top: 300, lo: 201},
			steps:  []step{{pub: live("b", 250)}, {resync: true}},
			want:   cat("gap a-5..b-200 stream_lost", ids("b", 201, 300)),
		},
		{
			name: "resync of a room that had no stream", baseline: &protocol.StreamPosition{},
			stream: &fakeStream{epoch: "a", top: 3, lo: 1},
			steps:  []step{{resync: true}},
			want:   ids("a", 1, 3),
		},
		{
			name: "resync, the broker has no stream any more", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 2},
			stream: &fakeStream{},
			steps:  []step{{resync: true}, {pub: live("b", 1), stream: &fakeStream{epoch: "b", top: 1, lo: 1}}},
			want:   cat("gap a-2..? stream_lost", "b-1"),
		},
		{
			name: "fill error with a live event waiting", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 1},
			stream: &fakeStream{epoch: "a", top: 5, lo: 1, fail: 100},
			steps:  []step{{pub: live("a", 5)}, {pub: live("a", 6)}},
			want:   cat("gap a-1..a-4 unavailable", "a-5", "a-6"),
		},
		{
			name: "fill error once: retried", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 1},
			stream: &fakeStream{epoch: "a", top: 5, lo: 1, fail: 1},
			steps:  []step{{pub: live("a", 5)}},
			want:   ids("a", 2, 5),
		},
		{
			name: "resync error", baseline: &protocol.StreamPosition{Epoch: "a", Offset: 2},
			stream: &fakeStream{epoch: "a", top: 8, lo: 1, fail: 100},
			steps:  []step{{resync: true}, {pub: live("a", 9)}, {pub: live("a", 10)}},
			want:   cat("gap a-2..? unavailable", "a-9", "a-10"),
		},
		{
			name: "more than one fill delivers", baseline: &protocol.StreamPosition{Epoch: "a"}, max: 3,
			stream: &fakeStream{epoch: "a", top: 10, lo: 1},
			steps:  []step{{pub: live("a", 10)}},
			want:   cat(ids("a", 1, 3), "gap a-3..a-9 too_many", "a-10"),
		},
		{
			name: "resync of more than one fill delivers", baseline: &protocol.StreamPosition{Epoch: "a"}, max: 4,
			stream: &fakeStream{epoch: "a", top: 10, lo: 1},
			steps:  []step{{resync: true}, {pub: live("a", 11)}},
			want:   cat(ids("a", 1, 4), "gap a-4..a-10 too_many", "a-11"),
		},
		{
			name: "no baseline: first event taken as it comes", stream: &fakeStream{epoch: "a", top: 9, lo: 1},
			steps: []step{{resync: true}, {pub: live("a", 7)}, {pub: live("a", 8)}},
			want:  ids("a", 7, 8),
		},
		{
			name: "ephemeral events pass", baseline: &protocol.StreamPosition{Epoch: "a"},
			stream: &fakeStream{epoch: "a", top: 1, lo: 1},
			steps:  []step{{pub: &engine.Publication{Type: "user_joined", Ephemeral: true}}, {pub: live("a", 1)}},
			want:   cat("?", "a-1"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := &log{}
			st := tc.stream
			r := &Room{Name: "r", Handler: l, Batch: 2, Max: tc.max, RetryWait: 1,
				Read: func(ctx context.Context, q engine.HistoryQuery) (engine.HistoryResult, error) { return st.read(ctx, q) }}
			var tr Tracker
			if tc.baseline != nil {
				tr.Baseline(*tc.baseline)
			}
			ctx := context.Background()
			for _, s := range tc.steps {
				if s.stream != nil {
					st = s.stream
				}
				if s.resync {
					tr.Resync(ctx, r)
				} else {
					tr.Live(ctx, r, s.pub)
				}
			}
			if !reflect.DeepEqual(l.got, tc.want) {
				t.Errorf("handed over\n  %v\nwant\n  %v", l.got, tc.want)
			}
		})
	}
}

// TestTrackerBaselineAndMarker: a baseline does not override a delivered
// event, and a marker gives a room without a stream its epoch.
func TestTrackerBaselineAndMarker(t *testing.T) {
	var tr Tracker
	if tr.Known() {
		t.Fatal("a new tracker knows a position")
	}
	l := &log{}
	r := &Room{Name: "r", Handler: l, Read: (&fakeStream{epoch: "a", top: 1, lo: 1}).read}
	tr.Live(context.Background(), r, live("a", 1))
	tr.Baseline(pos("a", 0))
	if p, ok := tr.Position(); !ok || p != pos("a", 1) {
		t.Errorf("after an event and a late baseline: %v %v, want a-1", p, ok)
	}
	var tm Tracker
	tm.Baseline(protocol.StreamPosition{})
	tm.Marker(pos("b", 0))
	if p, _ := tm.Position(); p != pos("b", 0) {
		t.Errorf("after a marker: %v, want b-0", p)
	}
	tm.Marker(pos("c", 0))
	if p, _ := tm.Position(); p != pos("b", 0) {
		t.Errorf("a second marker moved the position to %v", p)
	}
}

// TestTrackerFillContextEnds: a fill whose reads fail because the engine
// is closing declares the gap instead of waiting out its retries.
func TestTrackerFillContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &log{}
	s := &fakeStream{epoch: "a", top: 5, lo: 1, fail: 100}
	r := &Room{Name: "r", Handler: l, Read: s.read, RetryWait: 1 << 40}
	var tr Tracker
	tr.Baseline(pos("a", 1))
	tr.Live(ctx, r, live("a", 5))
	want := []string{"gap a-1..a-4 unavailable", "a-5"}
	if !reflect.DeepEqual(l.got, want) || s.reads != 1 {
		t.Errorf("handed over %v after %d reads, want %v after 1", l.got, s.reads, want)
	}
}
