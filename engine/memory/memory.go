// Package memory is the in-memory engine: room streams, history and
// idempotency keys kept in this process, delivery by direct call. It is the
// default engine of a single Switchboard node. Everything it holds is lost
// when the process stops; new streams get new epochs, so clients that
// reconnect after a restart are told their history is gone.
package memory

import (
	"context"
	"crypto/rand"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Options configure the memory engine. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often expired history, idempotency keys and idle
	// streams are dropped. Default 10 s.
	SweepInterval time.Duration
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
}

// numShards spreads rooms over independent locks so publishers to different
// rooms do not contend; 64 is plenty for the cores a node has.
const numShards = 64

// defaultIdempotencyTTL is the dedup window when PublishOptions leave it 0.
const defaultIdempotencyTTL = 2 * time.Minute

// Engine is the in-memory engine. Create it with New.
type Engine struct {
	opts     Options
	seed     maphash.Seed
	shards   [numShards]shard
	presence [numShards]presenceShard
	handler  atomic.Pointer[handlerBox]
	closed   atomic.Bool
	occMu    sync.Mutex
	occ      map[string]*occupancyRoom // room -> nodes with members
	occGen   uint64
}

type handlerBox struct{ h engine.Handler }

type shard struct {
	mu      sync.Mutex
	streams map[string]*stream
}

// stream is one room: its position, its retained events and whether this
// node wants its publications. Lock order: shard.mu, then stream.mu.
type stream struct {
	mu         sync.Mutex
	epoch      string
	offset     uint64
	ring       []*engine.Publication // retained events, oldest at head
	head, n    int
	subscribed bool
	dropped    bool // removed by the sweeper: callers holding it must look again
	idem       map[string]idemEntry
	policy     engine.HistoryPolicy // the last one Publish applied, for the sweeper
}

type idemEntry struct {
	pos     protocol.StreamPosition
	expires int64 // unix nanos
}

var _ engine.Engine = (*Engine)(nil)

// New returns a memory engine.
func New(opts Options) *Engine {
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{opts: opts, seed: maphash.MakeSeed()}
	for i := range e.shards {
		e.shards[i].streams = make(map[string]*stream)
		e.presence[i].rooms = make(map[string]*presenceRoom)
	}
	return e
}

// Run implements engine.Engine.
func (e *Engine) Run(ctx context.Context, h engine.Handler) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	e.handler.Store(&handlerBox{h})
	go e.sweepLoop(ctx)
	return nil
}

func (e *Engine) shardIndex(room string) uint64 { return maphash.String(e.seed, room) % numShards }

func (e *Engine) shardOf(room string) *shard { return &e.shards[e.shardIndex(room)] }

