// Package transport carries the hub's protocol over WebSocket: it checks
// and upgrades the HTTP handshake, runs each connection's read loop
// (github.com/lxzan/gws parses and validates frames), writes through a
// bounded per-connection queue that coalesces frames into one writev, and
// keeps connections alive with server pings. It depends on hub, never the
// other way round.
package transport

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Slow-consumer policies: what happens when a connection's queue is full.
const (
	// PolicyDisconnect closes the connection with 4005 (slow_consumer); the
	// client reconnects and recovers what it missed from history.
	PolicyDisconnect = "disconnect"
	// PolicyDropOldest drops the oldest queued messages to make room; the
	// client silently misses them. For feeds where only the latest matters.
	PolicyDropOldest = "drop_oldest"
)

// Subprotocol is the WebSocket subprotocol the server selects when a client
// offers it. Clients may also offer none.
const Subprotocol = "switchboard.v1"

// Options configure a Handler. Zero values take the documented defaults.
type Options struct {
	// Hub receives the connections. Required.
	Hub *hub.Hub
	// Logger gets one line per connect and disconnect, and one per refused
	// handshake (at most 10 a second, then a count). Default: discard.
	Logger *slog.Logger
	// AllowedOrigins lists the browser origins allowed to connect, as host
	// patterns ("app.example.com", "*.example.com", "localhost:3000") or
	// full origins ("https://app.example.com"). "*" allows every origin:
	// you probably want a list instead. Default (empty): same-origin only.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// MaxConnections caps open connections; at the cap the handshake gets
	// 503 with Retry-After. 0 means no cap (the server sets one from the
	// process's open-file limit).
	MaxConnections int
	// MaxMessageSize caps one client message in bytes, after
	// decompression; larger ones close the connection with 1009.
	// Default 65536.
	MaxMessageSize int
	// Compression enables permessage-deflate when a client offers it. Off by
	// default: it costs CPU and memory per connection for little gain on
	// small JSON. When on, the server uses server_no_context_takeover so
	// one compressed frame serves every recipient of a room event.
	Compression bool
	// CompressionThreshold is the smallest message compressed. Default 256.
	CompressionThreshold int
	// HeartbeatInterval is how often the server pings each connection.
	// Default 25 s; allowed 5 s to 120 s.
	HeartbeatInterval time.Duration
	// PongTimeout is how long a pong may take before the connection is
	// closed with 4008. Default 10 s; must be below HeartbeatInterval.
	PongTimeout time.Duration
	// JSONPing sends every connection a {"type":"ping"} text frame with
	// each heartbeat, for clients that cannot see WebSocket pings
	// (browsers) and answer {"type":"pong"} (see jsonping.go). Default off;
	// a connection can turn it on or off with the handshake query
	// parameter json_ping.
	JSONPing bool
	// WriteTimeout bounds one write to a connection. Default 10 s.
	WriteTimeout time.Duration
	// QueueMaxMessages and QueueMaxBytes bound each connection's outbound
	// queue. Defaults 1024 messages and 1 MiB.
	QueueMaxMessages int
	QueueMaxBytes    int
	// SlowConsumerPolicy is PolicyDisconnect (default) or PolicyDropOldest.
	SlowConsumerPolicy string
	// ReadBufferSize is each connection's read buffer; larger messages are
	// read into pooled buffers. Default 1024: idle connections stay small.
	ReadBufferSize int
	// FlushWindow, when positive, holds a connection's first queued frame
	// up to this long before it is written, so that frames queued
	// meanwhile go out in the same write: fewer system calls per message
	// for connections that get many messages per second, for up to this
	// much added latency. Default 0: a frame is written as soon as a flush
	// worker is free, and frames are only coalesced when they pile up on
	// their own. At most 1 s.
	FlushWindow time.Duration

	// Authenticator verifies a token brought by the handshake, looked for
	// in this order: the Authorization: Bearer header (server-to-server
	// clients), the TokenCookie cookie, the `token` query parameter
	// (proxies log URLs: prefer the others). A bad token gets 401 before
	// the upgrade. No token: the hub waits for an `auth` frame.
	Authenticator hub.Authenticator
	// TokenCookie names the cookie that may carry the token. Default
	// "switchboard_token".
	TokenCookie string
	// RequestAuthenticator, if set, authenticates the handshake instead of
	// a token (the connect proxy of auth.ConnectProxy): failure is 401.
	RequestAuthenticator interface {
		AuthenticateRequest(ctx context.Context, r *http.Request) (*hub.Credentials, error)
	}
	// HandshakeRate and HandshakeBurst limit handshakes per client IP (a
	// token bucket): beyond it, 429 with Retry-After. 0 means no limit (the
	// switchboard binary sets 20 per second with a burst of 100).
	HandshakeRate  float64
	HandshakeBurst int
	// TrustedProxies are the proxy addresses (CIDRs) whose
	// X-Forwarded-For header names the client. Without it, the client is
	// the TCP peer, and every client behind a proxy shares one IP.
	TrustedProxies []netip.Prefix
}

