package nats

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// numShards spreads rooms' publish states over independent locks.
const numShards = 64

type stateShard struct {
	mu sync.Mutex
	m  map[string]*pubState
}

// pubState is this node's view of a room's top. Its lock serializes this
// node's publishers to the room: they would only collide at the server.
// With JetStream it is a cache, checked by every append (a stale one costs
// a reread); in core-only mode it is the room's stream on this node.
type pubState struct {
	mu      sync.Mutex
	dropped bool         // removed by the sweeper: look again
	used    atomic.Int64 // unix nanos of last use, for the sweeper

	gen    uint64 // Engine.stateGen when loaded; another value means stale
	known  bool
	epoch  string // "" when the room has no messages
	offset uint64
	seq    uint64 // stream sequence of the message holding offset

	idem map[string]localIdem // core-only mode
}

type localIdem struct {
	pos     protocol.StreamPosition
	expires int64 // unix nanos
}

func (e *Engine) shard(room string) *stateShard {
	return &e.states[maphash.String(e.seed, room)%numShards]
}

// lockedState returns room's state, locked.
func (e *Engine) lockedState(room string) *pubState {
	sh := e.shard(room)
	for {
		sh.mu.Lock()
		st := sh.m[room]
		if st == nil {
			st = &pubState{}
			sh.m[room] = st
		}
		sh.mu.Unlock()
		st.mu.Lock()
		if !st.dropped {
			st.used.Store(time.Now().UnixNano())
			return st
		}
		st.mu.Unlock()
	}
}

// fresh reports whether st's cached top may be used.
func (e *Engine) fresh(st *pubState) bool {
	return st.known && st.gen == e.stateGen.Load()
}

func (e *Engine) setTop(st *pubState, epoch string, offset, seq uint64) {
	st.known, st.gen = true, e.stateGen.Load()
	st.epoch, st.offset, st.seq = epoch, offset, seq
}

// invalidateStates makes every cached top stale (after a reconnect: the
// server may have lost or replaced its data).
func (e *Engine) invalidateStates() { e.stateGen.Add(1) }