// stream returns the room's stream, creating it (with a fresh epoch) when
// create is set.
func (e *Engine) stream(room string, create bool) *stream {
	sh := e.shardOf(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.streams[room]
	if s == nil && create {
		s = &stream{epoch: newEpoch()}
		sh.streams[room] = s
	}
	return s
}

// lockedStream returns the room's stream with its lock held, creating it
// when create is set; nil if there is none. The sweeper may drop a stream
// between the map lookup and the lock: a caller that went on using it would
// subscribe or append to a stream no one else can reach, so look again.
func (e *Engine) lockedStream(room string, create bool) *stream {
	for {
		s := e.stream(room, create)
		if s == nil {
			return nil
		}
		s.mu.Lock()
		if !s.dropped {
			return s
		}
		s.mu.Unlock()
	}
}

// Publish implements engine.Engine.
func (e *Engine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	if e.closed.Load() {
		return engine.PublishResult{}, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return engine.PublishResult{}, err
	}
	now := e.opts.Now()
	pub.Time = now.UnixMilli()
	if pub.Ephemeral {
		s := e.lockedStream(room, false)
		if s == nil {
			return engine.PublishResult{}, nil
		}
		if s.subscribed {
			e.deliver(room, pub)
		}
		s.mu.Unlock()
		return engine.PublishResult{}, nil
	}

	s := e.lockedStream(room, true)
	defer s.mu.Unlock()
	if opts.IdempotencyKey != "" {
		if ent, ok := s.idem[opts.IdempotencyKey]; ok && ent.expires > now.UnixNano() {
			return engine.PublishResult{Position: ent.pos, Duplicate: true}, nil
		}
	}
	s.offset++
	pub.Position = protocol.StreamPosition{Offset: s.offset, Epoch: s.epoch}
	s.policy = opts.History
	if opts.History.Enabled() {
		s.appendLocked(pub, opts.History, now)
	} else if s.n > 0 { // history was turned off for this room: drop it
		s.ring, s.head, s.n = nil, 0, 0
	}
	if opts.IdempotencyKey != "" {
		ttl := opts.IdempotencyTTL
		if ttl <= 0 {
			ttl = defaultIdempotencyTTL
		}
		if s.idem == nil {
			s.idem = make(map[string]idemEntry)
		}
		s.idem[opts.IdempotencyKey] = idemEntry{pos: pub.Position, expires: now.Add(ttl).UnixNano()}
	}
	if s.subscribed {
		e.deliver(room, pub)
	}
	return engine.PublishResult{Position: pub.Position}, nil
}

func (e *Engine) deliver(room string, pub *engine.Publication) {
	if hb := e.handler.Load(); hb != nil {
		hb.h.HandlePublication(room, pub)
	}
}

// appendLocked keeps pub in the ring, growing it up to policy.Size.
func (s *stream) appendLocked(pub *engine.Publication, policy engine.HistoryPolicy, now time.Time) {
	if len(s.ring) != policy.Size { // policy changed or first event: resize
		s.resizeLocked(policy.Size)
	}
	if s.n == len(s.ring) { // full: overwrite the oldest
		s.ring[s.head] = pub
		s.head = (s.head + 1) % len(s.ring)
	} else {
		s.ring[(s.head+s.n)%len(s.ring)] = pub
		s.n++
	}
	s.expireLocked(policy, now)
}

func (s *stream) resizeLocked(size int) {
	kept := s.snapshotLocked()
	if len(kept) > size {
		kept = kept[len(kept)-size:]
	}
	ring := make([]*engine.Publication, size)
	copy(ring, kept)
	s.ring, s.head, s.n = ring, 0, len(kept)
}

// snapshotLocked returns the retained events, oldest first.
func (s *stream) snapshotLocked() []*engine.Publication {
	out := make([]*engine.Publication, 0, s.n)
	for i := 0; i < s.n; i++ {
		out = append(out, s.ring[(s.head+i)%len(s.ring)])
	}
	return out
}

// expireLocked drops events older than the policy's TTL.
func (s *stream) expireLocked(policy engine.HistoryPolicy, now time.Time) {
	if policy.TTL <= 0 {
		return
	}
	cutoff := now.Add(-policy.TTL).UnixMilli()
	for s.n > 0 && s.ring[s.head].Time < cutoff {
		s.ring[s.head] = nil
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
}

// History implements engine.Engine.
func (e *Engine) History(ctx context.Context, room string, q engine.HistoryQuery, policy engine.HistoryPolicy) (engine.HistoryResult, error) {
	if e.closed.Load() {
		return engine.HistoryResult{}, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return engine.HistoryResult{}, err
	}
	// Create the stream so its epoch is fixed from now on: a subscriber told
	// "epoch E, offset 0" can later recover from that position.
	s := e.lockedStream(room, true)
	defer s.mu.Unlock()
	if s.n > 0 && len(s.ring) > 0 {
		s.expireLocked(policy, e.opts.Now())
	}
	res := engine.HistoryResult{Latest: protocol.StreamPosition{Offset: s.offset, Epoch: s.epoch}}
	if q.Since == (protocol.StreamPosition{}) {
		from := 0
		if q.Limit > 0 && s.n > q.Limit {
			from = s.n - q.Limit
		}
		res.Publications, res.Complete = s.rangeLocked(from, s.n-from), true
		return res, nil
	}
	if q.Since.Epoch != s.epoch || q.Since.Offset > s.offset {
		return res, nil // another stream's position: nothing can be vouched for
	}
	if q.Since.Offset == s.offset {
		res.Complete = true
		return res, nil
	}
	// The retained events have consecutive offsets (a publish without
	// history clears the ring), so Since+1 is found by arithmetic; it must
	// still be retained.
	if s.n == 0 {
		return res, nil
	}
	first := s.ring[s.head].Position.Offset
	if q.Since.Offset+1 < first {
		return res, nil
	}
	from := int(q.Since.Offset + 1 - first)
	count := s.n - from
	if q.Limit > 0 && count > q.Limit {
		count = q.Limit
	}
	res.Publications, res.Complete = s.rangeLocked(from, count), true
	return res, nil
}

// rangeLocked copies count retained events starting at index from (0 is
// the oldest), without copying the rest of the ring.
func (s *stream) rangeLocked(from, count int) []*engine.Publication {
	out := make([]*engine.Publication, count)
	for i := range out {
		out[i] = s.ring[(s.head+from+i)%len(s.ring)]
	}
	return out
}

// Subscribe implements engine.Engine.
func (e *Engine) Subscribe(ctx context.Context, room string) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	s := e.lockedStream(room, true)
	s.subscribed = true
	s.mu.Unlock()
	return nil
}

// Unsubscribe implements engine.Engine.
func (e *Engine) Unsubscribe(ctx context.Context, room string) error {
	if s := e.lockedStream(room, false); s != nil {
		s.subscribed = false
		s.mu.Unlock()
	}
	return nil
}

// PublishControl implements engine.Engine: the one node is every node.
func (e *Engine) PublishControl(ctx context.Context, data []byte) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	if hb := e.handler.Load(); hb != nil {
		hb.h.HandleControl(data)
	}
	return nil
}

// Ready implements engine.Engine.
// Local reports true: the memory engine does no I/O (engine.Local).
func (e *Engine) Local() bool { return true }

func (e *Engine) Ready(ctx context.Context) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	return nil
}

// Close implements engine.Engine.
func (e *Engine) Close() error {
	e.closed.Store(true)
	return nil
}

func (e *Engine) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if e.closed.Load() {
				return
			}
			e.sweep()
		}
	}
}

// sweep drops expired idempotency keys and streams nobody needs: not
// subscribed, no retained events, no live keys. A dropped stream that is
// published to again starts a new epoch, which is exactly what a client
// holding the old position must be told.
func (e *Engine) sweep() {
	now := e.opts.Now().UnixNano()
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for room, s := range sh.streams {
			s.mu.Lock()
			for k, ent := range s.idem {
				if ent.expires <= now {
					delete(s.idem, k)
				}
			}
			if s.n > 0 {
				s.expireLocked(s.policy, e.opts.Now())
			}
			if !s.subscribed && s.n == 0 && len(s.idem) == 0 {
				s.dropped = true
				delete(sh.streams, room)
			}
			s.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// newEpoch returns 8 random base-36 characters.
func newEpoch() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