// Defaults for Options.
const (
	DefaultMaxMessageSize       = 64 << 10
	DefaultCompressionThreshold = 256
	DefaultHeartbeatInterval    = 25 * time.Second
	DefaultPongTimeout          = 10 * time.Second
	DefaultWriteTimeout         = 10 * time.Second
	DefaultQueueMaxMessages     = 1024
	DefaultQueueMaxBytes        = 1 << 20
	DefaultReadBufferSize       = 1024
)

func (o *Options) fill() error {
	if o.Hub == nil {
		return errors.New("transport: Options.Hub is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&o.CompressionThreshold, DefaultCompressionThreshold)
	setDefault(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&o.PongTimeout, DefaultPongTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.QueueMaxMessages, DefaultQueueMaxMessages)
	setDefault(&o.QueueMaxBytes, DefaultQueueMaxBytes)
	setDefault(&o.ReadBufferSize, DefaultReadBufferSize)
	if o.SlowConsumerPolicy == "" {
		o.SlowConsumerPolicy = PolicyDisconnect
	}
	if o.TokenCookie == "" {
		o.TokenCookie = "switchboard_token"
	}
	if o.HandshakeRate > 0 && o.HandshakeBurst <= 0 {
		o.HandshakeBurst = int(2*o.HandshakeRate) + 1
	}
	switch {
	case o.HeartbeatInterval < 5*time.Second || o.HeartbeatInterval > 120*time.Second:
		return fmt.Errorf("transport: heartbeat interval %s is outside 5s..120s", o.HeartbeatInterval)
	case o.PongTimeout >= o.HeartbeatInterval:
		return fmt.Errorf("transport: pong timeout %s must be shorter than the heartbeat interval %s", o.PongTimeout, o.HeartbeatInterval)
	case o.SlowConsumerPolicy != PolicyDisconnect && o.SlowConsumerPolicy != PolicyDropOldest:
		return fmt.Errorf("transport: slow consumer policy %q is not %q or %q", o.SlowConsumerPolicy, PolicyDisconnect, PolicyDropOldest)
	case o.MaxConnections < 0:
		return fmt.Errorf("transport: max connections %d is negative", o.MaxConnections)
	case o.FlushWindow < 0 || o.FlushWindow > time.Second:
		return fmt.Errorf("transport: flush window %s is outside 0..1s", o.FlushWindow)
	}
	for _, p := range o.AllowedOrigins {
		if p == "" {
			return errors.New("transport: an allowed origin is empty")
		}
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Handler is the WebSocket endpoint (mount it at /ws). Create it with
// NewHandler; call Shutdown to drain. It is safe for concurrent use.
type Handler struct {
	opts     Options
	hub      *hub.Hub
	meter    hub.Meter
	log      *slog.Logger
	plain    *gws.Upgrader // no subprotocol
	withSub  *gws.Upgrader // selects Subprotocol
	deflater *deflater
	open     atomic.Int64
	draining atomic.Bool
	wheel    *wheel
	flushers *flushPool
	window   *flushWindow // nil without Options.FlushWindow
	limiter  *ipLimiter
	refusals *refusalLog
	jsonPing *protocol.Frame // the shared {"type":"ping"} of JSON heartbeats
	// debug logs every inbound message; decided once, as the check is on
	// the per-message path.
	debug bool
}

// NewHandler returns a WebSocket handler feeding opts.Hub. Heartbeats run
// until ctx ends.
func NewHandler(ctx context.Context, opts Options) (*Handler, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	h := &Handler{opts: opts, hub: opts.Hub, meter: opts.Hub.Meter(), log: opts.Logger}
	h.refusals = &refusalLog{log: opts.Logger}
	h.debug = opts.Logger.Enabled(ctx, slog.LevelDebug)
	h.deflater = newDeflater(opts.CompressionThreshold, 1)
	mk := func(subprotocols []string) *gws.Upgrader {
		return gws.NewUpgrader(events{h}, &gws.ServerOption{
			ReadMaxPayloadSize: opts.MaxMessageSize,
			ReadBufferSize:     opts.ReadBufferSize,
			CheckUtf8Enabled:   true,
			HandshakeTimeout:   5 * time.Second,
			SubProtocols:       subprotocols,
			NewSession:         func() gws.SessionStorage { return &session{} },
			Recovery:           recovery(opts.Logger),
			Logger:             gwsLogger{opts.Logger},
			PermessageDeflate: gws.PermessageDeflate{
				Enabled:               opts.Compression,
				ServerContextTakeover: false, // one compressed frame for all recipients
				ClientContextTakeover: false, // no per-connection inflate window
				Threshold:             opts.CompressionThreshold,
			},
		})
	}
	h.plain, h.withSub = mk(nil), mk([]string{Subprotocol})
	if opts.HandshakeRate > 0 {
		h.limiter = newIPLimiter(opts.HandshakeRate, opts.HandshakeBurst)
		go h.limiter.sweep(ctx)
	}
	h.wheel = newWheel(h)
	h.jsonPing = newJSONPingFrame()
	h.flushers = newFlushPool(ctx, runtime.GOMAXPROCS(0), opts.MaxConnections)
	if opts.FlushWindow > 0 {
		h.window = newFlushWindow(opts.FlushWindow, h.flushers)
		go h.window.run(ctx)
	}
	go h.wheel.run(ctx)
	return h, nil
}

// recovery is gws's last line against a panic in its callbacks: it is
// logged and the process lives. Message handling has its own recover that
// also closes the connection with 1011 (events.OnMessage).
func recovery(log *slog.Logger) func(gws.Logger) {
	return func(gws.Logger) {
		if e := recover(); e != nil {
			log.Error("transport: panic in message handler", "panic", fmt.Sprint(e))
		}
	}
}

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error(fmt.Sprint(v...)) }

// Open returns the number of open connections.
func (h *Handler) Open() int { return int(h.open.Load()) }

// Draining reports whether Shutdown has begun: new handshakes get 503.
func (h *Handler) Draining() bool { return h.draining.Load() }

// httpError writes the JSON error body every refusal carries.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ServeHTTP checks the handshake, answering what a client can act on
// (400, 403, 405, 426, 503), and upgrades.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, code, msg := h.check(w, r); status != 0 {
		h.refuse(w, r, status, code, msg)
		return
	}
	// Reserve the slot now: checking Open here and counting the connection
	// after the upgrade let concurrent handshakes overshoot the cap.
	if n := h.open.Add(1); h.opts.MaxConnections > 0 && n > int64(h.opts.MaxConnections) {
		h.open.Add(-1)
		w.Header().Set("Retry-After", "5")
		h.refuse(w, r, http.StatusServiceUnavailable, "connection_limit", "the server is at its connection limit; retry later")
		return
	}
	tracked := false
	defer func() {
		if !tracked { // refused or failed below: give the slot back
			h.open.Add(-1)
		}
	}()
	if h.draining.Load() || h.hub.Closing() {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, r, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down; reconnect to another node")
		return
	}
	if h.limiter != nil {
		if wait, ok := h.limiter.allow(ClientIP(r, h.opts.TrustedProxies), time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			h.refuse(w, r, http.StatusTooManyRequests, "too_many_handshakes", "too many connection attempts from this address; retry later")
			return
		}
	}
	jsonPing, bad := h.jsonPingWanted(r)
	if bad != "" {
		h.refuse(w, r, http.StatusBadRequest, "bad_request", bad)
		return
	}
	creds, status, code, msg := h.authenticate(r)
	if status != 0 {
		h.refuse(w, r, status, code, msg)
		return
	}
	deflate := h.opts.Compression && negotiateDeflate(r.Header)
	// gws reads only the first Sec-WebSocket-Protocol line; an offer sent
	// as several lines would otherwise fail after the hijack (plain 400).
	if vs := r.Header.Values("Sec-WebSocket-Protocol"); len(vs) > 1 {
		r.Header.Set("Sec-WebSocket-Protocol", strings.Join(vs, ", "))
	}
	up := h.plain
	if offersSubprotocol(r.Header.Values("Sec-WebSocket-Protocol"), Subprotocol) {
		up = h.withSub
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		httpError(w, http.StatusInternalServerError, "internal", "connection cannot be upgraded (no hijacker)")
		return
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		h.log.Warn("transport: hijack failed", "err", err)
		return
	}
	c := &conn{t: h, raw: raw, remote: r.RemoteAddr, start: time.Now(), jsonPing: jsonPing}
	c.initFD()
	cc := &countingConn{Conn: raw, c: c, hold: true}
	var rd io.Reader = cc
	if n := brw.Reader.Buffered(); n > 0 { // bytes the client sent right behind the handshake
		early, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(strings.NewReader(string(early)), cc)
	}
	br := bufio.NewReaderSize(newFrameGuard(rd, deflate), h.opts.ReadBufferSize)
	ws, err := up.UpgradeFromConn(cc, br, r)
	if err != nil {
		h.meter.Handshake(http.StatusBadRequest)
		h.log.Debug("transport: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	h.meter.Handshake(http.StatusSwitchingProtocols)
	cc.hold = false
	if cc.held != nil {
		c.queueHandshake(cc.held)
		cc.held = nil
	}
	c.ws = ws
	c.deflate = deflate
	ws.Session().Store("c", c)
	c.lastSeen.Store(time.Now().UnixNano())
	// Connect queues connection_established before the heartbeat wheel
	// knows the connection, so no ping can go out ahead of it.
	c.client = h.hub.Connect(c, hub.ConnInfo{Credentials: creds, RemoteAddr: r.RemoteAddr, Heartbeat: h.opts.HeartbeatInterval, JSONPing: jsonPing})
	c.kick()       // the 101 answer, if the hub queued nothing behind it
	h.wheel.add(c) // counted in open since the reservation above
	tracked = true
	h.log.Info("connect", "conn", c.client.ID(), "user", c.client.UserID(), "remote", c.remote,
		"subprotocol", ws.SubProtocol(), "compression", c.deflate)
	// Shutdown sets draining and then closes what the wheel holds: a
	// connection added meanwhile was not among them.
	if h.draining.Load() {
		c.Close(protocol.NewDisconnect(protocol.CloseServiceRestart, "server shutting down"))
	}
	go ws.ReadLoop()
}

// authenticate applies the handshake authentication of Options. A nil
// result with status 0 means "no credentials yet".
func (h *Handler) authenticate(r *http.Request) (*hub.Credentials, int, string, string) {
	var creds *hub.Credentials
	var err error
	switch {
	case h.opts.RequestAuthenticator != nil:
		creds, err = h.opts.RequestAuthenticator.AuthenticateRequest(r.Context(), r)
		if err == nil && (creds == nil || creds.UserID == "") {
			err = errors.New("no user")
		}
	case h.opts.Authenticator != nil:
		token := HandshakeToken(r, h.opts.TokenCookie)
		if token == "" {
			return nil, 0, "", ""
		}
		creds, err = h.opts.Authenticator.Authenticate(r.Context(), token)
		if err == nil && (creds == nil || creds.UserID == "") {
			err = errors.New("token has no user")
		}
	default:
		return nil, 0, "", ""
	}
	if err != nil {
		return nil, http.StatusUnauthorized, "unauthorized", "authentication failed: " + err.Error()
	}
	if h.hub.Banned(creds.UserID) {
		return nil, http.StatusForbidden, "banned", "this user is banned"
	}
	return creds, 0, "", ""
}

// HandshakeToken finds a token in r: the Authorization: Bearer header, then
// the cookie, then the token query parameter.
func HandshakeToken(r *http.Request, cookie string) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return r.URL.Query().Get("token")
}

// check validates the handshake before anything is hijacked.
func (h *Handler) check(w http.ResponseWriter, r *http.Request) (int, string, string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, "method_not_allowed", "a WebSocket handshake is a GET request"
	}
	if !r.ProtoAtLeast(1, 1) { // RFC 6455 4.1: HTTP/1.1 or higher
		return http.StatusBadRequest, "bad_handshake", "a WebSocket handshake needs HTTP/1.1, not " + r.Proto
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return http.StatusBadRequest, "bad_handshake", "missing \"Connection: Upgrade\" header"
	}
	// Exactly "websocket", as the upgrader requires: a token list would pass
	// here and then be refused by gws in plain text after the hijack.
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket") {
		return http.StatusBadRequest, "bad_handshake", "missing \"Upgrade: websocket\" header"
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, "unsupported_version", "Sec-WebSocket-Version must be 13"
	}
	if !validKey(r.Header.Get("Sec-WebSocket-Key")) {
		return http.StatusBadRequest, "bad_handshake", "Sec-WebSocket-Key must be 16 random bytes in base64"
	}
	if !h.originAllowed(r) {
		return http.StatusForbidden, "origin_not_allowed", "origin " + strconv.Quote(r.Header.Get("Origin")) + " is not allowed to connect"
	}
	return 0, "", ""
}

