package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// The admin dashboard is a static page (web/admin.*) that anyone may load:
// it holds no data. The data flows over the admin socket, /admin/ws, after
// the page proves it may see it in the socket's first message, because a
// browser cannot put an Authorization header on a WebSocket handshake and a
// key in the URL would end up in access logs. The rule is the API's: the
// API key when one is configured; without one, requests from this machine
// only.
//
// Admin socket protocol (JSON text frames):
//
//	page   -> server  {"type":"auth","key":"KEY"}                   first, within 5 s; key "" without a key configured
//	server -> page    {"type":"welcome","data":{node,interval_ms,close_codes}}
//	server -> page    {"type":"snapshot","data":{ts,stats,rooms,rooms_total,draining}}   at once, then every second
//	page   -> server  {"type":"disconnect_user","id":"1","user":"USER"}
//	server -> page    {"type":"result","id":"1","data":{"connections":N}} or {"type":"error","id":"1","data":{code,message}}
//
// A refused page is closed with 4001 (no or wrong key) or 4003 (not allowed
// from where it connects), the reason saying why.

//go:embed web/admin.html web/admin.js web/admin.css
var adminFiles embed.FS

// Admin socket limits.
const (
	// AdminInterval is how often the dashboard gets a snapshot.
	AdminInterval = time.Second
	// adminAuthTimeout bounds the wait for the auth message, so sockets
	// that never authenticate cannot pile up.
	adminAuthTimeout = 5 * time.Second
	// adminMaxSockets caps open admin sockets; dashboards are few and each
	// costs a snapshot a second.
	adminMaxSockets = 32
	// adminReadLimit bounds a page's message: commands are small.
	adminReadLimit = 4 << 10
	// adminPingEvery and adminIdleTimeout detect a vanished page: the
	// server pings, the browser answers, silence longer than the timeout
	// ends the socket.
	adminPingEvery   = 15 * time.Second
	adminIdleTimeout = 45 * time.Second
	adminWriteWait   = 5 * time.Second
	// adminMaxRooms and adminMaxMembers bound a snapshot's room table:
	// the largest rooms first, a few members each.
	adminMaxRooms   = 50
	adminMaxMembers = 25
)

// admin serves the dashboard.
type admin struct {
	ctx   context.Context
	hub   *hub.Hub
	ws    *transport.WSHandler
	log   *slog.Logger
	keyed bool
	key   [sha256.Size]byte
	slots chan struct{}
	every time.Duration // snapshot interval
	wait  time.Duration // for the auth message
	ping  time.Duration // server ping interval
	idle  time.Duration // silence (no pong, no message) that ends a socket
}

// mountAdmin adds /admin (the page and its assets) and /admin/ws to mux.
// The sockets end when ctx ends or the node drains.
func mountAdmin(ctx context.Context, mux *http.ServeMux, h *hub.Hub, ws *transport.WSHandler, apiKey string, log *slog.Logger) {
	a := &admin{ctx: ctx, hub: h, ws: ws, log: log, keyed: apiKey != "", key: sha256.Sum256([]byte(apiKey)),
		slots: make(chan struct{}, adminMaxSockets), every: AdminInterval, wait: adminAuthTimeout,
		ping: adminPingEvery, idle: adminIdleTimeout}
	page := adminFile("web/admin.html", "text/html; charset=utf-8")
	mux.Handle("GET /admin", page)
	mux.Handle("GET /admin/{$}", page)
	mux.Handle("GET /admin/admin.js", adminFile("web/admin.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /admin/admin.css", adminFile("web/admin.css", "text/css; charset=utf-8"))
	mux.Handle("GET /admin/ws", a)
}

// adminFile serves one of the dashboard's files; it is never stored.
func adminFile(name, contentType string) http.Handler {
	return staticFile(adminFiles, name, contentType, "no-store")
}

// ServeHTTP upgrades /admin/ws after the checks a handshake can answer
// with an HTTP status; the key comes in the first message.
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	// A page on another site must not open the dashboard with a
	// visitor's browser (cross-site WebSocket hijacking).
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		writeError(w, http.StatusForbidden, "forbidden", "cross-origin request refused: the admin socket accepts its own page only")
		return
	}
	if a.ws.Draining() {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
		return
	}
	select {
	case a.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "too many admin sockets are open ("+strconv.Itoa(adminMaxSockets)+")")
		return
	}
	s := &adminSocket{a: a, done: make(chan struct{})}
	if !a.keyed {
		s.refused = localRequest(r)
	}
	up := gws.NewUpgrader(s, &gws.ServerOption{
		ReadMaxPayloadSize: adminReadLimit,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   5 * time.Second,
	})
	conn, err := up.Upgrade(w, r)
	if err != nil {
		<-a.slots
		a.log.Debug("admin: upgrade failed", "err", err)
		return
	}
	go conn.ReadLoop()
}

