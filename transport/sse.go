package transport

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// slotSSE is the protocol.Frame wire slot holding a frame's SSE event.
const slotSSE = 2

// SSEOptions configure an SSEHandler. Zero values take the defaults.
type SSEOptions struct {
	// Retry is the reconnect delay the stream announces to EventSource
	// (the `retry:` field). Default 2 s.
	Retry time.Duration
}

// DefaultSSERetry is the default SSEOptions.Retry.
const DefaultSSERetry = 2 * time.Second

// SSEHandler is the one-way Server-Sent Events endpoint (mount it at GET
// /sse). It shares its WSHandler's options: authentication, allowed
// origins, handshake rate limit, connection cap, heartbeat interval,
// write timeout, queue bounds and slow-consumer policy. The hub sees each
// stream as one more client, subscribed to the rooms of the query by the
// same subscribe path a WebSocket `subscribe` takes (permissions,
// subscription tokens, history replay, `recovered`).
type SSEHandler struct {
	h     *WSHandler
	retry time.Duration
	open  atomic.Int64
	emu   atomic.Int64 // open emulation streams (emulation.go)
}

// NewSSEHandler returns the SSE endpoint of h.
func NewSSEHandler(h *WSHandler, opts SSEOptions) *SSEHandler {
	if opts.Retry <= 0 {
		opts.Retry = DefaultSSERetry
	}
	return &SSEHandler{h: h, retry: opts.Retry}
}

// Open returns the number of open SSE streams.
func (s *SSEHandler) Open() int { return int(s.open.Load()) }

// sseRequest is a parsed, valid SSE request.
type sseRequest struct {
	rooms     []string
	since     []string // per room: the event id to recover from, or ""
	subTokens []string // per room, or nil
}

// parseSSERequest reads the rooms (`room`, repeated or comma-separated;
// without any, those the connection token lists), their subscription
// tokens (`sub_token`, one per room) and the position to resume from (the
// Last-Event-ID header, else the `last_event_id` query parameter).
func parseSSERequest(r *http.Request, creds *hub.Credentials) (*sseRequest, *protocol.Error) {
	q := r.URL.Query()
	req := &sseRequest{}
	names := q["room"]
	if len(names) == 0 && creds != nil {
		// A signed subscription: the token's rooms claim.
		names = []string{strings.Join(creds.Rooms, ",")}
	}
	seen := map[string]bool{}
	for _, v := range names {
		if v == "" && len(q["room"]) == 0 {
			continue
		}
		for _, name := range strings.Split(v, ",") {
			if e := protocol.ValidateRoom(name); e != nil {
				return nil, e
			}
			if seen[name] {
				return nil, protocol.Errorf(protocol.ErrBadRequest, "", "room %q is given twice", name)
			}
			seen[name] = true
			req.rooms = append(req.rooms, name)
		}
	}
	if len(req.rooms) == 0 {
		return nil, protocol.Errorf(protocol.ErrBadRequest, "", "name at least one room: /sse?room=NAME (repeat room, or separate names with commas), or bring a token whose rooms claim lists them")
	}
	if t := q["sub_token"]; len(t) > 0 {
		if len(t) != len(req.rooms) {
			return nil, protocol.Errorf(protocol.ErrBadRequest, "", "%d sub_token values for %d rooms: give one per room, in the rooms' order", len(t), len(req.rooms))
		}
		req.subTokens = t
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("last_event_id")
	}
	req.since = make([]string, len(req.rooms))
	if last != "" {
		parts := strings.Split(last, ",")
		if len(parts) != len(req.rooms) {
			return nil, protocol.Errorf(protocol.ErrBadRequest, "", "last event id %q has %d positions for %d rooms", last, len(parts), len(req.rooms))
		}
		for i, p := range parts {
			if _, ok := protocol.ParseEventID(p); p != "" && !ok {
				return nil, protocol.Errorf(protocol.ErrBadRequest, "", "last event id %q is not an event id (EPOCH-OFFSET)", p)
			}
			req.since[i] = p
		}
	}
	return req, nil
}

