package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Idempotency keys live in their own stream, one subject per room and key
// holding one record (MaxMsgsPerSubject 1). A publisher first claims the
// key: it writes a pending record, conditional on the subject's last
// sequence (so of two publishers with one key, on any nodes, one wins and
// the other waits for the outcome). It then appends the event, which
// carries the claim's id, and finally writes the done record with the
// event's position. A pending record older than the lease belongs to a
// publisher that failed or crashed; the next publisher with the key looks
// for the claim's event in the room's messages after the claim was made,
// and finds it (a duplicate), proves it absent (takes the key over) or, if
// those messages were trimmed meanwhile, cannot tell and returns an error
// rather than risk publishing twice.

// idemRecord is the JSON of one idempotency record.
type idemRecord struct {
	State string `json:"s"`           // stPending, stDone or stReleased
	Claim string `json:"c,omitempty"` // claim id, in the event too
	At    int64  `json:"t,omitempty"` // claim time, Unix ms

	// The room's top when the claim was made: the claim's event, if
	// stored, comes after AfterSeq.
	AfterSeq    uint64 `json:"as,omitempty"`
	AfterEpoch  string `json:"ae,omitempty"`
	AfterOffset uint64 `json:"ao,omitempty"`

	Epoch   string `json:"e,omitempty"` // the event's position (done)
	Offset  uint64 `json:"o,omitempty"`
	Expires int64  `json:"x,omitempty"` // Unix ms (done)
}

const (
	stPending  = "p"
	stDone     = "d"
	stReleased = "r" // the claimed publish failed without storing anything
)

const (
	// claimPoll is how often a publisher waiting for another's claim looks
	// again.
	claimPoll = 20 * time.Millisecond
	// maxClaimScan bounds the messages read to resolve a stale claim.
	maxClaimScan = 10_000
)

// claim is a key this publisher holds.
type claim struct {
	subj string
	id   string
	seq  uint64 // sequence of the pending record
	ttl  time.Duration
	at   time.Time
}

// claimLease is how long a pending record protects its publisher. It is
// well above how long one publish may take (appendEvent runs under half
// of it).
func (e *Engine) claimLease() time.Duration { return 3 * e.opts.OpTimeout }

// errClaimUnknown: a stale claim whose outcome cannot be determined.
var errClaimUnknown = errors.New("an earlier publish with this idempotency key was interrupted and whether it was stored cannot be told (its room's history was trimmed meanwhile)")

// claimKey returns the earlier result if key was used in room within its
// TTL, or else a claim on it. st is locked.
func (e *Engine) claimKey(ctx context.Context, b *connBox, room, hsubj string, st *pubState, key string, ttl time.Duration) (*engine.PublishResult, *claim, error) {
	ttl = min(ttl, e.opts.IdempotencyWindow)
	isubj := e.idemPrefix + token(room) + "." + token(key)
	// Most keys are new: try to claim first, read only if that fails.
	for first := true; ctx.Err() == nil; first = false {
		var (
			m      *jetstream.RawStreamMsg
			err    error = jetstream.ErrMsgNotFound
			expect uint64
		)
		if !first {
			cctx, cancel := e.opCtx(ctx)
			m, err = e.lastMsg(cctx, b, b.idem, isubj)
			cancel()
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, nil, fmt.Errorf("nats: idempotency key of %q: %w", room, err)
		default:
			expect = m.Sequence
			var rec idemRecord
			if err := json.Unmarshal(m.Data, &rec); err != nil {
				return nil, nil, fmt.Errorf("nats: idempotency record of %q: %w", room, err)
			}
			now := time.Now()
			switch rec.State {
			case stDone:
				if now.UnixMilli() < rec.Expires {
					return dupResult(rec.Epoch, rec.Offset), nil, nil
				}
			case stPending:
				if now.UnixMilli() < rec.At+e.claimLease().Milliseconds() {
					if !broker.SleepCtx(ctx, claimPoll) {
						return nil, nil, ctx.Err()
					}
					continue
				}
				if now.UnixMilli() >= rec.At+ttl.Milliseconds() {
					break // the key's time is over, whatever became of it
				}
				pos, found, err := e.findClaimed(ctx, b, hsubj, rec)
				if err != nil {
					return nil, nil, fmt.Errorf("nats: idempotency key in %q: %w", room, err)
				}
				if found {
					done := idemRecord{State: stDone, Epoch: pos.Epoch, Offset: pos.Offset, Expires: rec.At + ttl.Milliseconds()}
					_, _ = e.putIdem(ctx, b, isubj, done, expect) // best effort: the next one finds it again
					return dupResult(pos.Epoch, pos.Offset), nil, nil
				}
			}
			// Expired, released, or a stale claim proved to have stored
			// nothing: take the key over.
		}
		if !e.fresh(st) {
			if err := e.loadTop(ctx, b, hsubj, st); err != nil {
				return nil, nil, fmt.Errorf("nats: publish to %q: %w", room, err)
			}
		}
		c := &claim{subj: isubj, id: randomID(), ttl: ttl, at: time.Now()}
		rec := idemRecord{State: stPending, Claim: c.id, At: c.at.UnixMilli(), AfterSeq: st.seq, AfterEpoch: st.epoch, AfterOffset: st.offset}
		seq, err := e.putIdem(ctx, b, isubj, rec, expect)
		if isWrongLastSeq(err) {
			continue // another publisher wrote the key first: look again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("nats: claim idempotency key in %q: %w", room, err)
		}
		c.seq = seq
		return nil, c, nil
	}
	return nil, nil, ctx.Err()
}