// adminSocket is one dashboard connection. Its handler methods run on the
// read loop's goroutine; the snapshot loop writes from its own (gws
// serialises writes).
type adminSocket struct {
	gws.BuiltinEventHandler
	a       *admin
	refused string      // without a key: why this request may not see the dashboard
	timer   *time.Timer // closes a socket that does not authenticate in time
	mu      sync.Mutex
	authed  bool
	done    chan struct{}
}

func (s *adminSocket) OnOpen(c *gws.Conn) {
	// A timer rather than a read deadline: the page is told why it was
	// closed (a deadline would end the read loop with 1000).
	s.timer = time.AfterFunc(s.a.wait, func() {
		s.mu.Lock()
		authed := s.authed
		s.mu.Unlock()
		if !authed {
			s.close(c, protocol.CloseUnauthorized, "no auth message within "+s.a.wait.String())
		}
	})
}

func (s *adminSocket) OnClose(c *gws.Conn, err error) {
	if s.timer != nil {
		s.timer.Stop()
	}
	close(s.done)
	<-s.a.slots
}

func (s *adminSocket) OnPong(c *gws.Conn, payload []byte) {
	_ = c.SetReadDeadline(time.Now().Add(s.a.idle))
}

// adminRequest is a message from the page.
type adminRequest struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Key  string `json:"key"`
	User string `json:"user"`
}

func (s *adminSocket) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	if m.Opcode != gws.OpcodeText {
		s.close(c, protocol.CloseUnsupportedData, "the admin socket takes JSON text messages")
		return
	}
	req, err := decodeAdminRequest(m.Bytes())
	if err != nil {
		s.close(c, protocol.CloseUnsupportedData, "not a JSON admin message")
		return
	}
	s.mu.Lock()
	authed := s.authed
	s.mu.Unlock()
	if !authed {
		s.auth(c, req)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(s.a.idle))
	switch req.Type {
	case "disconnect_user":
		s.disconnectUser(c, req)
	case "ping":
		s.send(c, adminMessage{Type: "pong", ID: req.ID})
	default:
		s.send(c, adminMessage{Type: "error", ID: req.ID, Data: errData(protocol.ErrUnknownType, "unknown admin message type "+strconv.Quote(req.Type))})
	}
}

// decodeAdminRequest parses one message from the page: a single JSON
// object of adminRequest's fields and nothing else.
func decodeAdminRequest(b []byte) (adminRequest, error) {
	var req adminRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return adminRequest{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return adminRequest{}, errors.New("more than one JSON value")
	}
	return req, nil
}

// refusal decides the first message: 0 to let the page in, else the close
// code and reason. refused is why a key-less server will not show this
// request the dashboard ("" if it may).
func (a *admin) refusal(req adminRequest, refused string) (protocol.CloseCode, string) {
	switch {
	case req.Type != "auth":
		return protocol.CloseUnauthorized, "the first message must be {\"type\":\"auth\",\"key\":...}"
	case a.keyed && req.Key == "":
		return protocol.CloseUnauthorized, "this server has an API key: enter it to see the dashboard"
	case a.keyed:
		sum := sha256.Sum256([]byte(req.Key))
		if subtle.ConstantTimeCompare(sum[:], a.key[:]) != 1 {
			return protocol.CloseUnauthorized, "the API key is not valid"
		}
	case refused != "":
		return protocol.CloseForbidden, truncate(refused, 123)
	}
	return 0, ""
}

// auth checks the first message. Every refusal closes the socket.
func (s *adminSocket) auth(c *gws.Conn, req adminRequest) {
	a := s.a
	if code, reason := a.refusal(req, s.refused); code != 0 {
		s.close(c, code, reason)
		return
	}
	s.mu.Lock()
	s.authed = true
	s.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(a.idle))
	codes := map[string]string{}
	for _, ci := range protocol.CloseCodes() {
		codes[strconv.Itoa(int(ci.Code))] = ci.Name
	}
	// Codes a peer reports but no server sends.
	codes["1005"], codes["1006"] = "no_status", "abnormal_closure"
	s.send(c, adminMessage{Type: "welcome", Data: mustJSON(map[string]any{
		"node": a.hub.NodeID(), "interval_ms": a.every.Milliseconds(), "close_codes": codes,
	})})
	go s.loop(c)
}