// admit runs the checks the HTTP streams (/sse, /emulation/stream) share
// with the WebSocket handshake: method, origin (and CORS headers for an
// allowed cross-origin request), the connection cap, draining, the
// handshake rate limit and authentication. A refusal is answered and ok
// is false; otherwise the stream is counted in open, which the caller
// decrements when it ends.
func (s *SSEHandler) admit(w http.ResponseWriter, r *http.Request, open *atomic.Int64, notGet string) (creds *hub.Credentials, ok bool) {
	h := s.h
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.meter.Handshake(http.StatusMethodNotAllowed)
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", notGet)
		return nil, false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.originAllowed(r) {
			h.meter.Handshake(http.StatusForbidden)
			httpError(w, http.StatusForbidden, "origin_not_allowed", "origin "+strconv.Quote(origin)+" is not allowed to connect")
			return nil, false
		}
		// A cross-origin EventSource (withCredentials for the cookie).
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Add("Vary", "Origin")
	}
	// The cap counts WebSocket, SSE and emulated connections together.
	open.Add(1)
	if h.opts.MaxConnections > 0 && s.open.Load()+s.emu.Load()+h.open.Load() > int64(h.opts.MaxConnections) {
		open.Add(-1)
		h.meter.Handshake(http.StatusServiceUnavailable)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "connection_limit", "the server is at its connection limit; retry later")
		return nil, false
	}
	refuse := func(status int, code, msg string) (*hub.Credentials, bool) {
		open.Add(-1)
		h.meter.Handshake(status)
		httpError(w, status, code, msg)
		return nil, false
	}
	if h.draining.Load() || h.hub.Closing() {
		w.Header().Set("Retry-After", "1")
		return refuse(http.StatusServiceUnavailable, "shutting_down", "the server is shutting down; reconnect to another node")
	}
	if h.limiter != nil {
		if wait, ok := h.limiter.allow(clientIP(r, h.opts.TrustedProxies), time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			return refuse(http.StatusTooManyRequests, "too_many_handshakes", "too many connection attempts from this address; retry later")
		}
	}
	creds, status, code, msg := h.authenticate(r)
	if status != 0 {
		return refuse(status, code, msg)
	}
	return creds, true
}

// ServeHTTP checks the request and authentication (answering 4xx/503 with
// a JSON body, as the WebSocket handshake does), subscribes the rooms,
// and if every subscription is accepted streams events until the client
// goes away or the hub closes the connection.
func (s *SSEHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.h
	creds, ok := s.admit(w, r, &s.open, "an SSE stream is a GET request")
	if !ok {
		return
	}
	defer s.open.Add(-1)
	req, perr := parseSSERequest(r, creds)
	if perr != nil {
		h.meter.Handshake(http.StatusBadRequest)
		httpError(w, http.StatusBadRequest, perr.Code, perr.Message)
		return
	}

	c := &sseConn{s: s, wake: make(chan struct{}, 1), rooms: req.rooms}
	if len(req.rooms) > 1 {
		c.pos = append([]string(nil), req.since...)
	}
	c.client = h.hub.Connect(c, hub.ConnectOptions{Credentials: creds, RemoteAddr: r.RemoteAddr, Heartbeat: h.opts.HeartbeatInterval, Transport: "sse"})
	defer c.client.Gone()
	for i, room := range req.rooms {
		env := &protocol.Envelope{Type: protocol.TypeSubscribe, ID: sseRef(i), Room: room, LastEventID: req.since[i]}
		if req.subTokens != nil {
			env.Data = protocol.EncodeData(protocol.SubscribeData{Token: req.subTokens[i]})
		}
		c.client.HandleMessage(protocol.Encode(env))
	}
	// Every subscribe has been answered (HandleMessage is synchronous): a
	// refusal, or a close (no auth, banned), becomes the HTTP answer.
	c.serve(w, r, "text/event-stream", "sse")
}

