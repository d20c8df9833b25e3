package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// subscriber holds this node's pub/sub interest in Redis: the control
// channel from Run on, and each room between Subscribe and Unsubscribe.
// connSub uses one connection (standalone and Sentinel); clusterSub uses
// sharded pub/sub on whichever node holds each room's slot.
type subscriber interface {
	// run keeps the subscriptions alive until ctx ends, reconnecting and
	// resubscribing after failures; it closes ready once first connected.
	run(ctx context.Context, ready chan<- struct{})
	// subscribe returns once Redis confirmed the subscription. On failure
	// it removes rs from the engine's rooms if created is set.
	subscribe(ctx context.Context, rs *roomSub, created bool) error
	// unsubscribe ends the subscription; rs is already inactive.
	unsubscribe(ctx context.Context, rs *roomSub) error
	// status is nil while connected, else why not.
	status() error
}

// roomSub is one subscribed room. A new one is made per Subscribe after an
// Unsubscribe, so messages queued for an old subscription are recognised
// (inactive) and dropped.
type roomSub struct {
	room, channel string
	worker        int
	active        atomic.Bool

	// Delivery position, touched only by the room's worker goroutine:
	// drops duplicates and fills (or declares) gaps after a reconnect.
	tr broker.Tracker

	// resyncPending: a resync item is on its way to the worker.
	resyncPending atomic.Bool

	// Cluster mode: the room's receive loop runs until ctx ends (cancel);
	// done is closed when it has returned. Set before rs is shared.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// item is one unit of work for a delivery worker.
type item struct {
	kind itemKind
	rs   *roomSub
	msg  string
	pos  protocol.StreamPosition // itemBaseline: Epoch "" if the room had no stream
}

type itemKind uint8

const (
	itemPub      itemKind = iota // msg is a payload from the room channel
	itemBaseline                 // pos/state: the room's top when subscribed
	itemResync                   // the connection was re-established: fill the gap
)

func (e *Engine) workerOf(room string) int {
	return int(maphash.String(e.seed, room) % uint64(len(e.workers)))
}

// enqueue hands it to worker w; it waits while the worker's queue is full
// (backpressure on the pub/sub reader) unless the engine is closing.
func (e *Engine) enqueue(w int, it item) {
	select {
	case e.workers[w] <- it:
	case <-e.ctx.Done():
	}
}

// onMessage runs on the pub/sub connection's reader goroutine, in the
// order Redis sent the messages; routing each room to one worker keeps
// that order per room.
func (e *Engine) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == e.controlChan {
		e.onControl(m.Message)
		return
	}
	e.roomsMu.RLock()
	rs := e.rooms[m.Channel]
	e.roomsMu.RUnlock()
	if rs == nil {
		return // unsubscribed meanwhile
	}
	e.enqueue(rs.worker, item{kind: itemPub, rs: rs, msg: m.Message})
}

// onControl queues a control command for the control worker, which does
// no Redis I/O, so waiting for it cannot stall a connection it needs.
func (e *Engine) onControl(msg string) {
	select {
	case e.control <- msg:
	case <-e.ctx.Done():
	}
}

func (e *Engine) controlWorker() {
	defer e.wg.Done()
	for {
		select {
		case msg := <-e.control:
			e.handler.HandleControl([]byte(msg))
		case <-e.ctx.Done():
			return
		}
	}
}

func (e *Engine) worker(ch <-chan item) {
	defer e.wg.Done()
	for {
		select {
		case it := <-ch:
			e.handle(it)
		case <-e.ctx.Done():
			return
		}
	}
}

func (e *Engine) handle(it item) {
	switch it.kind {
	case itemPub:
		if !it.rs.active.Load() {
			return
		}
		pub, err := decodePublication(it.msg)
		if err != nil {
			return // not ours (another writer on the channel); nothing to deliver
		}
		e.deliver(it.rs, pub)
	case itemBaseline:
		it.rs.tr.Baseline(it.pos)
	case itemResync:
		it.rs.resyncPending.Store(false)
		if !it.rs.active.Load() {
			return
		}
		e.filled.Add(uint64(it.rs.tr.Resync(e.ctx, e.fillRoom(it.rs))))
	}
}

