package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
)

// waitTimeout bounds every wait for a message.
const waitTimeout = 15 * time.Second

// msg is one server message as a client sees it.
type msg struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Room   string          `json:"room"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data"`
	TS     int64           `json:"ts"`
	at     time.Time       // when it was read
}

// isRoomEvent reports whether m is an application event of room (not an
// answer, error or join/leave notice).
func (m msg) isRoomEvent(room string) bool {
	return m.Room == room && m.ID != "" && !protocol.IsReserved(m.Type)
}

// seqData is the data of the numbered events the tests publish.
type seqData struct {
	Pub string `json:"pub,omitempty"` // the publisher, when several publish
	N   int    `json:"n"`
}

func (m msg) seq(tb testing.TB) seqData {
	tb.Helper()
	var d seqData
	if err := json.Unmarshal(m.Data, &d); err != nil {
		tb.Fatalf("event %s: data %s is not {pub, n}: %v", m.ID, m.Data, err)
	}
	return d
}

// wsConn is a test client over gorilla/websocket (a client we did not
// write) that records everything the server sends.
type wsConn struct {
	t     testing.TB
	ws    *websocket.Conn
	hello msg // connection_established
	reqs  atomic.Int64

	wmu sync.Mutex // serialises writes

	mu        sync.Mutex
	msgs      []msg
	wake      chan struct{} // closed and replaced whenever msgs or the state change
	closed    bool
	closeCode int // 0 when the connection ended without a close frame
}

// dialOptions are the less common handshake settings.
type dialOptions struct {
	token   string // JWT, sent as Authorization: Bearer
	localIP string // source address (127.0.0.x) for the TCP connection
}

// dialWS connects to a Switchboard WebSocket URL and waits for
// connection_established. The connection is closed when the test ends.
func dialWS(tb testing.TB, u string, o dialOptions) (*wsConn, *http.Response, error) {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if o.localIP != "" {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.localIP)}, Timeout: 5 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	hdr := http.Header{}
	if o.token != "" {
		hdr.Set("Authorization", "Bearer "+o.token)
	}
	ws, resp, err := d.Dial(u, hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &wsConn{t: tb, ws: ws, wake: make(chan struct{})}
	go c.readLoop()
	tb.Cleanup(c.close)
	hello, ok := c.waitMsg(waitTimeout, func(m msg) bool { return m.Type == "connection_established" })
	if !ok {
		c.close()
		return nil, resp, fmt.Errorf("no connection_established from %s within %s (got %v)", u, waitTimeout, c.all())
	}
	c.hello = hello
	return c, resp, nil
}

func mustDial(tb testing.TB, u string, o dialOptions) *wsConn {
	tb.Helper()
	c, resp, err := dialWS(tb, u, o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	return c
}

// node returns the id of the node the connection is on.
func (c *wsConn) node() string {
	var d struct {
		Node string `json:"node"`
	}
	_ = json.Unmarshal(c.hello.Data, &d)
	return d.Node
}

func (c *wsConn) connID() string {
	var d struct {
		ConnectionID string `json:"connection_id"`
	}
	_ = json.Unmarshal(c.hello.Data, &d)
	return d.ConnectionID
}

func (c *wsConn) readLoop() {
	for {
		_, b, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.closed = true
			if ce, ok := err.(*websocket.CloseError); ok {
				c.closeCode = ce.Code
			}
			close(c.wake)
			c.mu.Unlock()
			return
		}
		var m msg
		if jerr := json.Unmarshal(b, &m); jerr != nil {
			m = msg{Type: "!unparsable", Data: json.RawMessage(strconv.Quote(string(b)))}
		}
		m.at = time.Now()
		c.msgs = append(c.msgs, m)
		close(c.wake)
		c.wake = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *wsConn) close() {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
}

// send writes v as a JSON text frame.
func (c *wsConn) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *wsConn) mustSend(v any) {
	c.t.Helper()
	if err := c.send(v); err != nil {
		c.t.Fatalf("send to node %s: %v", c.node(), err)
	}
}

// all returns a copy of every message received so far.
func (c *wsConn) all() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

// state returns the messages, whether the connection ended and its close
// code, and a channel closed at the next change.
func (c *wsConn) state() ([]msg, bool, int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs, c.closed, c.closeCode, c.wake
}

// waitUntil waits until cond holds for the messages received so far (and
// whether the connection has ended), or d passes.
func (c *wsConn) waitUntil(d time.Duration, cond func(msgs []msg, closed bool) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		msgs, closed, _, wake := c.state()
		if cond(msgs, closed) {
			return true
		}
		if closed {
			return cond(msgs, closed)
		}
		select {
		case <-wake:
		case <-deadline.C:
			msgs, closed, _, _ = c.state()
			return cond(msgs, closed)
		}
	}
}

