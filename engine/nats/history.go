package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// History implements engine.Engine. Events beyond policy.Size or older
// than policy.TTL are not returned even if the stream still holds them.
// The room's epoch is fixed from the first call on (a marker message is
// stored if the room has none), so a subscriber told "epoch E, offset 0"
// can recover from it.
//
// In core-only mode no event is kept: Latest is this node's position in the
// room, and Complete is true only for a zero Since.
func (e *Engine) History(ctx context.Context, room string, q engine.HistoryQuery, policy engine.HistoryPolicy) (engine.HistoryResult, error) {
	b, err := e.box()
	if err != nil {
		return engine.HistoryResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return engine.HistoryResult{}, err
	}
	if b.js == nil {
		st := e.lockedState(room)
		defer st.mu.Unlock()
		if st.epoch == "" {
			st.epoch = e.newEpoch()
		}
		return engine.HistoryResult{
			Latest:   protocol.StreamPosition{Offset: st.offset, Epoch: st.epoch},
			Complete: q.Since == (protocol.StreamPosition{}),
		}, nil
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	res, err := e.history(ctx, b, room, q, max(policy.Size, 0), policy.TTL, true)
	if err != nil {
		return engine.HistoryResult{}, fmt.Errorf("nats: history of %q: %w", room, err)
	}
	return res, nil
}

// roomTop is a room's last message.
type roomTop struct {
	pos protocol.StreamPosition // Epoch "" when the room has no messages
	seq uint64
	rec record // the last message, if pos.Epoch != ""
}

// top reads room's last message. With create, a room without messages gets
// a marker that fixes its epoch.
func (e *Engine) top(ctx context.Context, b *connBox, hsubj string, create bool) (roomTop, error) {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		m, err := e.lastMsg(ctx, b, b.hist, hsubj)
		if err == nil {
			rec, err := decodeRecord(m.Data)
			if err != nil {
				return roomTop{}, fmt.Errorf("top message (sequence %d): %w", m.Sequence, err)
			}
			return roomTop{pos: rec.pub.Position, seq: m.Sequence, rec: rec}, nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return roomTop{}, err
		}
		if !create {
			return roomTop{}, nil
		}
		epoch := e.newEpoch()
		mm := &natsgo.Msg{Subject: hsubj, Data: encodeMarker(epoch, time.Now().UnixMilli()), Header: natsgo.Header{}}
		mm.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		ack, err := b.js.PublishMsg(ctx, mm)
		if err == nil {
			return roomTop{pos: protocol.StreamPosition{Epoch: epoch}, seq: ack.Sequence, rec: record{marker: true}}, nil
		}
		if !isWrongLastSeq(err) {
			return roomTop{}, fmt.Errorf("fix the room's epoch: %w", err)
		}
		// Someone else wrote first: read theirs.
	}
	return roomTop{}, errors.New("gave up reading the room's top: it kept changing")
}

// history reads room's stream: events within the newest size offsets
// (size < 0: all the stream holds) and younger than ttl (0: any age).
func (e *Engine) history(ctx context.Context, b *connBox, room string, q engine.HistoryQuery, size int, ttl time.Duration, create bool) (engine.HistoryResult, error) {
	hsubj := e.histSubject(room)
	top, err := e.top(ctx, b, hsubj, create)
	if err != nil {
		return engine.HistoryResult{}, err
	}
	latest := top.pos
	res := engine.HistoryResult{Latest: latest}
	if latest.Epoch == "" { // no stream (only without create)
		res.Complete = q.Since == (protocol.StreamPosition{})
		return res, nil
	}
	// Retained offsets are lo..latest.Offset.
	lo := uint64(1)
	if size >= 0 {
		lo = latest.Offset + 1
		if uint64(size) < lo {
			lo -= uint64(size)
		} else {
			lo = 1
		}
	}
	var cutoff int64
	if ttl > 0 {
		cutoff = time.Now().Add(-ttl).UnixMilli()
	}
	keep := func(p *engine.Publication) bool {
		return p.Position.Epoch == latest.Epoch && p.Position.Offset >= lo && p.Position.Offset <= latest.Offset && p.Time >= cutoff
	}
	since := q.Since
	zero := since == (protocol.StreamPosition{})
	if !zero {
		switch {
		case since.Epoch != latest.Epoch || since.Offset > latest.Offset:
			return res, nil // another stream's position: nothing can be vouched for
		case since.Offset == latest.Offset:
			res.Complete = true
			return res, nil
		case since.Offset+1 < lo:
			return res, nil // evicted
		}
	}
	if lo > latest.Offset { // nothing retained
		res.Complete = zero
		return res, nil
	}
	if zero && q.Limit == 1 && !top.rec.marker {
		// The read every subscribe does: the top message is the answer.
		res.Complete = true
		if keep(top.rec.pub) {
			res.Publications = []*engine.Publication{top.rec.pub}
		}
		return res, nil
	}
	msgs, err := e.readSubject(ctx, b, e.histStream, hsubj, 1, top.seq, 0)
	if err != nil {
		return engine.HistoryResult{}, err
	}
	events := make([]*engine.Publication, 0, len(msgs))
	for _, m := range msgs {
		r, err := decodeRecord(m.data)
		if err != nil || r.marker || !keep(r.pub) || r.pub.Position.Offset <= since.Offset {
			continue
		}
		events = append(events, r.pub)
	}
	if zero {
		if q.Limit > 0 && len(events) > q.Limit {
			events = events[len(events)-q.Limit:]
		}
		res.Publications, res.Complete = events, true
		return res, nil
	}
	if len(events) == 0 || events[0].Position.Offset != since.Offset+1 {
		return res, nil
	}
	if q.Limit > 0 && len(events) > q.Limit {
		events = events[:q.Limit]
	}
	res.Publications, res.Complete = events, true
	return res, nil
}

