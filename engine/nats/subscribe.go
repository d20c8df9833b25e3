package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// roomSub is one subscribed room. nats.go runs each subscription's
// callback on a goroutine of its own, one message at a time, in the order
// the server sent them: that gives per-room order. mu makes delivery and
// Unsubscribe exclusive, so nothing is delivered after Unsubscribe
// returned, and a later subscription to the room cannot overlap an
// earlier one's last delivery.
type roomSub struct {
	room string

	mu  sync.Mutex
	sub *natsgo.Subscription // nil once unsubscribed
	// The delivery position (JetStream mode only): drops what a gap fill
	// already delivered, fills or declares gaps (messages dropped or missed
	// while disconnected).
	tr broker.Tracker
}

// Subscribe implements engine.Engine. It returns after the server
// confirmed the subscription, so every event published after it returns
// reaches this node.
func (e *Engine) Subscribe(ctx context.Context, room string) error {
	b, err := e.box()
	if err != nil {
		return err
	}
	e.roomsMu.Lock()
	if e.rooms[room] != nil {
		e.roomsMu.Unlock()
		return nil
	}
	rs := &roomSub{room: room}
	rs.mu.Lock() // until rs.sub is set: the callback checks it
	e.rooms[room] = rs
	e.roomsMu.Unlock()

	sub, err := b.nc.Subscribe(e.roomSubject(room), func(m *natsgo.Msg) { e.onRoomMsg(rs, m) })
	if err == nil {
		rs.sub = sub
		// A busy room must not lose messages to nats.go's default pending
		// limits before its goroutine catches up; gaps are filled anyway.
		_ = sub.SetPendingLimits(-1, 256<<20)
	}
	rs.mu.Unlock()
	if err == nil {
		fctx, cancel := e.opCtx(ctx)
		err = b.nc.FlushWithContext(fctx)
		cancel()
	}
	if err != nil {
		e.dropRoom(rs)
		return fmt.Errorf("nats: subscribe to %q: %w", room, err)
	}
	if b.js != nil {
		e.baseline(ctx, b, rs)
	}
	return nil
}

// baseline records the room's top right after the subscription was
// confirmed: a later gap is measured from it. Best effort: without it the
// first event received becomes the baseline.
func (e *Engine) baseline(ctx context.Context, b *connBox, rs *roomSub) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	var pos protocol.StreamPosition
	m, err := e.lastMsg(ctx, b, b.hist, e.histSubject(rs.room))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return
	default:
		rec, err := decodeRecord(m.Data)
		if err != nil {
			return
		}
		pos = rec.pub.Position
	}
	rs.mu.Lock()
	rs.tr.Baseline(pos)
	rs.mu.Unlock()
}

// dropRoom ends rs: removes it from the rooms and unsubscribes it.
func (e *Engine) dropRoom(rs *roomSub) error {
	e.roomsMu.Lock()
	if e.rooms[rs.room] == rs {
		delete(e.rooms, rs.room)
	}
	e.roomsMu.Unlock()
	rs.mu.Lock()
	sub := rs.sub
	rs.sub = nil
	rs.mu.Unlock()
	if sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) && !errors.Is(err, natsgo.ErrBadSubscription) {
		return err
	}
	return nil
}

// Unsubscribe implements engine.Engine. Nothing of room is delivered after
// it returns.
func (e *Engine) Unsubscribe(ctx context.Context, room string) error {
	if _, err := e.box(); err != nil {
		return err
	}
	e.roomsMu.Lock()
	rs := e.rooms[room]
	e.roomsMu.Unlock()
	if rs == nil {
		return nil
	}
	if err := e.dropRoom(rs); err != nil {
		return fmt.Errorf("nats: unsubscribe from %q: %w", room, err)
	}
	return nil
}

// onRoomMsg runs on rs's subscription goroutine.
func (e *Engine) onRoomMsg(rs *roomSub, m *natsgo.Msg) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.sub != m.Sub || e.ctx.Err() != nil {
		return // unsubscribed, or stopped
	}
	rec, err := decodeRecord(m.Data)
	if err != nil {
		return // not ours (another writer on the subject): nothing to deliver
	}
	if rec.marker {
		// The room got its epoch: events of it are new from offset 1.
		rs.tr.Marker(rec.pub.Position)
		return
	}
	e.deliver(rs, rec.pub)
}

// deliver hands a live event to the handler, first filling from history
// (or declaring) any gap between the last delivered event and this one.
// rs.mu is held.
func (e *Engine) deliver(rs *roomSub, pub *engine.Publication) {
	if pub.Ephemeral || e.opts.CoreOnly {
		e.handler.HandlePublication(rs.room, pub)
		return
	}
	rs.tr.Live(e.ctx, e.fillRoom(rs), pub)
}

// fillRoom is what rs's tracker needs for a fill: the room's stream read
// without a size or TTL bound. A room the server lost gets its new epoch
// from the read (create), so a declared gap names where the new stream
// starts.
func (e *Engine) fillRoom(rs *roomSub) *broker.Room {
	return &broker.Room{Name: rs.room, Handler: e.handler, Timeout: e.opts.OpTimeout,
		Read: func(ctx context.Context, q engine.HistoryQuery) (engine.HistoryResult, error) {
			b := e.conn.Load()
			if b == nil || b.js == nil {
				return engine.HistoryResult{}, errors.New("nats: not connected")
			}
			return e.history(ctx, b, rs.room, q, -1, 0, true)
		}}
}

// resyncAll fills, for every subscribed room, what was published while the
// connection was down (core subscriptions miss it).
func (e *Engine) resyncAll() {
	if e.opts.CoreOnly {
		return
	}
	e.roomsMu.Lock()
	all := make([]*roomSub, 0, len(e.rooms))
	for _, rs := range e.rooms {
		all = append(all, rs)
	}
	e.roomsMu.Unlock()
	sem := make(chan struct{}, resyncConcurrency)
	var wg sync.WaitGroup
	for _, rs := range all {
		select {
		case sem <- struct{}{}:
		case <-e.ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if rs.sub == nil || e.ctx.Err() != nil {
				return
			}
			rs.tr.Resync(e.ctx, e.fillRoom(rs))
		}()
	}
	wg.Wait()
}
