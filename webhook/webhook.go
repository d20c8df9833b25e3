// Package webhook tells an application's backend what happens on a
// Switchboard node: it POSTs signed, batched events (connections opened and
// closed, rooms occupied and vacated, members added and removed, and the
// publications of chosen namespaces) to configured URLs, retrying with
// backoff. The wire format is in docs/webhooks.md.
//
// Create a Sender with New, pass Sender.Hooks to the hub, then Run it. The
// hooks never block the hub: each URL has a bounded queue, and an event
// that finds it full is dropped and counted.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Event types.
const (
	ConnectionOpened = "connection.opened"
	ConnectionClosed = "connection.closed"
	RoomOccupied     = "room.occupied"
	RoomVacated      = "room.vacated"
	MemberAdded      = "member.added"
	MemberRemoved    = "member.removed"
	Publication      = "publication"
)

// DefaultEvents are the event types sent when Options.Events is empty:
// every type but publication, which is chosen per namespace.
var DefaultEvents = []string{ConnectionOpened, ConnectionClosed, RoomOccupied, RoomVacated, MemberAdded, MemberRemoved}

// Header names of a delivery.
const (
	HeaderID        = "Switchboard-Webhook-Id"
	HeaderTimestamp = "Switchboard-Webhook-Timestamp"
	HeaderSignature = "Switchboard-Webhook-Signature"
)

// Defaults for Options.
const (
	DefaultMaxBatch    = 100
	DefaultMaxDelay    = 100 * time.Millisecond
	DefaultQueueSize   = 10000
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 10
	DefaultMaxAge      = 5 * time.Minute
	DefaultBackoffMin  = 200 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
)

// Options configure a Sender. Zero values take the defaults above.
type Options struct {
	// URLs receive every event, each with its own queue. Required.
	URLs []string
	// Secrets sign each delivery; every secret's signature is sent, so a
	// receiver can move to a new secret while the old one still works.
	// At least one is required.
	Secrets []string
	// NodeID is this node's id, in each event's "node" and id.
	NodeID string
	// Events are the types sent. Default: DefaultEvents. Publication is
	// implied when PublicationNamespaces is set.
	Events []string
	// PublicationNamespaces are the namespaces whose publications are
	// sent ("*": every room; "" names rooms without a namespace).
	PublicationNamespaces []string
	// MaxBatch caps the events in one request. Default 100.
	MaxBatch int
	// MaxDelay is how long the first event of a batch may wait for more.
	// Default 100 ms.
	MaxDelay time.Duration
	// QueueSize caps the events waiting per URL; beyond it events are
	// dropped and counted. Default 10000.
	QueueSize int
	// Timeout bounds one attempt. Default 5 s.
	Timeout time.Duration
	// MaxAttempts and MaxAge bound the retries of one batch: after
	// MaxAttempts attempts, or once its oldest event is MaxAge old, it is
	// dropped and counted. Defaults 10 attempts and 5 minutes.
	MaxAttempts int
	MaxAge      time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts, which
	// doubles from BackoffMin with full jitter. Defaults 200 ms and 30 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// Client makes the requests. Default: a new http.Client.
	Client *http.Client
	// Logger receives delivery failures. Default: discard.
	Logger *slog.Logger
}

// Validate reports the first problem with o's required settings.
func (o *Options) Validate() error {
	if len(o.URLs) == 0 {
		return errors.New("webhook: no URL configured")
	}
	for _, u := range o.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("webhook: URL %q is not an http(s) URL", u)
		}
	}
	if len(o.Secrets) == 0 {
		return errors.New("webhook: a secret is required to sign deliveries (--webhook-secret)")
	}
	for _, s := range o.Secrets {
		if s == "" {
			return errors.New("webhook: empty secret")
		}
	}
	for _, t := range o.Events {
		if !slices.Contains(DefaultEvents, t) && t != Publication {
			return fmt.Errorf("webhook: unknown event type %q (want %s or %s)", t, strings.Join(DefaultEvents, ", "), Publication)
		}
	}
	for _, ns := range o.PublicationNamespaces {
		if ns != "*" && ns != "" && (strings.Contains(ns, ":") || protocol.ValidateRoom(ns) != nil) {
			return fmt.Errorf("webhook: %q is not a namespace name", ns)
		}
	}
	return nil
}