// waitMsg waits for the first message that matches.
func (c *wsConn) waitMsg(d time.Duration, match func(msg) bool) (msg, bool) {
	var found msg
	ok := c.waitUntil(d, func(msgs []msg, _ bool) bool {
		for _, m := range msgs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found, ok
}

// request sends a request of type typ with a fresh id and returns the
// server's answer to it (a reply or an error), failing the test if none
// comes.
func (c *wsConn) request(typ, room string, data any) msg {
	c.t.Helper()
	id := "req_" + strconv.FormatInt(c.reqs.Add(1), 10)
	env := map[string]any{"type": typ, "id": id}
	if room != "" {
		env["room"] = room
	}
	if data != nil {
		env["data"] = data
	}
	return c.requestEnv(id, env)
}

func (c *wsConn) requestEnv(id string, env map[string]any) msg {
	c.t.Helper()
	c.mustSend(env)
	m, ok := c.waitMsg(waitTimeout, func(m msg) bool { return m.ID == id && protocol.IsReserved(m.Type) })
	if !ok {
		c.t.Fatalf("node %s: no answer to %v within %s; got %v", c.node(), env, waitTimeout, c.all())
	}
	return m
}

// subscribe joins room; with last, it asks for the events after that id.
func (c *wsConn) subscribe(room, last string) subscribed {
	c.t.Helper()
	id := "req_" + strconv.FormatInt(c.reqs.Add(1), 10)
	env := map[string]any{"type": "subscribe", "id": id, "room": room}
	if last != "" {
		env["last_event_id"] = last
	}
	m := c.requestEnv(id, env)
	if m.Type != "subscribed" {
		c.t.Fatalf("node %s: subscribe to %s answered %s %s", c.node(), room, m.Type, m.Data)
	}
	var s subscribed
	if err := json.Unmarshal(m.Data, &s); err != nil {
		c.t.Fatalf("subscribed data %s: %v", m.Data, err)
	}
	return s
}

// subscribed is the data of a `subscribed` answer.
type subscribed struct {
	Members   int    `json:"members"`
	Position  string `json:"position"`
	Recovered *bool  `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

// events returns room's events received so far, in order.
func (c *wsConn) events(room string) []msg {
	var out []msg
	for _, m := range c.all() {
		if m.isRoomEvent(room) {
			out = append(out, m)
		}
	}
	return out
}

// waitEvents waits until n events of room have arrived and returns them
// (more, if more came).
func (c *wsConn) waitEvents(room string, n int) []msg {
	c.t.Helper()
	count := func(msgs []msg) int {
		k := 0
		for _, m := range msgs {
			if m.isRoomEvent(room) {
				k++
			}
		}
		return k
	}
	if !c.waitUntil(waitTimeout, func(msgs []msg, _ bool) bool { return count(msgs) >= n }) {
		c.t.Fatalf("node %s: %d of %d events of %s arrived within %s", c.node(), count(c.all()), n, room, waitTimeout)
	}
	return c.events(room)
}

// waitClosed waits for the connection to end and returns the close code.
func (c *wsConn) waitClosed(d time.Duration) (int, bool) {
	if !c.waitUntil(d, func(_ []msg, closed bool) bool { return closed }) {
		return 0, false
	}
	_, _, code, _ := c.state()
	return code, true
}

// presence is the answer of a presence request or GET .../presence.
type presence struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
	Members []struct {
		UserID       string `json:"user_id"`
		ConnectionID string `json:"connection_id"`
	} `json:"members"`
}

// connIDs returns the member connection ids, sorted.
func (p presence) connIDs() []string {
	out := make([]string, 0, len(p.Members))
	for _, m := range p.Members {
		out = append(out, m.ConnectionID)
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// mintToken returns an HS256 connection token for user.
func mintToken(tb testing.TB, secret, user string) string {
	tb.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// apiCall sends a request to a node's server API (loopback, no key) and
// decodes a JSON answer into out when out is not nil. It returns the HTTP
// status and the raw body.
func apiCall(ctx context.Context, n *node, method, path string, body, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url(path), rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, b, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, b, nil
}

// mustAPI is apiCall that fails the test on anything but a 2xx answer.
func mustAPI(tb testing.TB, n *node, method, path string, body, out any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	status, b, err := apiCall(ctx, n, method, path, body, out)
	if err != nil || status/100 != 2 {
		tb.Fatalf("%s %s on node %s: HTTP %d %s (%v)", method, path, n.name, status, b, err)
	}
}

// publishAnswer is the answer of POST /api/broadcast/{room}.
type publishAnswer struct {
	EventID    string `json:"event_id"`
	Recipients int    `json:"recipients"`
	Duplicate  bool   `json:"duplicate"`
}

// broadcast publishes one event to room through n's API.
func broadcast(ctx context.Context, n *node, room, typ string, data any, key string) (publishAnswer, int, []byte, error) {
	body := map[string]any{"type": typ, "data": data}
	if key != "" {
		body["idempotency_key"] = key
	}
	var a publishAnswer
	status, b, err := apiCall(ctx, n, http.MethodPost, "/api/broadcast/"+url.PathEscape(room), body, &a)
	return a, status, b, err
}

// checkSequence checks that events carry n = 0..want-1 in order, each once,
// with consecutive offsets in one epoch.
func checkSequence(tb testing.TB, who string, events []msg, want int) {
	tb.Helper()
	if len(events) != want {
		tb.Errorf("%s: %d events, want %d", who, len(events), want)
	}
	var prev protocol.StreamPosition
	for i, e := range events {
		if d := e.seq(tb); d.N != i {
			tb.Errorf("%s: event %d (%s) carries n=%d, want %d (lost, duplicated or reordered)", who, i, e.ID, d.N, i)
			return
		}
		pos, ok := protocol.ParseEventID(e.ID)
		if !ok {
			tb.Errorf("%s: event id %q is not EPOCH-OFFSET", who, e.ID)
			return
		}
		if i > 0 && (pos.Epoch != prev.Epoch || pos.Offset != prev.Offset+1) {
			tb.Errorf("%s: event %d has id %s after %s: offsets must be consecutive in one epoch", who, i, e.ID, prev.EventID())
			return
		}
		prev = pos
	}
}

// ids returns the event ids of events.
func ids(events []msg) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// roamer is a client that stays subscribed to one room across node
// failures, as a real client would: when its connection breaks it connects
// to the next of urls and subscribes again with the last event id it saw,
// so that the server replays what it missed. It keeps every event it got,
// duplicates included, for the test to inspect.
type roamer struct {
	urls []string
	room string

	mu     sync.Mutex
	events []msg
	subs   []subscribed // every answer to a re-subscription (with last_event_id)
	nodes  []string     // the node of each connection, in order
	last   string       // the last event id seen
	errs   []string
}

func newRoamer(room string, urls ...string) *roamer {
	return &roamer{urls: urls, room: room}
}

// run keeps the roamer connected until ctx ends or it has made 200
// connection attempts. It returns once the first subscription is confirmed
// (or the first attempt failed) and goes on in the background; the
// returned channel is closed when it stops.
func (r *roamer) run(ctx context.Context) (<-chan struct{}, error) {
	first := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		subscribed := false
		onSubscribed := func() {
			if !subscribed {
				subscribed = true
				first <- nil
			}
		}
		for i := 0; ctx.Err() == nil && i < 200; i++ {
			err := r.session(ctx, r.urls[i%len(r.urls)], onSubscribed)
			if !subscribed {
				first <- fmt.Errorf("first connection to %s: %w", r.urls[0], err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	select {
	case err := <-first:
		return done, err
	case <-ctx.Done():
		return done, ctx.Err()
	}
}

// session is one connection: connect, subscribe, read until it breaks.
// onSubscribed is called when the subscription is confirmed.
func (r *roamer) session(ctx context.Context, u string, onSubscribed func()) error {
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	sub := map[string]any{"type": "subscribe", "id": "sub", "room": r.room}
	if last != "" {
		sub["last_event_id"] = last
	}
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		var m msg
		if err := json.Unmarshal(b, &m); err != nil {
			r.fail("unparsable message %q", b)
			continue
		}
		switch {
		case m.Type == "connection_established":
			var h struct {
				Node string `json:"node"`
			}
			_ = json.Unmarshal(m.Data, &h)
			r.mu.Lock()
			r.nodes = append(r.nodes, h.Node)
			r.mu.Unlock()
			b, _ := json.Marshal(sub)
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				return err
			}
		case m.Type == "subscribed" && m.ID == "sub":
			var s subscribed
			_ = json.Unmarshal(m.Data, &s)
			r.mu.Lock()
			if last == "" {
				if r.last == "" {
					r.last = s.Position
				}
			} else {
				r.subs = append(r.subs, s)
				if s.Recovered != nil && !*s.Recovered {
					// Nothing replayed: go on from the current position.
					r.last = s.Position
				}
			}
			r.mu.Unlock()
			onSubscribed()
		case m.Type == "error":
			r.fail("error %s", m.Data)
			if m.ID == "sub" {
				return fmt.Errorf("subscribe refused: %s", m.Data)
			}
		case m.isRoomEvent(r.room):
			m.at = time.Now()
			r.mu.Lock()
			r.events = append(r.events, m)
			r.last = m.ID
			r.mu.Unlock()
		}
	}
}

func (r *roamer) fail(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// snapshot returns copies of what the roamer recorded.
func (r *roamer) snapshot() (events []msg, subs []subscribed, nodes, errs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]msg(nil), r.events...), append([]subscribed(nil), r.subs...),
		append([]string(nil), r.nodes...), append([]string(nil), r.errs...)
}

func (r *roamer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}
