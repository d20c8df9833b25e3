package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"
)

// State is where a client is in its life.
type State int

const (
	// StateConnecting: Connect has not yet opened the first connection.
	StateConnecting State = iota
	// StateOpen: a connection is open and messages flow.
	StateOpen
	// StateReconnecting: the connection ended with a code that calls for
	// a reconnect; the client is backing off or dialling again. Sends are
	// queued meanwhile.
	StateReconnecting
	// StateClosed: Close was called, or the client stopped for good (a
	// close code that says not to reconnect, Options.MaxAttempts, or a
	// handshake refusal). It does not leave this state.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Options configure a Client. The zero value (or nil) works; every field
// says what its zero value means.
type Options struct {
	// Header is sent with every WebSocket handshake (cookies, a
	// User-Agent, ...).
	Header http.Header
	// Token, when set, is sent with every handshake as
	// "Authorization: Bearer <token>", or as the `token` query parameter
	// with TokenInQuery. Servers without authentication ignore it.
	Token string
	// TokenInQuery sends the token as the `token` query parameter instead
	// of the Authorization header (what browsers must do). Query strings
	// end up in access logs: prefer the header.
	TokenInQuery bool
	// GetToken is called for a token: before the first connection when
	// Token is empty; when the server rejects the handshake's token (401)
	// or closes with 4000 (session expired), before connecting again; and
	// on `session_expiring`, after which the new token is sent as a
	// `refresh` so the connection lives on. An error wrapping
	// ErrUnauthorized stops the client; other errors count as a failed
	// attempt and are retried with backoff. nil: the token never changes
	// (a rejected token then stops the client, and session_expiring goes
	// to OnEvent).
	GetToken func(ctx context.Context) (string, error)

	// Compression offers permessage-deflate; it is used if the server
	// enables it. Default off: small JSON gains little and costs CPU.
	Compression bool

	// Reconnect backoff: retry n waits a random time in
	// [0, min(MaxDelay, InitialDelay·Factorⁿ)] (full jitter).
	// Defaults: 500 ms, 30 s, 2.
	InitialDelay time.Duration
	MaxDelay     time.Duration
	Factor       float64
	// MaxAttempts is how many connection attempts in a row may fail before
	// the client gives up and stops (Connect returns the error; later, Err
	// does). 0: never give up.
	MaxAttempts int

	// HandshakeTimeout bounds one connection attempt, from dialling to the
	// server's connection_established. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to the server; a server that stalls
	// longer is treated as gone. Default 10 s.
	WriteTimeout time.Duration

	// QueueSize bounds the messages waiting to be written, which is where
	// sends go while the client is not open. Beyond it, calls fail with
	// ErrQueueFull. Default 1024.
	QueueSize int

	// PingInterval, when set, sends an application-level {"type":"ping"}
	// at this interval; MaxMissedPongs pings in a row without a pong force
	// a reconnect. This finds a dead connection from the client's side
	// even when the server's pings would take longer. 0: off (the client
	// still answers the server's WebSocket pings, and treats twice the
	// server's announced heartbeat interval without any frame as a dead
	// connection).
	PingInterval   time.Duration
	MaxMissedPongs int // default 2

	// OnState is called on every change of state, with the reason for
	// StateReconnecting and StateClosed (nil after Close), and again with
	// StateConnecting or StateReconnecting and the error after each failed
	// connection attempt.
	OnState func(s State, err error)
	// OnError receives errors that belong to no call: `error` events that
	// do not reference a request (as *ServerError), a re-subscription the
	// server refused after a reconnect, frames the client cannot parse,
	// and the error that stopped the client.
	OnError func(err error)
	// OnEvent receives every server message the client does not consume:
	// events for rooms without a Subscription (rooms subscribed with Send,
	// events sent to the user or to every connection), replies to requests
	// made with Send (a raw JSON-RPC answer comes as Type "jsonrpc" with
	// the whole frame in Data), and session_expiring when GetToken is nil.
	OnEvent func(e Event)
}

// Defaults for Options.
const (
	DefaultInitialDelay     = 500 * time.Millisecond
	DefaultMaxDelay         = 30 * time.Second
	DefaultFactor           = 2
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultQueueSize        = 1024
	DefaultMaxMissedPongs   = 2
)

// maxFrame bounds one incoming message. A history page of the server's
// largest size (1,000 events of up to 64 KiB each) must fit.
const maxFrame = 80 << 20

// Client is a connection to a Switchboard server that stays connected:
// create it with New, then call Connect. All methods are safe for
// concurrent use. Callbacks (handlers, Options.On*) run one at a time, in
// order, on a goroutine of the client; they may call the client's methods.
type Client struct {
	url     string
	opts    Options
	backoff backoff
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	life   context.Context // ends with Close
	cancel context.CancelFunc
	disp   *dispatcher
	wg     sync.WaitGroup // maintain, writers, heartbeats

	mu        sync.Mutex
	state     State
	started   bool
	closed    bool
	err       error // why the client stopped; nil after Close
	cur       *wsConn
	queue     []outItem
	pending   map[string]*request
	subs      map[string]*Subscription
	seq       uint64
	token     string
	needToken bool
	userID    string
	connID    string
	opens     int    // connections opened (tests)
	dupes     uint64 // events dropped as already seen (tests)
}

// New returns a client for url (ws:// or wss://; http:// and https:// are
// accepted and mean the same). It does not connect: call Connect. opts may
// be nil.
func New(url string, opts *Options) *Client {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.InitialDelay <= 0 {
		o.InitialDelay = DefaultInitialDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.InitialDelay {
		o.MaxDelay = o.InitialDelay
	}
	if o.Factor < 1 {
		o.Factor = DefaultFactor
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxMissedPongs <= 0 {
		o.MaxMissedPongs = DefaultMaxMissedPongs
	}
	o.Header = o.Header.Clone()
	life, cancel := context.WithCancel(context.Background())
	return &Client{
		url:       url,
		opts:      o,
		backoff:   backoff{initial: o.InitialDelay, max: o.MaxDelay, factor: o.Factor, randN: mrand.Int64N},
		sleep:     sleepCtx,
		life:      life,
		cancel:    cancel,
		disp:      newDispatcher(),
		pending:   make(map[string]*request),
		subs:      make(map[string]*Subscription),
		token:     o.Token,
		needToken: o.Token == "" && o.GetToken != nil,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connect opens the first connection and returns once the server has
// answered with connection_established. Transient failures (refused,
// 5xx, a close code that calls for a reconnect) are retried with the
// reconnect backoff until ctx ends or Options.MaxAttempts is reached;
// a permanent one (a 4xx handshake answer, a close code that says not to
// reconnect) fails at once. If Connect fails, the client is closed.
//
// ctx bounds only this first connection. From then on a goroutine of the
// client keeps it connected until Close or a close code that says not to
// reconnect. Connect may be called once.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("client: Connect called more than once")
	}
	c.started = true
	c.mu.Unlock()
	if err := c.checkURL(); err != nil {
		c.shutdown(err)
		return err
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel) // Close aborts Connect
	defer stop()
	cn, err := c.establish(dctx, false)
	if err != nil {
		if c.life.Err() != nil {
			return ErrClosed
		}
		err = fmt.Errorf("client: connect: %w", err)
		c.shutdown(err)
		return err
	}
	if !c.open(cn, true) {
		return ErrClosed
	}
	return nil
}

func (c *Client) checkURL() error {
	u, err := url.Parse(c.url)
	if err != nil {
		return fmt.Errorf("client: bad URL %q: %w", c.url, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return fmt.Errorf("client: bad URL %q: the scheme must be ws or wss", c.url)
	}
	if u.Host == "" {
		return fmt.Errorf("client: bad URL %q: no host", c.url)
	}
	c.url = u.String()
	return nil
}

// establish dials until a connection is open, with backoff between
// attempts. afterDrop makes the first attempt a retry (it waits first).
func (c *Client) establish(ctx context.Context, afterDrop bool) (*wsConn, error) {
	retry, failures := 0, 0
	if afterDrop {
		if err := c.sleep(ctx, c.backoff.delay(retry)); err != nil {
			return nil, err
		}
		retry++
	}
	for {
		cn, err := c.dial(ctx)
		if err == nil {
			return cn, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		}
		switch failureAction(err) {
		case actStop:
			return nil, err
		case actRefreshToken:
			var he *HandshakeError
			if c.opts.GetToken == nil && errors.As(err, &he) {
				return nil, err // the token was rejected and there is no other
			}
			c.mu.Lock()
			c.needToken = c.opts.GetToken != nil
			c.mu.Unlock()
		}
		failures++
		if c.opts.MaxAttempts > 0 && failures >= c.opts.MaxAttempts {
			return nil, &errGaveUp{attempts: failures, last: err}
		}
		c.mu.Lock()
		c.notifyStateLocked(c.state, err)
		c.mu.Unlock()
		if err := c.sleep(ctx, c.backoff.delay(retry)); err != nil {
			return nil, err
		}
		retry++
	}
}

// open makes cn the current connection and starts its writer (and, with
// startMaintain, the goroutine that keeps the client connected). It
// returns false, closing cn, if the client was closed meanwhile.
func (c *Client) open(cn *wsConn, startMaintain bool) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = cn.ws.WriteClose(1000, nil)
		<-cn.done
		return false
	}
	c.cur = cn
	c.userID, c.connID = cn.info.UserID, cn.info.ConnectionID
	c.opens++
	c.state = StateOpen
	c.notifyStateLocked(StateOpen, nil)
	n := 1
	if startMaintain {
		n++
	}
	if c.opts.PingInterval > 0 {
		n++
	}
	c.wg.Add(n)
	c.mu.Unlock()
	if startMaintain {
		go c.maintain(cn)
	}
	if c.opts.PingInterval > 0 {
		go c.heartbeat(cn)
	}
	go c.writer(cn)
	cn.wakeWriter()
	return true
}

// maintain waits for each connection to end and replaces it, following
// the close-code table, until the client stops.
func (c *Client) maintain(cn *wsConn) {
	defer c.wg.Done()
	for {
		<-cn.done
		cerr := cn.closeError()
		act := decide(cerr)
		if act == actStop {
			c.shutdown(cerr)
			return
		}
		if !c.requeue(cn, cerr, act == actRefreshToken) {
			return // closed
		}
		next, err := c.establish(c.life, true)
		if err != nil {
			if c.life.Err() == nil {
				c.shutdown(err)
			}
			return
		}
		if !c.open(next, false) {
			return
		}
		cn = next
	}
}

// requeue prepares the client for the next connection after cn ended:
// requests sent on cn and not answered go back in the queue (in the order
// they were made), every subscription gets a subscribe request (with the
// last event id it saw, so the server replays what was missed), and
// pending unsubscribes are done (a new connection has no subscriptions).
// Everything goes ahead of what was queued while cn was dying. The state
// becomes reconnecting (because of cerr) in the same step. It returns false
// if the client is closed.
func (c *Client) requeue(cn *wsConn, cerr *CloseError, refreshToken bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
	}
	if c.closed {
		return false
	}
	if refreshToken {
		c.needToken = c.opts.GetToken != nil
	}
	c.state = StateReconnecting
	c.notifyStateLocked(StateReconnecting, cerr)
	var resend []*request
	for id, r := range c.pending {
		if r.kind == kindUnsubscribe {
			delete(c.pending, id)
			r.resolve(result{})
			continue
		}
		if r.sentOn != cn {
			continue
		}
		r.sentOn = nil
		if r.kind == kindRPC || r.kind == kindRefresh {
			// An RPC method may not be safe to run twice; a refresh is moot
			// (the next handshake carries the new token).
			delete(c.pending, id)
			r.resolve(result{err: ErrConnectionLost})
			continue
		}
		if r.abandoned || (r.background && r.sub != nil && r.sub.getToken != nil) {
			// Abandoned, or a token subscription's, which gets a new token.
			delete(c.pending, id)
			if r.sub != nil && r.sub.req == r {
				r.sub.req = nil
			}
			continue
		}
		resend = append(resend, r)
	}
	sort.Slice(resend, func(i, j int) bool { return resend[i].seq < resend[j].seq })

	subs := make([]*Subscription, 0, len(c.subs))
	for room, s := range c.subs {
		if s.leaving {
			delete(c.subs, room)
			continue
		}
		subs = append(subs, s)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].seq < subs[j].seq })
	items := make([]outItem, 0, len(subs)+len(resend)+len(c.queue))
	for _, s := range subs {
		s.active = false
		if s.getToken != nil {
			c.fetchTokenLocked(s)
		} else if s.req == nil {
			r := c.newRequestLocked(kindSubscribe, s.room)
			r.sub, r.background = s, true
			s.req = r
			c.pending[r.id] = r
			items = append(items, outItem{req: r})
		}
	}
	for _, r := range resend {
		items = append(items, outItem{req: r})
	}
	c.queue = append(items, c.queue...)
	return true
}