// deliver hands a live event to the handler, first filling from history
// (or declaring) any gap between the last delivered event and this one.
func (e *Engine) deliver(rs *roomSub, pub *engine.Publication) {
	e.filled.Add(uint64(rs.tr.Live(e.ctx, e.fillRoom(rs), pub)))
}

// fillRoom is what rs's tracker needs for a fill: history read without a
// size or TTL bound.
func (e *Engine) fillRoom(rs *roomSub) *broker.Room {
	return &broker.Room{Name: rs.room, Handler: e.handler, Timeout: opTimeout,
		Read: func(ctx context.Context, q engine.HistoryQuery) (engine.HistoryResult, error) {
			return e.history(ctx, rs.room, q, -1, 0)
		}}
}

// Subscribe implements engine.Engine. It returns after Redis confirmed
// the subscription, so every event published after it returns reaches
// this node.
func (e *Engine) Subscribe(ctx context.Context, room string) error {
	if _, err := e.redis(); err != nil {
		return err
	}
	ch := e.channel(room)
	e.roomsMu.Lock()
	rs := e.rooms[ch]
	created := rs == nil
	if created {
		rs = &roomSub{room: room, channel: ch, worker: e.workerOf(room)}
		rs.active.Store(true)
		if e.cluster {
			rs.ctx, rs.cancel = context.WithCancel(e.ctx)
			rs.done = make(chan struct{})
		}
		e.rooms[ch] = rs
	}
	e.roomsMu.Unlock()
	if err := e.sub.subscribe(ctx, rs, created); err != nil {
		return fmt.Errorf("redis: subscribe to %q: %w", room, err)
	}
	if created {
		e.baseline(ctx, rs)
	}
	return nil
}

// baseline tells rs's worker the room's top position right after the
// subscription was confirmed: events up to it were published before, and
// a later gap (after a reconnect) is measured from it. Best effort: if
// the read fails, the first event received becomes the baseline.
func (e *Engine) baseline(ctx context.Context, rs *roomSub) {
	c, err := e.redis()
	if err != nil {
		return
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(e.key(rs.room, ":m")).Field("e", "o").Build()).ToArray()
	if err != nil || len(vals) != 2 {
		return
	}
	it := item{kind: itemBaseline, rs: rs}
	if epoch, err := vals[0].ToString(); err == nil && epoch != "" {
		off, _ := vals[1].AsUint64() // a missing offset is 0
		it.pos = protocol.StreamPosition{Offset: off, Epoch: epoch}
	}
	e.enqueue(rs.worker, it)
}

// dropRoom removes rs from the rooms if it is still there.
func (e *Engine) dropRoom(rs *roomSub) {
	e.roomsMu.Lock()
	if e.rooms[rs.channel] == rs {
		delete(e.rooms, rs.channel)
	}
	e.roomsMu.Unlock()
	rs.active.Store(false)
}

// Unsubscribe implements engine.Engine. Nothing of room is delivered after
// it returns.
func (e *Engine) Unsubscribe(ctx context.Context, room string) error {
	if _, err := e.redis(); err != nil {
		return err
	}
	ch := e.channel(room)
	e.roomsMu.Lock()
	rs := e.rooms[ch]
	delete(e.rooms, ch)
	e.roomsMu.Unlock()
	if rs == nil {
		return nil
	}
	rs.active.Store(false)
	if err := e.sub.unsubscribe(ctx, rs); err != nil {
		return fmt.Errorf("redis: unsubscribe from %q: %w", room, err)
	}
	return nil
}

// resyncAll asks every subscribed room's worker to fill what was missed
// while the connection was down.
func (e *Engine) resyncAll() {
	e.roomsMu.RLock()
	all := make([]*roomSub, 0, len(e.rooms))
	for _, rs := range e.rooms {
		all = append(all, rs)
	}
	e.roomsMu.RUnlock()
	for _, rs := range all {
		if rs.resyncPending.CompareAndSwap(false, true) {
			e.enqueue(rs.worker, item{kind: itemResync, rs: rs})
		}
	}
}