func (o *Options) fill() {
	if len(o.Events) == 0 {
		o.Events = DefaultEvents
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Event is one webhook event. Fields that do not apply to its type are
// omitted; those that do are present even when empty (user of an
// anonymous connection, client and user of a publication by the API).
type Event struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	TS   int64  `json:"ts"` // Unix milliseconds
	Node string `json:"node"`
	// Client and User name the connection (connection.*, member.*,
	// publication).
	Client *string `json:"client,omitempty"`
	User   *string `json:"user,omitempty"`
	Room   string  `json:"room,omitempty"`
	// Code and Reason are how a connection ended (connection.closed).
	Code   *int    `json:"code,omitempty"`
	Reason *string `json:"reason,omitempty"`
	// Generation numbers a room's occupied periods (room.*).
	Generation uint64 `json:"generation,omitempty"`
	// EventID, EventType and Data describe a publication.
	EventID   string          `json:"event_id,omitempty"`
	EventType string          `json:"event_type,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// str returns a pointer to s, for the fields that are present when empty.
func str(s string) *string { return &s }

// Str returns *p, or "" for nil: a reader's shorthand for the optional
// string fields.
func Str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Sign returns the signature header value of body signed at ts with
// secrets: "v1=HEX" per secret, comma-separated.
func Sign(secrets []string, ts int64, body []byte) string {
	var b strings.Builder
	t := strconv.FormatInt(ts, 10)
	for i, s := range secrets {
		m := hmac.New(sha256.New, []byte(s))
		m.Write([]byte(t))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("v1=")
		b.WriteString(hex.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}

// Verify checks a delivery as a receiver would: the timestamp within
// tolerance of now and a v1 signature by secret, compared in constant time.
// Go backends can use it; the tests use it to check what was sent.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(header.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return errors.New("webhook: missing or malformed timestamp")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: timestamp %d is %s away from now", ts, d.Round(time.Second))
	}
	want := []byte(Sign([]string{secret}, ts, body))
	for _, sig := range strings.Split(header.Get(HeaderSignature), ",") {
		if hmac.Equal([]byte(strings.TrimSpace(sig)), want) {
			return nil
		}
	}
	return errors.New("webhook: no signature matches")
}

// Stats are a Sender's counters, summed over its URLs.
type Stats struct {
	Sent     uint64 // events delivered (answered 2xx)
	Failed   uint64 // attempts that failed (non-2xx, error, timeout)
	Dropped  uint64 // events given up: queue full or retries exhausted
	Queued   int    // events waiting now
	Requests uint64 // attempts made
}

// Sender delivers events to the configured URLs. Its methods are safe for
// concurrent use.
type Sender struct {
	opts    Options
	types   map[string]bool
	pubNS   map[string]bool
	pubAll  bool
	boot    string // tells this process's ids from an earlier one's
	seq     atomic.Uint64
	targets []*target

	sent, failed, dropped, requests atomic.Uint64

	runOnce  sync.Once
	wg       sync.WaitGroup
	closing  chan struct{} // closed by Close: stops the workers' requests
	stopOnce sync.Once
	mu       sync.RWMutex // emit holds it shared, Close exclusively
	closed   bool         // the queues are closed
}

// target is one URL's queue and worker.
type target struct {
	url   string
	queue chan *queued
}

type queued struct {
	at   time.Time
	body []byte // the event's JSON
}

// New validates opts and returns a Sender; call Run to start delivering.
func New(opts Options) (*Sender, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	var b [3]byte
	_, _ = rand.Read(b[:])
	s := &Sender{opts: opts, types: map[string]bool{}, pubNS: map[string]bool{}, boot: hex.EncodeToString(b[:]), closing: make(chan struct{})}
	for _, t := range opts.Events {
		s.types[t] = true
	}
	for _, ns := range opts.PublicationNamespaces {
		s.types[Publication] = true
		if ns == "*" {
			s.pubAll = true
		}
		s.pubNS[ns] = true
	}
	if s.types[Publication] && len(opts.PublicationNamespaces) == 0 {
		s.pubAll = true
	}
	for _, u := range opts.URLs {
		s.targets = append(s.targets, &target{url: u, queue: make(chan *queued, opts.QueueSize)})
	}
	return s, nil
}

// Wants reports whether events of type t are sent.
func (s *Sender) Wants(t string) bool { return s.types[t] }

// Run starts one worker per URL. Workers stop when ctx ends or Close is
// called.
func (s *Sender) Run(ctx context.Context) {
	s.runOnce.Do(func() {
		ctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.closing:
			case <-ctx.Done():
			}
			cancel()
		}()
		for _, t := range s.targets {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.work(ctx, t)
			}()
		}
	})
}

// Close stops taking events and gives the workers until ctx ends to
// deliver what is queued; then it stops them. Events still queued are
// counted as dropped.
func (s *Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, t := range s.targets {
			close(t.queue)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	stop := func() { s.stopOnce.Do(func() { close(s.closing) }) } // also ends Run's watcher
	select {
	case <-done:
		stop()
		return nil
	case <-ctx.Done():
		stop()
		<-done
		return fmt.Errorf("webhook: undelivered events at shutdown: %w", ctx.Err())
	}
}

// Stats returns the Sender's counters.
func (s *Sender) Stats() Stats {
	st := Stats{Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(), Requests: s.requests.Load()}
	for _, t := range s.targets {
		st.Queued += len(t.queue)
	}
	return st
}

// emit queues ev for every URL without blocking.
func (s *Sender) emit(ev *Event) {
	ev.ID = s.opts.NodeID + "-" + s.boot + "-" + strconv.FormatUint(s.seq.Add(1), 10)
	ev.Node = s.opts.NodeID
	now := time.Now()
	ev.TS = now.UnixMilli()
	body, err := json.Marshal(ev)
	if err != nil { // Data is valid JSON from the hub; cannot happen
		s.opts.Logger.Error("webhook: encode event", "type", ev.Type, "err", err)
		return
	}
	q := &queued{at: now, body: body}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(uint64(len(s.targets)))
		return
	}
	for _, t := range s.targets {
		select {
		case t.queue <- q:
		default:
			s.dropped.Add(1)
		}
	}
}

func (s *Sender) wantsPublication(room string) bool {
	if !s.types[Publication] {
		return false
	}
	return s.pubAll || s.pubNS[protocol.Namespace(room)]
}

// Hooks returns next with the hooks that feed the Sender added; next's
// own hooks still run, first.
func (s *Sender) Hooks(next hub.Hooks) hub.Hooks {
	h := next
	if s.types[ConnectionOpened] {
		prev := next.OnConnect
		h.OnConnect = func(c hub.ConnectionInfo) {
			if prev != nil {
				prev(c)
			}
			s.emit(&Event{Type: ConnectionOpened, Client: str(c.ConnectionID), User: str(c.UserID)})
		}
	}
	if s.types[ConnectionClosed] {
		prev := next.OnDisconnect
		h.OnDisconnect = func(c hub.ConnectionInfo) {
			if prev != nil {
				prev(c)
			}
			code := int(c.CloseCode)
			s.emit(&Event{Type: ConnectionClosed, Client: str(c.ConnectionID), User: str(c.UserID), Code: &code, Reason: str(c.CloseReason)})
		}
	}
	member := func(typ string, prev func(string, hub.ConnectionInfo)) func(string, hub.ConnectionInfo) {
		if !s.types[typ] {
			return prev
		}
		return func(room string, c hub.ConnectionInfo) {
			if prev != nil {
				prev(room, c)
			}
			s.emit(&Event{Type: typ, Room: room, Client: str(c.ConnectionID), User: str(c.UserID)})
		}
	}
	h.OnJoin, h.OnLeave = member(MemberAdded, next.OnJoin), member(MemberRemoved, next.OnLeave)
	occupancy := func(typ string, prev func(string, uint64)) func(string, uint64) {
		if !s.types[typ] {
			return prev
		}
		return func(room string, gen uint64) {
			if prev != nil {
				prev(room, gen)
			}
			s.emit(&Event{Type: typ, Room: room, Generation: gen})
		}
	}
	h.OnRoomOccupied, h.OnRoomVacated = occupancy(RoomOccupied, next.OnRoomOccupied), occupancy(RoomVacated, next.OnRoomVacated)
	if s.types[Publication] {
		prev := next.OnPublished
		h.OnPublished = func(p hub.PublishedEvent) {
			if prev != nil {
				prev(p)
			}
			if !s.wantsPublication(p.Room) {
				return
			}
			data := p.Data
			if len(data) == 0 {
				data = json.RawMessage("null")
			}
			s.emit(&Event{Type: Publication, Room: p.Room, EventID: p.EventID, EventType: p.Type, Data: data, User: str(p.UserID), Client: str(p.ClientID)})
		}
	}
	return h
}

// work delivers t's queue in order: a batch is retried until it is
// delivered or given up before the next one is sent.
func (s *Sender) work(ctx context.Context, t *target) {
	var batch []*queued
	for {
		// The first event of a batch: wait for it.
		select {
		case q, ok := <-t.queue:
			if !ok {
				return
			}
			batch = append(batch[:0], q)
		case <-ctx.Done():
			s.dropRest(t)
			return
		}
		deadline := time.NewTimer(s.opts.MaxDelay)
		closed := false
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case q, ok := <-t.queue:
				if !ok {
					closed = true
					break fill
				}
				batch = append(batch, q)
			case <-deadline.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		deadline.Stop()
		s.deliver(ctx, t, batch)
		if closed {
			return
		}
		if ctx.Err() != nil {
			s.dropRest(t)
			return
		}
	}
}

// dropRest counts what is left in t's queue once the worker stops.
func (s *Sender) dropRest(t *target) {
	for {
		select {
		case _, ok := <-t.queue:
			if !ok {
				return
			}
			s.dropped.Add(1)
		default:
			return
		}
	}
}

// deliver sends one batch, retrying with backoff until a 2xx answer, the
// attempt limit, the age limit or ctx's end.
func (s *Sender) deliver(ctx context.Context, t *target, batch []*queued) {
	n := 0
	for _, q := range batch {
		n += len(q.body) + 1
	}
	body := make([]byte, 0, n+12)
	body = append(body, `{"events":[`...)
	for i, q := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, q.body...)
	}
	body = append(body, "]}"...)
	id := s.opts.NodeID + "-" + s.boot + "-b" + strconv.FormatUint(s.seq.Add(1), 10)
	oldest := batch[0].at
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, t.url, id, body)
		if err == nil {
			s.sent.Add(uint64(len(batch)))
			return
		}
		s.failed.Add(1)
		wait := backoff(s.opts.BackoffMin, s.opts.BackoffMax, attempt)
		if attempt >= s.opts.MaxAttempts || time.Since(oldest)+wait > s.opts.MaxAge || ctx.Err() != nil {
			s.dropped.Add(uint64(len(batch)))
			s.opts.Logger.Warn("webhook: batch dropped", "url", redact(t.url), "id", id, "events", len(batch), "attempts", attempt, "err", err)
			return
		}
		s.opts.Logger.Debug("webhook: attempt failed", "url", redact(t.url), "id", id, "attempt", attempt, "err", err)
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
		}
	}
}

// attempt makes one signed request.
func (s *Sender) attempt(ctx context.Context, u, id string, body []byte) error {
	s.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(s.opts.Secrets, ts, body))
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// backoff is the wait after the n-th failed attempt: a random point in the
// upper half of a cap that doubles per attempt, so that nodes retrying
// together spread out but a retry never comes at once.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	return d/2 + time.Duration(r%uint64(d/2+1))
}

// redact drops a URL's query and user info for logs: they may hold tokens.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad URL)"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}