func dupResult(epoch string, offset uint64) *engine.PublishResult {
	return &engine.PublishResult{Position: protocol.StreamPosition{Offset: offset, Epoch: epoch}, Duplicate: true}
}

// putIdem writes rec if the key's last record is still expect (0: none).
func (e *Engine) putIdem(ctx context.Context, b *connBox, subj string, rec idemRecord, expect uint64) (uint64, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	m := &natsgo.Msg{Subject: subj, Data: data, Header: natsgo.Header{}}
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// finishClaim records the claimed publish's outcome: its position, or that
// it stored nothing. When that is unknown the claim stays pending, to be
// resolved by the next publisher with the key once the lease is over.
func (e *Engine) finishClaim(ctx context.Context, b *connBox, c *claim, pos protocol.StreamPosition, err error, maybeStored bool) {
	ctx = context.WithoutCancel(ctx) // the outcome is worth recording even if the caller gave up
	switch {
	case err == nil:
		rec := idemRecord{State: stDone, Epoch: pos.Epoch, Offset: pos.Offset, Expires: time.Now().Add(c.ttl).UnixMilli()}
		_, _ = e.putIdem(ctx, b, c.subj, rec, c.seq)
	case !maybeStored:
		_, _ = e.putIdem(ctx, b, c.subj, idemRecord{State: stReleased}, c.seq)
	}
}

// findClaimed looks for the event of a stale claim among the room's
// messages stored after the claim was made.
func (e *Engine) findClaimed(ctx context.Context, b *connBox, hsubj string, rec idemRecord) (protocol.StreamPosition, bool, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	msgs, err := e.readSubject(ctx, b, e.histStream, hsubj, rec.AfterSeq+1, 0, maxClaimScan)
	if err != nil {
		return protocol.StreamPosition{}, false, err
	}
	for _, m := range msgs {
		if r, err := decodeRecord(m.data); err == nil && r.claim == rec.Claim {
			return r.pub.Position, true, nil
		}
	}
	if len(msgs) == 0 {
		return protocol.StreamPosition{}, false, nil // nothing stored after the claim
	}
	if len(msgs) >= maxClaimScan {
		return protocol.StreamPosition{}, false, errClaimUnknown
	}
	// Messages are only ever removed oldest first (trims, MaxAge), so if
	// the first one after the claim's top is its successor, none is
	// missing and the event was never stored.
	first, err := decodeRecord(msgs[0].data)
	if err != nil {
		return protocol.StreamPosition{}, false, errClaimUnknown
	}
	p := first.pub.Position
	successor := p.Epoch == rec.AfterEpoch && p.Offset == rec.AfterOffset+1
	if rec.AfterEpoch == "" { // the room had no messages: a marker or offset 1 comes first
		successor = first.marker || p.Offset == 1
	}
	if !successor {
		return protocol.StreamPosition{}, false, errClaimUnknown
	}
	return protocol.StreamPosition{}, false, nil
}
