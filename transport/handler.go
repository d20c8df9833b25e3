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
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// WSHandler is the WebSocket endpoint (mount it at /ws). Create it with
// NewWSHandler; call Shutdown to drain. It is safe for concurrent use.
type WSHandler struct {
	opts     Options
	hub      *hub.Hub
	meter    hub.Meter
	log      *slog.Logger
	plain    *gws.Upgrader // no subprotocol
	withSub  *gws.Upgrader // selects protocol.Subprotocol
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

// NewWSHandler returns a WebSocket handler feeding opts.Hub. Heartbeats run
// until ctx ends.
func NewWSHandler(ctx context.Context, opts Options) (*WSHandler, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	h := &WSHandler{opts: opts, hub: opts.Hub, meter: opts.Hub.Meter(), log: opts.Logger}
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
	h.plain, h.withSub = mk(nil), mk([]string{protocol.Subprotocol})
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
func (h *WSHandler) Open() int { return int(h.open.Load()) }

// Draining reports whether Shutdown has begun: new handshakes get 503.
func (h *WSHandler) Draining() bool { return h.draining.Load() }

// httpError writes the JSON error body every refusal carries.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ServeHTTP checks the handshake, answering what a client can act on
// (400, 403, 405, 426, 503), and upgrades.
func (h *WSHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		if wait, ok := h.limiter.allow(clientIP(r, h.opts.TrustedProxies), time.Now()); !ok {
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
	if offersSubprotocol(r.Header.Values("Sec-WebSocket-Protocol"), protocol.Subprotocol) {
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
	c.client = h.hub.Connect(c, hub.ConnectOptions{Credentials: creds, RemoteAddr: r.RemoteAddr, Heartbeat: h.opts.HeartbeatInterval, JSONPing: jsonPing, Transport: "websocket"})
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

// ---- connection registry, heartbeats and drain ----

func (h *WSHandler) untrack(c *conn) {
	if h.wheel.remove(c) {
		h.open.Add(-1)
	}
}

// Shutdown stops new handshakes (503) and closes every connection with
// 1012 after what is queued for it, waiting until all are gone or ctx
// ends; then it cuts the rest.
func (h *WSHandler) Shutdown(ctx context.Context) error {
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