// loop sends a snapshot now and then every interval until the socket
// closes, the node drains or ctx ends.
func (s *adminSocket) loop(c *gws.Conn) {
	a := s.a
	t := time.NewTicker(a.every)
	defer t.Stop()
	lastPing := time.Now()
	for {
		if a.ws.Draining() {
			s.close(c, protocol.CloseServiceRestart, "server shutting down")
			return
		}
		if !s.send(c, adminMessage{Type: "snapshot", Data: mustJSON(a.snapshot())}) {
			return
		}
		if time.Since(lastPing) >= a.ping {
			lastPing = time.Now()
			_ = c.SetWriteDeadline(time.Now().Add(adminWriteWait))
			_ = c.WritePing(nil)
		}
		select {
		case <-s.done:
			return
		case <-a.ctx.Done():
			s.close(c, protocol.CloseServiceRestart, "server shutting down")
			return
		case <-t.C:
		}
	}
}

func (s *adminSocket) disconnectUser(c *gws.Conn, req adminRequest) {
	if req.User == "" || len(req.User) > 256 {
		s.send(c, adminMessage{Type: "error", ID: req.ID, Data: errData(protocol.ErrBadRequest, "user must be a user id of 1 to 256 bytes")})
		return
	}
	ctx, cancel := context.WithTimeout(s.a.ctx, 10*time.Second)
	defer cancel()
	n := s.a.hub.UserConnections(req.User)
	if err := s.a.hub.DisconnectUser(ctx, req.User, protocol.NewDisconnect(protocol.CloseKicked, "disconnected by an administrator")); err != nil {
		s.send(c, adminMessage{Type: "error", ID: req.ID, Data: errData(protocol.ErrInternal, err.Error())})
		return
	}
	s.a.log.Info("admin: user disconnected", "user", req.User, "connections", n)
	s.send(c, adminMessage{Type: "result", ID: req.ID, Data: mustJSON(map[string]int{"connections": n})})
}

// adminMessage is a message to the page.
type adminMessage struct {
	Type string          `json:"type"`
	ID   string          `json:"id,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

func (s *adminSocket) send(c *gws.Conn, m adminMessage) bool {
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	_ = c.SetWriteDeadline(time.Now().Add(adminWriteWait))
	return c.WriteMessage(gws.OpcodeText, b) == nil
}

func (s *adminSocket) close(c *gws.Conn, code protocol.CloseCode, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(adminWriteWait))
	_ = c.WriteClose(uint16(code), []byte(reason))
}

// adminSnapshot is what the dashboard shows. Stats is exactly what
// GET /api/stats answers as "node".
type adminSnapshot struct {
	Time       int64       `json:"ts"`
	Stats      hub.Stats   `json:"stats"`
	Rooms      []adminRoom `json:"rooms"`
	RoomsTotal int         `json:"rooms_total"`
	Draining   bool        `json:"draining"`
}

type adminRoom struct {
	Name        string           `json:"name"`
	Members     int              `json:"members"`
	Connections []hub.MemberInfo `json:"connections"`
}

func (a *admin) snapshot() adminSnapshot {
	rooms := a.hub.Rooms()
	slices.SortFunc(rooms, func(x, y hub.RoomInfo) int {
		if c := cmp.Compare(y.Members, x.Members); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	snap := adminSnapshot{Time: time.Now().UnixMilli(), Stats: a.hub.Stats(), RoomsTotal: len(rooms), Rooms: []adminRoom{}, Draining: a.ws.Draining()}
	for _, r := range rooms[:min(len(rooms), adminMaxRooms)] {
		members, ok := a.hub.RoomMembers(r.Name)
		if !ok {
			continue // emptied since Rooms
		}
		slices.SortFunc(members, func(x, y hub.MemberInfo) int {
			return cmp.Or(cmp.Compare(x.UserID, y.UserID), cmp.Compare(x.ConnectionID, y.ConnectionID))
		})
		snap.Rooms = append(snap.Rooms, adminRoom{Name: r.Name, Members: len(members), Connections: members[:min(len(members), adminMaxMembers)]})
	}
	return snap
}

func errData(code, msg string) json.RawMessage {
	return mustJSON(map[string]string{"code": code, "message": msg})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