// storedMsg is one message read from a stream.
type storedMsg struct {
	seq     uint64
	subject string
	data    []byte
}

// consumerCreate is the JetStream API request for an ephemeral push
// consumer (the subset of its configuration used here).
type consumerCreate struct {
	Stream string         `json:"stream_name"`
	Config consumerConfig `json:"config"`
}

type consumerConfig struct {
	DeliverSubject    string `json:"deliver_subject"`
	DeliverPolicy     string `json:"deliver_policy"`
	OptStartSeq       uint64 `json:"opt_start_seq,omitempty"`
	AckPolicy         string `json:"ack_policy"`
	FilterSubject     string `json:"filter_subject"`
	ReplayPolicy      string `json:"replay_policy"`
	MemoryStorage     bool   `json:"mem_storage"`
	Replicas          int    `json:"num_replicas"`
	InactiveThreshold int64  `json:"inactive_threshold"` // nanoseconds
}

type consumerCreated struct {
	Name       string              `json:"name"`
	NumPending uint64              `json:"num_pending"`
	Error      *jetstream.APIError `json:"error"`
}

// readInactive is how long the server keeps a read's consumer after its
// reader went away without deleting it.
const readInactive = 5 * time.Second

// readSubject reads the messages of stream matching filter, from sequence
// start on, up to (and including) stop if not 0, at most max if not 0.
// One ephemeral push consumer streams them in order: one round trip
// whatever their number.
func (e *Engine) readSubject(ctx context.Context, b *connBox, stream, filter string, start, stop uint64, max int) ([]storedMsg, error) {
	r := &reader{want: -1, stop: stop, done: make(chan struct{})}
	// An async subscription collects into a slice: SubscribeSync would
	// allocate a channel of nats.go's default length (64k messages) per
	// read.
	sub, err := b.nc.Subscribe(b.nc.NewInbox(), r.onMsg)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	// What is read is bounded by the subject's messages, which trims keep
	// near the history size; dropping any would stall the read.
	_ = sub.SetPendingLimits(-1, -1)
	cfg := consumerConfig{
		DeliverSubject:    sub.Subject,
		DeliverPolicy:     "all",
		AckPolicy:         "none",
		FilterSubject:     filter,
		ReplayPolicy:      "instant",
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: int64(readInactive),
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = "by_start_sequence", start
	}
	req, err := json.Marshal(consumerCreate{Stream: stream, Config: cfg})
	if err != nil {
		return nil, err
	}
	resp, err := b.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("create read consumer: %w", err)
	}
	var cr consumerCreated
	if err := json.Unmarshal(resp.Data, &cr); err != nil {
		return nil, fmt.Errorf("create read consumer: %w", err)
	}
	if cr.Error != nil {
		return nil, fmt.Errorf("create read consumer: %w", cr.Error)
	}
	// Delete it without waiting for the answer (sent to an inbox nobody
	// reads); if this is lost, the server drops the consumer once it has
	// been without a reader for readInactive.
	defer func() { _ = b.nc.PublishRequest("$JS.API.CONSUMER.DELETE."+stream+"."+cr.Name, b.discard, nil) }()
	n := cr.NumPending
	if max > 0 && n > uint64(max) {
		n = uint64(max)
	}
	r.expect(int(n))
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: %w", filter, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs, nil
}

// reader collects a read consumer's messages until it has want of them,
// or the one at sequence stop.
type reader struct {
	mu     sync.Mutex
	msgs   []storedMsg
	want   int // -1 until the consumer's pending count is known
	stop   uint64
	closed bool
	done   chan struct{}
}

func (r *reader) onMsg(m *natsgo.Msg) {
	seq, ok := ackStreamSeq(m.Reply)
	if !ok {
		return // not a stream message (none are configured, but be safe)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.msgs = append(r.msgs, storedMsg{seq: seq, subject: m.Subject, data: m.Data})
	if r.stop > 0 && seq >= r.stop {
		r.want = len(r.msgs) // stop here whatever else is pending
	}
	r.check()
}

// expect sets how many messages the read returns.
func (r *reader) expect(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want < 0 || n < r.want {
		r.want = n
	}
	r.check()
}

func (r *reader) check() {
	if !r.closed && r.want >= 0 && len(r.msgs) >= r.want {
		r.msgs = r.msgs[:r.want]
		r.closed = true
		close(r.done)
	}
}

// ackStreamSeq parses the stream sequence from a JetStream delivery's reply
// subject, $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
// (or the longer form with domain and account hash, where it is the 8th
// token of 12 or more).
func ackStreamSeq(reply string) (uint64, bool) {
	var tokens [16]string
	n := 0
	startTok := 0
	for i := 0; i <= len(reply) && n < len(tokens); i++ {
		if i == len(reply) || reply[i] == '.' {
			tokens[n] = reply[startTok:i]
			n++
			startTok = i + 1
		}
	}
	if n < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
		return 0, false
	}
	idx := 5
	if n >= 12 {
		idx = 7
	}
	seq, err := strconv.ParseUint(tokens[idx], 10, 64)
	return seq, err == nil
}