// sweepStates drops states unused for stateIdle that hold nothing that
// must live on (core-only idempotency keys that have not expired).
func (e *Engine) sweepStates(now time.Time) {
	cutoff := now.Add(-stateIdle).UnixNano()
	for i := range e.states {
		sh := &e.states[i]
		sh.mu.Lock()
		for room, st := range sh.m {
			if st.used.Load() > cutoff || !st.mu.TryLock() {
				continue
			}
			for k, ent := range st.idem {
				if ent.expires <= now.UnixNano() {
					delete(st.idem, k)
				}
			}
			if len(st.idem) == 0 {
				st.dropped = true
				delete(sh.m, room)
			}
			st.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// Publish implements engine.Engine. With JetStream it returns after the
// event is stored; an error means it may or may not have been (a retry
// with the same idempotency key is safe).
func (e *Engine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	b, err := e.box()
	if err != nil {
		return engine.PublishResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return engine.PublishResult{}, err
	}
	if pub.Ephemeral {
		pub.Time = time.Now().UnixMilli()
		pub.Position = protocol.StreamPosition{}
		if err := b.nc.Publish(e.roomSubject(room), encodePublication(pub, protocol.StreamPosition{}, "")); err != nil {
			return engine.PublishResult{}, fmt.Errorf("nats: publish ephemeral to %q: %w", room, err)
		}
		return engine.PublishResult{}, nil
	}
	ttl := opts.IdempotencyTTL
	if ttl <= 0 {
		ttl = defaultIdempotencyTTL
	}
	if b.js == nil {
		return e.publishCore(b, room, pub, opts.IdempotencyKey, ttl)
	}
	return e.publishJS(ctx, b, room, pub, opts, ttl)
}

// publishCore numbers the event in this node's stream of the room and
// publishes it with core NATS.
func (e *Engine) publishCore(b *connBox, room string, pub *engine.Publication, key string, ttl time.Duration) (engine.PublishResult, error) {
	st := e.lockedState(room)
	defer st.mu.Unlock()
	now := time.Now()
	if key != "" {
		if ent, ok := st.idem[key]; ok && ent.expires > now.UnixNano() {
			return engine.PublishResult{Position: ent.pos, Duplicate: true}, nil
		}
	}
	if st.epoch == "" {
		st.epoch = e.newEpoch()
	}
	pos := protocol.StreamPosition{Offset: st.offset + 1, Epoch: st.epoch}
	pub.Time = now.UnixMilli()
	if err := b.nc.Publish(e.roomSubject(room), encodePublication(pub, pos, "")); err != nil {
		return engine.PublishResult{}, fmt.Errorf("nats: publish to %q: %w", room, err)
	}
	st.offset++
	pub.Position = pos
	if key != "" {
		if st.idem == nil {
			st.idem = make(map[string]localIdem)
		}
		st.idem[key] = localIdem{pos: pos, expires: now.Add(ttl).UnixNano()}
	}
	return engine.PublishResult{Position: pos}, nil
}

func (e *Engine) publishJS(ctx context.Context, b *connBox, room string, pub *engine.Publication, opts engine.PublishOptions, ttl time.Duration) (engine.PublishResult, error) {
	st := e.lockedState(room)
	defer st.mu.Unlock()
	hsubj := e.histSubject(room)
	var cl *claim
	if opts.IdempotencyKey != "" {
		dup, c, err := e.claimKey(ctx, b, room, hsubj, st, opts.IdempotencyKey, ttl)
		if err != nil {
			return engine.PublishResult{}, err
		}
		if dup != nil {
			return *dup, nil
		}
		cl = c
	}
	actx := ctx
	if cl != nil {
		// Stay well inside the claim's lease, after which another node may
		// decide this publish failed.
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, cl.at.Add(e.claimLease()/2))
		defer cancel()
	}
	pos, maybeStored, err := e.appendEvent(actx, b, hsubj, st, pub, cl)
	if cl != nil {
		e.finishClaim(ctx, b, cl, pos, err, maybeStored)
	}
	if err != nil {
		return engine.PublishResult{}, fmt.Errorf("nats: publish to %q: %w", room, err)
	}
	if k := opts.History.Size; pos.Offset > uint64(k) && pos.Offset%trimStep(k) == 0 {
		e.trim(b, hsubj, k)
	}
	return engine.PublishResult{Position: pos}, nil
}

// trimStep is how many events a room grows by between trims of its
// messages to the history size: trims cost a request, and History filters
// by size anyway.
func trimStep(size int) uint64 { return uint64(max(32, size/4)) }

// trim drops room's messages beyond the newest max(size, 1): the newest
// one always stays, it holds the room's position.
func (e *Engine) trim(b *connBox, hsubj string, size int) {
	keep := uint64(max(size, 1))
	e.chore(func(ctx context.Context) {
		_ = b.hist.Purge(ctx, jetstream.WithPurgeSubject(hsubj), jetstream.WithPurgeKeep(keep))
	})
}

// loadTop reads room's top into st.
func (e *Engine) loadTop(ctx context.Context, b *connBox, hsubj string, st *pubState) error {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	m, err := e.lastMsg(ctx, b, b.hist, hsubj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		e.setTop(st, "", 0, 0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the room's top: %w", err)
	}
	rec, err := decodeRecord(m.Data)
	if err != nil {
		return fmt.Errorf("room's top (sequence %d): %w", m.Sequence, err)
	}
	e.setTop(st, rec.pub.Position.Epoch, rec.pub.Position.Offset, m.Sequence)
	return nil
}

// lastMsg reads subject's last message in s (a direct get), creating the
// streams again if they are gone (a NATS server that lost its data): after
// each reconnect before reading, since a direct get from a missing stream
// is never answered, and when the read says so.
func (e *Engine) lastMsg(ctx context.Context, b *connBox, s jetstream.Stream, subject string) (*jetstream.RawStreamMsg, error) {
	if err := e.streamsAfterReconnect(ctx, b); err != nil {
		return nil, err
	}
	m, err := directLast(ctx, s, subject)
	if err != nil && streamMissing(err) {
		if _, _, _, err2 := e.ensureStreams(ctx, b.js); err2 == nil {
			m, err = s.GetLastMsgForSubject(ctx, subject)
		}
	}
	return m, err
}

// directGetWait bounds a direct get before the stream itself is checked.
const directGetWait = 2 * time.Second

// directLast reads subject's last message with a direct get. A direct get
// from a stream that does not exist is never answered (not even "no
// responders"), so one that takes longer than directGetWait asks for the
// stream's info, which a missing stream answers at once with "not found":
// a stream deleted while the engine stayed connected is then recreated by
// the caller instead of every read waiting out its whole deadline.
func directLast(ctx context.Context, s jetstream.Stream, subject string) (*jetstream.RawStreamMsg, error) {
	wait, cancel := context.WithTimeout(ctx, directGetWait)
	m, err := s.GetLastMsgForSubject(wait, subject)
	cancel()
	if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return m, err
	}
	if _, ierr := s.Info(ctx); ierr != nil {
		if streamMissing(ierr) {
			return nil, ierr
		}
		return nil, fmt.Errorf("nats: last message of %s: %w (stream info: %v)", subject, err, ierr)
	}
	return s.GetLastMsgForSubject(ctx, subject) // slow, not missing: wait the rest
}

// streamMissing reports an error that means the stream does not exist.
func streamMissing(err error) bool {
	return apiErrorCode(err) == jetstream.JSErrCodeStreamNotFound ||
		errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, natsgo.ErrNoResponders)
}

// appendEvent stores pub as the room's next event: offset top+1, accepted
// by JetStream only if the room's top is still the message st knows of.
// maybeStored is false when the error proves nothing was stored.
func (e *Engine) appendEvent(ctx context.Context, b *connBox, hsubj string, st *pubState, pub *engine.Publication, cl *claim) (pos protocol.StreamPosition, maybeStored bool, err error) {
	pub.Time = time.Now().UnixMilli()
	claimID := ""
	if cl != nil {
		claimID = cl.id
	}
	recreated := false
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return pos, false, err
		}
		if !e.fresh(st) {
			if err := e.loadTop(ctx, b, hsubj, st); err != nil {
				return pos, false, err
			}
		}
		epoch := st.epoch
		if epoch == "" {
			epoch = e.newEpoch()
		}
		pos = protocol.StreamPosition{Offset: st.offset + 1, Epoch: epoch}
		m := &natsgo.Msg{Subject: hsubj, Data: encodePublication(pub, pos, claimID), Header: natsgo.Header{}}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(st.seq, 10))
		cctx, cancel := e.opCtx(ctx)
		ack, err := b.js.PublishMsg(cctx, m)
		cancel()
		switch {
		case err == nil:
			e.setTop(st, epoch, pos.Offset, ack.Sequence)
			pub.Position = pos
			return pos, true, nil
		case isWrongLastSeq(err):
			st.known = false // another publisher appended first: reread
		case !recreated && streamMissing(err):
			recreated = true
			st.known = false
			if _, _, _, err := e.ensureStreams(ctx, b.js); err != nil {
				return pos, false, err
			}
		default:
			st.known = false
			// JetStream answered with an error, or nats.go refused to
			// send: nothing was stored. Otherwise (timeout, connection
			// lost) it may have been.
			return pos, apiErrorCode(err) == 0 && !notSent(err), err
		}
	}
	return pos, false, fmt.Errorf("gave up after %d attempts: other publishers kept appending first", maxCASAttempts)
}

// notSent reports errors with which nats.go refuses a message before
// sending it.
func notSent(err error) bool {
	for _, e := range []error{natsgo.ErrReconnectBufExceeded, natsgo.ErrConnectionClosed, natsgo.ErrMaxPayload,
		natsgo.ErrConnectionDraining, natsgo.ErrInvalidConnection, natsgo.ErrBadSubject, natsgo.ErrHeadersNotSupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