// validKey reports whether k is base64 of 16 bytes (RFC 6455 4.1).
func validKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// headerHasToken reports whether a comma-separated header has token
// (case-insensitive), as in "Connection: keep-alive, Upgrade".
func headerHasToken(hd http.Header, name, token string) bool {
	for _, v := range hd.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func offersSubprotocol(values []string, want string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == want {
				return true
			}
		}
	}
	return false
}

// originAllowed applies AllowedOrigins; see Options.
func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: Origin protects browsers' users only
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.opts.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	return MatchOrigin(h.opts.AllowedOrigins, u)
}

// MatchOrigin reports whether origin u matches one of patterns (see
// Options.AllowedOrigins).
func MatchOrigin(patterns []string, u *url.URL) bool {
	full := strings.ToLower(u.Scheme + "://" + u.Host)
	host := strings.ToLower(u.Host)
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "*" {
			return true
		}
		target := host
		if strings.Contains(p, "://") {
			target = full
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}

// ---- connection registry, heartbeats and drain ----

func (h *Handler) untrack(c *conn) {
	if h.wheel.remove(c) {
		h.open.Add(-1)
	}
}

// Shutdown stops new handshakes (503) and closes every connection with
// 1012 after what is queued for it, waiting until all are gone or ctx
// ends; then it cuts the rest.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.draining.Store(true)
	d := protocol.NewDisconnect(protocol.CloseServiceRestart, "server shutting down")
	for _, c := range h.wheel.all() {
		c.Close(d)
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.open.Load() > 0 {
		select {
		case <-ctx.Done():
			for _, c := range h.wheel.all() {
				_ = c.closeRaw()
			}
			return fmt.Errorf("transport: %d connections still open at the drain deadline: %w", h.open.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// wheel pings connections and finds the dead ones without a timer per
// connection: connections are spread over one slot per second of the
// heartbeat interval; each second one slot is pinged, and the slot pinged
// PongTimeout ago is checked for connections that have not been heard from
// since.
type wheel struct {
	h     *Handler
	mu    sync.Mutex
	slots []map[*conn]struct{}
	next  int
}

func newWheel(h *Handler) *wheel {
	n := int(h.opts.HeartbeatInterval / time.Second)
	w := &wheel{h: h, slots: make([]map[*conn]struct{}, n)}
	for i := range w.slots {
		w.slots[i] = make(map[*conn]struct{})
	}
	return w
}

func (w *wheel) add(c *conn) {
	w.mu.Lock()
	c.slot = w.next
	w.next = (w.next + 1) % len(w.slots)
	w.slots[c.slot][c] = struct{}{}
	w.mu.Unlock()
}

func (w *wheel) remove(c *conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.slots[c.slot][c]; !ok {
		return false
	}
	delete(w.slots[c.slot], c)
	return true
}

func (w *wheel) all() []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*conn
	for _, s := range w.slots {
		for c := range s {
			out = append(out, c)
		}
	}
	return out
}

func (w *wheel) slot(i int) []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.slots[i%len(w.slots)]
	out := make([]*conn, 0, len(s))
	for c := range s {
		out = append(out, c)
	}
	return out
}

func (w *wheel) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := len(w.slots)
	lag := int((w.h.opts.PongTimeout + time.Second - 1) / time.Second)
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		// Check the slot pinged lag seconds ago: silence since that ping
		// means the pong did not come in time.
		for _, c := range w.slot((tick - lag + n*lag) % n) {
			if sent := c.pingSent.Load(); sent != 0 && c.lastSeen.Load() < sent {
				c.closeWith(protocol.NewDisconnect(protocol.CloseHeartbeatTimeout, "no pong within the pong timeout"), true)
			}
		}
		deadline := now.Add(w.h.opts.HeartbeatInterval + w.h.opts.PongTimeout + 5*time.Second)
		for _, c := range w.slot(tick % n) {
			c.pingSent.Store(now.UnixNano())
			c.enqueue(item{raw: pingFrame})
			if c.jsonPing {
				c.Send(w.h.jsonPing)
			}
			// Backstop: a read deadline a little past the pong timeout
			// finds a half-open connection even if this wheel stalls.
			_ = c.raw.SetReadDeadline(deadline)
		}
	}
}