// Close closes the connection with 1000 and stops the client: calls that
// are waiting return ErrClosed, queued messages are dropped. Callbacks
// already queued still run; Done is closed after the last. Close may be
// called more than once, also from a callback; it returns once the
// client's network goroutines have ended (bounded by WriteTimeout).
func (c *Client) Close() error {
	c.shutdown(nil)
	c.wg.Wait()
	return nil
}

// shutdown stops the client with err (nil: Close was called).
func (c *Client) shutdown(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	cur := c.cur
	c.cur = nil
	pending := c.pending
	c.pending = make(map[string]*request)
	c.queue = nil
	c.subs = make(map[string]*Subscription)
	c.state = StateClosed
	c.notifyStateLocked(StateClosed, err)
	if err != nil && c.opts.OnError != nil {
		f := c.opts.OnError
		c.disp.push(func() { f(err) })
	}
	c.disp.close()
	c.mu.Unlock()
	c.cancel()
	for _, r := range pending {
		r.resolve(result{err: ErrClosed})
	}
	if cur != nil {
		_ = cur.ws.WriteClose(1000, nil)
	}
}

// notifyStateLocked queues an OnState callback. Queued under c.mu, so the
// callbacks come in the order the changes happened, relative to events too.
func (c *Client) notifyStateLocked(s State, err error) {
	if f := c.opts.OnState; f != nil {
		c.disp.push(func() { f(s, err) })
	}
}

func (c *Client) reportLocked(err error) {
	if f := c.opts.OnError; f != nil {
		c.disp.push(func() { f(err) })
	}
}

// State returns the client's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the client has stopped for good and its last
// callback has returned.
func (c *Client) Done() <-chan struct{} { return c.disp.done }

// Err returns why the client stopped: nil while it runs and after Close;
// a *CloseError for a close code that says not to reconnect; the last
// failure, wrapped, when Options.MaxAttempts was reached or a handshake
// was refused.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// UserID returns the user id the server gave the current (or last)
// connection in connection_established.
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID
}

// ConnectionID returns the server's id for the current (or last)
// connection. It changes with every reconnect.
func (c *Client) ConnectionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connID
}

// newID returns a random UUID (version 4). Publish ids must be unique
// across every client of a server: the server deduplicates re-sent
// publishes of anonymous users by the id alone.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