// serve answers what the hub queued while the stream was set up, if that
// is a refusal, and otherwise streams: the part of a stream's life both
// /sse and /emulation/stream share. name is the transport in logs.
func (c *sseConn) serve(w http.ResponseWriter, r *http.Request, contentType, name string) {
	h := c.s.h
	if status, code, msg := c.refusal(); status != 0 {
		h.meter.Handshake(status)
		httpError(w, status, code, msg)
		return
	}
	h.meter.Handshake(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the server's ReadTimeout must not end the stream
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Cache-Control", "no-cache, no-transform")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer this response
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	h.log.Info("connect", "conn", c.client.ID(), "user", c.client.UserID(), "remote", r.RemoteAddr, "transport", name)
	code, reason := c.stream(w, rc, r)
	h.meter.Closed(code)
	h.log.Info("disconnect", "conn", c.client.ID(), "code", int(code), "reason", reason, "transport", name)
}

func sseRef(i int) string { return "sse-" + strconv.Itoa(i) }

// sseConn is one SSE stream as the hub sees it. It implements hub.Sink:
// frames queue (bounded like a WebSocket connection's queue, with the same
// slow-consumer policy) and the request's goroutine writes them.
type sseConn struct {
	s      *SSEHandler
	client *hub.Client
	format streamFormat  // /sse's events, or an emulation stream's (emulation.go)
	wake   chan struct{} // capacity 1: "the queue has something"
	rooms  []string      // the request's rooms, in order
	pos    []string      // per room, the last position sent; only with several rooms
	// deadlineSet is when the write deadline was last moved; only the
	// writing goroutine uses it.
	deadlineSet time.Time

	mu      sync.Mutex
	queue   []*protocol.Frame
	spare   []*protocol.Frame
	qbytes  int
	closing bool
	closeD  protocol.Disconnect
}

// sseSize is what a queued frame counts against QueueMaxBytes: its JSON
// and about its SSE fields.
func sseSize(f *protocol.Frame) int { return len(f.JSON) + 16 }

// Send implements hub.Sink.
func (c *sseConn) Send(f *protocol.Frame) bool {
	o := &c.s.h.opts
	size := sseSize(f)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	q, qbytes, dropped, ok := makeRoom(o, c.queue, c.qbytes, size, sseSize)
	if !ok {
		c.mu.Unlock()
		c.s.h.meter.SlowConsumer()
		c.closeWith(protocol.NewDisconnect(protocol.CloseSlowConsumer, "outbound queue full"), true)
		return false
	}
	if dropped > 0 {
		c.queue, c.qbytes = q, qbytes
		c.s.h.meter.QueueDrop(dropped)
	}
	c.queue = append(c.queue, f)
	c.qbytes += size
	c.mu.Unlock()
	c.signal()
	return true
}

// Close implements hub.Sink: a `disconnect` event after what is queued,
// then the response ends.
func (c *sseConn) Close(d protocol.Disconnect) { c.closeWith(d, false) }

func (c *sseConn) closeWith(d protocol.Disconnect, discard bool) {
	ev := protocol.NewFrame(protocol.Encode(&protocol.Envelope{Type: protocol.TypeDisconnect, Data: protocol.EncodeData(d)}))
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.closeD = true, d
	if discard { // a slow consumer recovers from history instead
		clear(c.queue)
		c.queue, c.qbytes = c.queue[:0], 0
	}
	c.queue = append(c.queue, ev)
	c.mu.Unlock()
	c.signal()
}

func (c *sseConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// refusal looks at what the hub queued while the stream was set up: a
// close, or an `error` answering one of the subscribes, is the request's
// HTTP answer (status, code, message); status 0 means stream.
func (c *sseConn) refusal() (int, string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		d := c.closeD
		switch d.Code {
		case protocol.CloseUnauthorized:
			return http.StatusUnauthorized, "unauthorized", "authentication failed: " + d.Reason + " (send the token in the Authorization header, the cookie or the token query parameter)"
		case protocol.CloseBanned, protocol.CloseForbidden:
			return http.StatusForbidden, d.Code.String(), d.Reason
		default:
			return http.StatusServiceUnavailable, d.Code.String(), d.Reason
		}
	}
	for _, f := range c.queue {
		if !bytes.HasPrefix(f.JSON, []byte(`{"type":"error"`)) {
			continue
		}
		var env struct {
			ID   string         `json:"id"`
			Data protocol.Error `json:"data"`
		}
		if json.Unmarshal(f.JSON, &env) != nil || !strings.HasPrefix(env.ID, "sse-") {
			continue
		}
		switch env.Data.Code {
		case protocol.ErrForbidden:
			return http.StatusForbidden, env.Data.Code, env.Data.Message
		case protocol.ErrInternal:
			return http.StatusServiceUnavailable, env.Data.Code, env.Data.Message
		default:
			return http.StatusBadRequest, env.Data.Code, env.Data.Message
		}
	}
	return 0, "", ""
}

var sseHeartbeat = []byte(": heartbeat\n\n")

// stream writes queued frames until the hub closes the connection, the
// client goes away or a write fails. It returns the close code for
// metrics and logs.
func (c *sseConn) stream(w http.ResponseWriter, rc *http.ResponseController, r *http.Request) (protocol.CloseCode, string) {
	h := c.s.h
	if err := c.write(w, rc, c.prelude()); err != nil {
		return protocol.CloseGoingAway, err.Error()
	}
	hb := time.NewTicker(h.opts.HeartbeatInterval)
	defer hb.Stop()
	var batch []*protocol.Frame
	var idBuf []byte
	for {
		select {
		case <-r.Context().Done():
			return protocol.CloseGoingAway, "client went away"
		case <-hb.C:
			if err := c.write(w, rc, c.heartbeat()); err != nil {
				return protocol.CloseGoingAway, err.Error()
			}
			continue
		case <-c.wake:
		}
		c.mu.Lock()
		batch, c.queue, c.spare = c.queue, c.spare[:0], nil
		c.qbytes = 0
		closing, d := c.closing, c.closeD
		c.mu.Unlock()
		c.deadline(rc)
		n := 0
		var err error
		for i, f := range batch {
			var k int
			k, idBuf, err = c.writeFrame(w, f, idBuf)
			n += k
			batch[i] = nil
			if err != nil {
				break
			}
		}
		c.mu.Lock()
		if c.spare == nil {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
		if err == nil {
			err = rc.Flush()
		}
		h.meter.Written(n, 1)
		if err != nil {
			return protocol.CloseGoingAway, "write failed: " + err.Error()
		}
		if closing {
			return d.Code, d.Reason
		}
	}
}

// deadline bounds the coming write by about WriteTimeout. Moving the
// deadline is a timer update in the runtime's poller, so it is moved only
// when a tenth of the timeout has passed since it was last set: a write
// then gets at least 90% of WriteTimeout, at one update per tenth of it
// instead of one per batch.
func (c *sseConn) deadline(rc *http.ResponseController) {
	now := time.Now()
	wt := c.s.h.opts.WriteTimeout
	if now.Sub(c.deadlineSet) < wt/10 {
		return
	}
	c.deadlineSet = now
	_ = rc.SetWriteDeadline(now.Add(wt))
}

func (c *sseConn) write(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	c.deadline(rc)
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// writeFrame writes f's SSE event. With one room the cached event (shared
// by every recipient) is written as is; with several, its id line is
// replaced by the stream's composite position, one per room.
func (c *sseConn) writeFrame(w http.ResponseWriter, f *protocol.Frame, idBuf []byte) (int, []byte, error) {
	if c.format != formatEvents { // emulation: each frame as it is
		n, err := w.Write(c.emulationWire(f))
		return n, idBuf, err
	}
	ev := f.Wire(slotSSE, sseEvent)
	if bytes.HasPrefix(f.JSON, []byte(`{"type":"subscribed"`)) {
		return c.writeSubscribed(w, f, ev, idBuf)
	}
	if c.pos == nil || !bytes.HasPrefix(ev, []byte("id: ")) {
		n, err := w.Write(ev)
		return n, idBuf, err
	}
	nl := bytes.IndexByte(ev, '\n')
	i := c.roomIndex(frameRoom(f.JSON))
	if i < 0 {
		n, err := w.Write(ev)
		return n, idBuf, err
	}
	c.pos[i] = string(ev[4:nl])
	idBuf = c.appendPositions(idBuf[:0])
	n, err := w.Write(idBuf)
	if err != nil {
		return n, idBuf, err
	}
	m, err := w.Write(ev[nl+1:])
	return n + m, idBuf, err
}

// writeSubscribed writes a `subscribed` answer with the room's position as
// its id, so a stream that drops before any event still resumes from
// where it began. Not when events were replayed: the client's position is
// then the replay's, set by those events.
func (c *sseConn) writeSubscribed(w http.ResponseWriter, f *protocol.Frame, ev, idBuf []byte) (int, []byte, error) {
	var env struct {
		ID   string                  `json:"id"`
		Data protocol.SubscribedData `json:"data"`
	}
	if json.Unmarshal(f.JSON, &env) != nil || env.Data.Replayed > 0 || env.Data.Position == "" {
		n, err := w.Write(ev)
		return n, idBuf, err
	}
	idBuf = idBuf[:0]
	if c.pos == nil {
		idBuf = append(append(append(idBuf, "id: "...), env.Data.Position...), '\n')
	} else {
		i, err := strconv.Atoi(strings.TrimPrefix(env.ID, "sse-"))
		if err != nil || i < 0 || i >= len(c.pos) {
			n, err := w.Write(ev)
			return n, idBuf, err
		}
		c.pos[i] = env.Data.Position
		idBuf = c.appendPositions(idBuf)
	}
	n, err := w.Write(idBuf)
	if err != nil {
		return n, idBuf, err
	}
	m, err := w.Write(ev)
	return n + m, idBuf, err
}

func (c *sseConn) appendPositions(b []byte) []byte {
	b = append(b, "id: "...)
	for i, p := range c.pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return append(b, '\n')
}

// roomIndex is the position of room in the request's rooms.
func (c *sseConn) roomIndex(room string) int {
	if room == "" {
		return -1
	}
	for i, r := range c.rooms {
		if r == room {
			return i
		}
	}
	return -1
}

// sseEvent builds the SSE form of an encoded envelope: `id:` for a room
// event (its EPOCH-OFFSET), `event:` with the envelope type unless it is
// "message" (so EventSource.onmessage gets those), and `data:` with the
// envelope JSON. Line breaks in the JSON can only be whitespace between
// tokens (JSON strings escape them) and are dropped, so data is one line.
func sseEvent(js []byte) []byte {
	typ, id := frameTypeID(js)
	b := make([]byte, 0, len(js)+len(typ)+len(id)+24)
	if id != "" && !protocol.IsReserved(typ) {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	if typ != protocol.TypeMessage && typ != "" {
		b = append(append(append(b, "event: "...), typ...), '\n')
	}
	b = append(b, "data: "...)
	if bytes.ContainsAny(js, "\r\n") {
		for _, ch := range js {
			if ch != '\r' && ch != '\n' {
				b = append(b, ch)
			}
		}
	} else {
		b = append(b, js...)
	}
	return append(b, "\n\n"...)
}

// frameTypeID reads the type and id of an encoded envelope, which start
// every envelope the server encodes ({"type":...,"id":...}). A type that
// would need unescaping is decoded and stripped of line breaks.
func frameTypeID(js []byte) (typ, id string) {
	rest, ok := bytes.CutPrefix(js, []byte(`{"type":`))
	if !ok {
		return "", ""
	}
	typ, rest = jsonString(rest)
	typ = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, typ)
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"id":`)); ok {
		id, _ = jsonString(rest)
	}
	return typ, id
}

// jsonString reads the JSON string at the start of b and returns it
// decoded, and what follows it.
func jsonString(b []byte) (string, []byte) {
	if len(b) < 2 || b[0] != '"' {
		return "", b
	}
	esc := false
	for i := 1; i < len(b); i++ {
		switch {
		case esc:
			esc = false
		case b[i] == '\\':
			esc = true
		case b[i] == '"':
			raw := b[:i+1]
			if bytes.IndexByte(raw, '\\') < 0 {
				return string(raw[1:i]), b[i+1:]
			}
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return "", b[i+1:]
			}
			return s, b[i+1:]
		}
	}
	return "", b
}

// frameRoom reads the top-level room of an encoded room event: its
// `,"room":` comes before any data, and cannot occur inside the type or
// id strings (their quotes are escaped).
func frameRoom(js []byte) string {
	i := bytes.Index(js, []byte(`,"room":`))
	if i < 0 {
		return ""
	}
	room, _ := jsonString(js[i+len(`,"room":`):])
	return room
}
