// Package broker holds what the broker engines (engine/redis, engine/nats)
// share: one room's delivery position on a node (duplicates dropped, gaps
// filled from history, and what cannot be filled declared to the handler),
// epoch and id generation, the presence order and option checks.
package broker

import (
	"context"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Reader reads a room's stream for a gap fill, as engine.Engine.History
// does but bounded only by what the broker holds (no size or TTL policy).
type Reader func(ctx context.Context, q engine.HistoryQuery) (engine.HistoryResult, error)

// Room is what a Tracker needs to deliver one room's events.
type Room struct {
	Name    string
	Handler engine.Handler
	Read    Reader
	// Batch is how many events one read fetches (default 500); Max caps
	// the events one fill delivers (default 100,000): a longer gap is
	// declared rather than replayed.
	Batch, Max int
	// Retries is how often a failed read is tried again before the gap is
	// declared (default 2), waiting RetryWait (default 100 ms), doubled
	// each time: right after a broker restart a read can meet a connection
	// from before it.
	Retries   int
	RetryWait time.Duration
	// Timeout bounds each read; 0 means only the caller's context does.
	Timeout time.Duration
}

const (
	defaultBatch     = 500
	defaultMax       = 100_000
	defaultRetries   = 2
	defaultRetryWait = 100 * time.Millisecond
	// noEpoch matches no epoch: a read since it learns the current one.
	noEpoch = "-"
)

// Tracker is one room's delivery position on a node: the last position
// handed to the handler (or the room's top when subscribed). It is not safe
// for concurrent use: an engine calls it from the room's one delivery
// goroutine, or under the room's lock.
//
// Its promise to the handler: every event of the stream after the position
// is either delivered once, in order, or covered by a HandleGap that comes
// before the events after it. Nothing is dropped without a Gap.
type Tracker struct {
	known bool
	// pos.Epoch "" with known set: the room had no stream, so every event
	// of the first epoch seen is new.
	pos protocol.StreamPosition
}

// Known reports whether the tracker has a position.
func (t *Tracker) Known() bool { return t.known }

// Position returns the tracker's position and whether it has one.
func (t *Tracker) Position() (protocol.StreamPosition, bool) { return t.pos, t.known }

// Baseline sets the room's top when the node subscribed (Epoch "": the
// room had no stream), unless an event came first.
func (t *Tracker) Baseline(pos protocol.StreamPosition) {
	if !t.known {
		t.known, t.pos = true, pos
	}
}

// Marker records that a room without a stream got its epoch (pos has
// offset 0): events of it are new from offset 1.
func (t *Tracker) Marker(pos protocol.StreamPosition) {
	if t.known && t.pos.Epoch == "" {
		t.pos = pos
	}
}

// Live delivers a live event, first filling (or declaring) any gap between
// the position and it; an event at or before the position is a duplicate
// and dropped. It returns how many events it delivered from history.
func (t *Tracker) Live(ctx context.Context, r *Room, pub *engine.Publication) int {
	if pub.Ephemeral {
		r.Handler.HandlePublication(r.Name, pub)
		return 0
	}
	p := pub.Position
	n := 0
	if t.known {
		switch {
		case p.Epoch == t.pos.Epoch && p.Offset <= t.pos.Offset:
			return 0 // already delivered, by a fill or live
		case p.Epoch != t.pos.Epoch || p.Offset > t.pos.Offset+1:
			n = t.fill(ctx, r, &p)
		}
		if p.Epoch == t.pos.Epoch && p.Offset <= t.pos.Offset {
			return n
		}
	}
	t.known, t.pos = true, p
	r.Handler.HandlePublication(r.Name, pub)
	return n
}

// Resync fills what was published after the position while the node was
// not receiving (after a reconnect). It returns how many events it
// delivered.
func (t *Tracker) Resync(ctx context.Context, r *Room) int {
	if !t.known {
		return 0 // the next event is taken as it comes
	}
	return t.fill(ctx, r, nil)
}

// fill delivers the events after the position up to (not including) stop,
// or all of them when stop is nil, declaring what it cannot deliver.
func (t *Tracker) fill(ctx context.Context, r *Room, stop *protocol.StreamPosition) int {
	batch, max := r.Batch, r.Max
	if batch <= 0 {
		batch = defaultBatch
	}
	if max <= 0 {
		max = defaultMax
	}
	since := t.pos
	if stop != nil && stop.Epoch != since.Epoch {
		since = protocol.StreamPosition{Epoch: stop.Epoch} // a new stream: from its start
	}
	if since.Epoch == "" {
		since.Epoch = noEpoch
	}
	n := 0
	// Each round delivers events or moves to a new epoch; the bound only
	// stops a broker that keeps changing under the fill.
	for rounds := 0; n < max && rounds < max/batch+8; rounds++ {
		if stop != nil && since.Epoch == stop.Epoch && since.Offset+1 >= stop.Offset {
			// Nothing to read between since and stop.
			t.declare(r, protocol.StreamPosition{Epoch: stop.Epoch, Offset: stop.Offset - 1}, engine.GapEvicted)
			return n
		}
		res, err := t.read(ctx, r, engine.HistoryQuery{Since: since, Limit: batch})
		if err != nil {
			t.unavailable(r, stop)
			return n
		}
		if !res.Complete {
			epoch := res.Latest.Epoch
			if stop != nil {
				epoch = stop.Epoch
			}
			if epoch == "" {
				// The broker has no stream for the room (it lost its data
				// and nothing was published since): what came after the
				// position is gone, and the next stream is new from 1.
				if t.pos.Epoch != "" {
					t.gap(r, protocol.StreamPosition{}, engine.GapStreamLost)
				}
				t.known, t.pos = true, protocol.StreamPosition{}
				return n
			}
			if epoch != since.Epoch {
				since = protocol.StreamPosition{Epoch: epoch}
				continue // the stream was replaced: read the new one from its start
			}
			// The events right after since were evicted: deliver what is
			// retained and declare the rest.
			ret, err := t.read(ctx, r, engine.HistoryQuery{})
			if err != nil {
				t.unavailable(r, stop)
				return n
			}
			first := since.Offset + 1
			if stop != nil {
				first = stop.Offset
			} else if ret.Latest.Epoch == epoch && ret.Latest.Offset >= first {
				first = ret.Latest.Offset + 1
			}
			keep := ret.Publications[:0:0]
			for _, pub := range ret.Publications {
				if pub.Position.Epoch == epoch && pub.Position.Offset > since.Offset && (stop == nil || pub.Position.Offset < stop.Offset) {
					keep = append(keep, pub)
				}
			}
			if len(keep) > 0 {
				first = keep[0].Position.Offset
			}
			t.declare(r, protocol.StreamPosition{Epoch: epoch, Offset: first - 1}, engine.GapEvicted)
			t.deliver(r, keep, stop, &n, max)
			if n >= max {
				break
			}
			if stop != nil || len(keep) == 0 {
				return n
			}
			since = t.pos
			continue
		}
		if since.Epoch != t.pos.Epoch {
			// A new stream, read from its start: the old one is gone.
			t.declare(r, protocol.StreamPosition{Epoch: since.Epoch}, engine.GapStreamLost)
		}
		if t.deliver(r, res.Publications, stop, &n, max) {
			if n >= max {
				break
			}
			return n // reached stop
		}
		if len(res.Publications) < batch {
			if stop != nil && t.pos.Epoch == stop.Epoch && t.pos.Offset+1 < stop.Offset {
				// History ends before stop (trimmed meanwhile).
				t.declare(r, protocol.StreamPosition{Epoch: stop.Epoch, Offset: stop.Offset - 1}, engine.GapEvicted)
			}
			return n
		}
		since = t.pos
	}
	// Too many to replay (or the broker kept changing): what remains up to
	// stop (or the top) is declared, and delivery goes on from there.
	if stop != nil {
		t.declare(r, protocol.StreamPosition{Epoch: stop.Epoch, Offset: stop.Offset - 1}, engine.GapTooMany)
	} else if res, err := t.read(ctx, r, engine.HistoryQuery{Limit: 1}); err == nil && res.Latest.Epoch != "" {
		t.declare(r, res.Latest, engine.GapTooMany)
	} else {
		t.unavailable(r, nil)
	}
	return n
}

// deliver hands pubs (oldest first) to the handler: those after the
// position and before stop, until n reaches max. It reports whether it
// stopped early, at stop or at max.
func (t *Tracker) deliver(r *Room, pubs []*engine.Publication, stop *protocol.StreamPosition, n *int, max int) bool {
	for _, pub := range pubs {
		p := pub.Position
		if stop != nil && (p.Epoch != stop.Epoch || p.Offset >= stop.Offset) {
			return true
		}
		if p.Epoch == t.pos.Epoch && p.Offset <= t.pos.Offset {
			continue
		}
		if *n >= max {
			return true
		}
		t.pos = p
		r.Handler.HandlePublication(r.Name, pub)
		*n++
	}
	return false
}

// declare moves the position to until, telling the handler about the
// events skipped on the way, if any: those after the position in its
// epoch when until is in another (a lost stream), and those up to until.
func (t *Tracker) declare(r *Room, until protocol.StreamPosition, reason string) {
	switch {
	case until.Epoch == t.pos.Epoch:
		if until.Offset <= t.pos.Offset {
			return // nothing skipped
		}
	case t.pos.Epoch == "":
		// The room had no stream: nothing of an older one was missed.
		if until.Offset == 0 {
			t.pos = until
			return
		}
	default:
		reason = engine.GapStreamLost
	}
	t.gap(r, until, reason)
	t.known, t.pos = true, until
}

// unavailable declares a gap that reading history could not measure: up
// to stop, or, without stop, up to whatever event comes next.
func (t *Tracker) unavailable(r *Room, stop *protocol.StreamPosition) {
	if stop != nil {
		t.declare(r, protocol.StreamPosition{Epoch: stop.Epoch, Offset: stop.Offset - 1}, engine.GapUnavailable)
		return
	}
	t.gap(r, protocol.StreamPosition{}, engine.GapUnavailable)
	t.known, t.pos = false, protocol.StreamPosition{}
}

func (t *Tracker) gap(r *Room, until protocol.StreamPosition, reason string) {
	r.Handler.HandleGap(r.Name, engine.Gap{After: t.pos, Until: until, Reason: reason})
}

// read is r.Read, tried again after a failure.
func (t *Tracker) read(ctx context.Context, r *Room, q engine.HistoryQuery) (engine.HistoryResult, error) {
	retries, wait := r.Retries, r.RetryWait
	if retries == 0 {
		retries = defaultRetries
	}
	if wait <= 0 {
		wait = defaultRetryWait
	}
	for i := 0; ; i++ {
		res, err := r.readOnce(ctx, q)
		if err == nil || i >= retries || ctx.Err() != nil {
			return res, err
		}
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return res, err
		}
		wait *= 2
	}
}

func (r *Room) readOnce(ctx context.Context, q engine.HistoryQuery) (engine.HistoryResult, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	return r.Read(ctx, q)
}