// connSub keeps every subscription on one dedicated pub/sub connection.
// Subscribe and Unsubscribe hold mu shared while they talk to Redis; a
// reconnect holds it exclusively while it resubscribes, so a room is never
// left out of (or wrongly added to) a new connection.
type connSub struct {
	e *Engine

	mu   sync.RWMutex
	conn *psConn // nil while down
	err  error   // why conn is nil
}

type psConn struct {
	dc      rueidis.DedicatedClient
	release func()
	done    <-chan error
}

var errNotConnected = errors.New("not connected yet")

func newConnSub(e *Engine) *connSub { return &connSub{e: e, err: errNotConnected} }

func (s *connSub) status() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.conn != nil {
		return nil
	}
	return s.err
}

func (s *connSub) run(ctx context.Context, ready chan<- struct{}) {
	var b backoff
	first := true
	for ctx.Err() == nil {
		conn, err := s.connect(ctx)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			broker.SleepCtx(ctx, b.next())
			continue
		}
		b.reset()
		if first {
			close(ready)
			first = false
		} else {
			s.e.resyncAll()
		}
		select {
		case err = <-conn.done:
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		s.mu.Lock()
		s.conn, s.err = nil, fmt.Errorf("connection lost: %w", err)
		s.mu.Unlock()
		conn.release()
		if ctx.Err() == nil {
			broker.SleepCtx(ctx, b.next())
		}
	}
}

// connect opens a pub/sub connection and subscribes to the control channel
// and every room.
func (s *connSub) connect(ctx context.Context) (*psConn, error) {
	c, err := s.e.redis()
	if err != nil {
		return nil, err
	}
	dc, release := c.Dedicate()
	done := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.e.onMessage})

	s.mu.Lock()
	defer s.mu.Unlock()
	s.e.roomsMu.RLock()
	chans := make([]string, 0, len(s.e.rooms)+1)
	chans = append(chans, s.e.controlChan)
	for ch := range s.e.rooms {
		chans = append(chans, ch)
	}
	s.e.roomsMu.RUnlock()
	cmds := make(rueidis.Commands, 0, len(chans)/subscribeBatch+1)
	for i := 0; i < len(chans); i += subscribeBatch {
		cmds = append(cmds, dc.B().Subscribe().Channel(chans[i:min(i+subscribeBatch, len(chans))]...).Build())
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, r := range dc.DoMulti(cctx, cmds...) {
		if err := r.Error(); err != nil {
			release()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	conn := &psConn{dc: dc, release: release, done: done}
	s.conn, s.err = conn, nil
	return conn, nil
}

func (s *connSub) subscribe(ctx context.Context, rs *roomSub, created bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var err error
	if s.conn == nil {
		err = fmt.Errorf("pub/sub connection down: %w", s.err)
	} else {
		err = s.conn.dc.Do(ctx, s.conn.dc.B().Subscribe().Channel(rs.channel).Build()).Error()
	}
	if err != nil && created {
		// Still under mu: a reconnect cannot have picked the room up.
		s.e.dropRoom(rs)
		if s.conn != nil {
			// The SUBSCRIBE may have reached Redis (a cancelled ctx): undo
			// it, or this node would receive the room until the next
			// reconnect. Its messages are dropped meanwhile (no roomSub).
			uctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			s.conn.dc.Do(uctx, s.conn.dc.B().Unsubscribe().Channel(rs.channel).Build())
			cancel()
		}
	}
	return err
}

func (s *connSub) unsubscribe(ctx context.Context, rs *roomSub) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.conn == nil {
		return nil // the next connection will not subscribe it
	}
	return s.conn.dc.Do(ctx, s.conn.dc.B().Unsubscribe().Channel(rs.channel).Build()).Error()
}
