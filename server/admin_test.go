package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// adminConn is a test dashboard: a gorilla connection to /admin/ws.
type adminConn struct {
	t  *testing.T
	ws *websocket.Conn
}

// adminMsg is a message from the admin socket.
type adminMsg struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

// adminSnap is the data of a snapshot.
type adminSnap struct {
	TS    int64           `json:"ts"`
	Stats json.RawMessage `json:"stats"`
	Rooms []struct {
		Name        string           `json:"name"`
		Members     int              `json:"members"`
		Connections []hub.MemberInfo `json:"connections"`
	} `json:"rooms"`
	RoomsTotal int `json:"rooms_total"`
}

func dialAdmin(t *testing.T, addr string, hdr http.Header) (*adminConn, *http.Response, error) {
	t.Helper()
	ws, resp, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial("ws://"+addr+"/admin/ws", hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &adminConn{t: t, ws: ws}, resp, nil
}

// openAdmin dials and authenticates with key, and returns the socket after
// its welcome.
func openAdmin(t *testing.T, addr, key string) *adminConn {
	t.Helper()
	a, _, err := dialAdmin(t, addr, nil)
	if err != nil {
		t.Fatalf("dial /admin/ws: %v", err)
	}
	a.send(map[string]string{"type": "auth", "key": key})
	if m := a.next(); m.Type != "welcome" {
		t.Fatalf("first message %s %s, want welcome", m.Type, m.Data)
	}
	return a
}

func (a *adminConn) send(v any) {
	a.t.Helper()
	if err := a.ws.WriteJSON(v); err != nil {
		a.t.Fatal(err)
	}
}

func (a *adminConn) read() (adminMsg, error) {
	_ = a.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m adminMsg
	err := a.ws.ReadJSON(&m)
	return m, err
}

func (a *adminConn) next() adminMsg {
	a.t.Helper()
	m, err := a.read()
	if err != nil {
		a.t.Fatalf("admin socket: %v", err)
	}
	return m
}

// expect reads until a message of type typ (snapshots come in between).
func (a *adminConn) expect(typ string) adminMsg {
	a.t.Helper()
	for i := 0; i < 30; i++ {
		if m := a.next(); m.Type == typ {
			return m
		}
	}
	a.t.Fatalf("no %s message", typ)
	return adminMsg{}
}

func (a *adminConn) snapshot() adminSnap {
	a.t.Helper()
	var s adminSnap
	if err := json.Unmarshal(a.expect("snapshot").Data, &s); err != nil {
		a.t.Fatal(err)
	}
	return s
}

// closeCode reads until the server closes the socket and returns the code
// and reason.
func (a *adminConn) closeCode() (int, string) {
	a.t.Helper()
	for i := 0; i < 30; i++ {
		_, err := a.read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			a.t.Fatalf("want a close frame, got %v", err)
		}
		return ce.Code, ce.Text
	}
	a.t.Fatal("the socket was not closed")
	return 0, ""
}

// apiStats is GET /api/stats's "node", as raw JSON.
func apiStats(t *testing.T, addr string) json.RawMessage {
	t.Helper()
	status, _, body := httpDo(t, "GET", "http://"+addr+"/api/stats", nil, "")
	if status != 200 {
		t.Fatalf("GET /api/stats: %d %s", status, body)
	}
	var v struct{ Node json.RawMessage }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Node
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestAdminSnapshotMatchesAPI: the dashboard's counters are GET
// /api/stats's, number for number, and follow connections opening and
// closing; the room table lists each room's members.
func TestAdminSnapshotMatchesAPI(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoDemo: true})
	a := openAdmin(t, n.Addr, "")

	// With nothing happening, a snapshot and /api/stats agree exactly.
	// Only a heartbeat between the two could move a counter (bytes_out),
	// so a few tries are allowed.
	agree := func(what string, check func(adminSnap) bool) adminSnap {
		t.Helper()
		var s adminSnap
		var api json.RawMessage
		for i := 0; i < 5; i++ {
			s = a.snapshot()
			api = apiStats(t, n.Addr)
			if check(s) && sameJSON(s.Stats, api) {
				return s
			}
		}
		t.Fatalf("%s: snapshot stats %s\n/api/stats %s", what, s.Stats, api)
		return s
	}
	counter := func(s adminSnap, k string) float64 {
		var m map[string]any
		_ = json.Unmarshal(s.Stats, &m)
		f, _ := m[k].(float64)
		return f
	}
	agree("empty node", func(s adminSnap) bool { return counter(s, "connections") == 0 && len(s.Rooms) == 0 })

	c1 := n.MustDial(t, "", nil)
	u1 := wstest.UserOf(c1.Expect("connection_established"))
	c2 := n.MustDial(t, "", nil)
	u2 := wstest.UserOf(c2.Expect("connection_established"))
	for i, c := range []*wstest.Conn{c1, c2} {
		c.Send(map[string]string{"type": "subscribe", "id": "s", "room": "chat:a"})
		c.Expect("subscribed")
		if i == 0 {
			c.Send(map[string]string{"type": "subscribe", "id": "t", "room": "chat:b"})
			c.Expect("subscribed")
		}
	}
	c1.Send(map[string]any{"type": "message", "room": "chat:a", "id": "m1", "data": map[string]string{"text": "hi"}})
	// The sender gets its own event and the ack, in either order.
	got := map[string]bool{}
	for len(got) < 2 {
		m, err := c1.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "ack" || m.Type == "message" {
			got[m.Type] = true
		}
	}
	c2.Expect("message")

	s := agree("two connections", func(s adminSnap) bool {
		return counter(s, "connections") == 2 && counter(s, "rooms") == 2 && len(s.Rooms) == 2
	})
	if s.Rooms[0].Name != "chat:a" || s.Rooms[0].Members != 2 || s.Rooms[1].Name != "chat:b" || s.Rooms[1].Members != 1 || s.RoomsTotal != 2 {
		t.Fatalf("rooms %+v", s.Rooms)
	}
	users := map[string]bool{}
	for _, m := range s.Rooms[0].Connections {
		users[m.UserID] = m.ConnectionID != ""
	}
	if !users[u1] || !users[u2] || len(users) != 2 {
		t.Errorf("chat:a members %+v, want %s and %s", s.Rooms[0].Connections, u1, u2)
	}

	// Kick the first user from the dashboard: its client gets 4006, and
	// the counters follow.
	a.send(map[string]string{"type": "disconnect_user", "id": "k1", "user": u1})
	r := a.expect("result")
	if r.ID != "k1" || string(r.Data) != `{"connections":1}` {
		t.Errorf("result %s %s", r.ID, r.Data)
	}
	if code := c1.Closed(); code != 4006 {
		t.Errorf("kicked client closed with %d, want 4006", code)
	}
	s = agree("after the kick", func(s adminSnap) bool {
		var m struct {
			Closes map[string]int `json:"closes"`
		}
		_ = json.Unmarshal(s.Stats, &m)
		return counter(s, "connections") == 1 && m.Closes["4006"] == 1 && len(s.Rooms) == 1
	})
	if s.Rooms[0].Name != "chat:a" || s.Rooms[0].Members != 1 {
		t.Errorf("rooms after the kick %+v", s.Rooms)
	}
}

// TestAdminCommands: the socket's answers to good and bad commands once
// authenticated.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoDemo: true})
	a := openAdmin(t, n.Addr, "")
	tests := []struct {
		name string
		msg  map[string]string
		typ  string
		data string
	}{
		{"ping", map[string]string{"type": "ping", "id": "p"}, "pong", ""},
		{"kick nobody", map[string]string{"type": "disconnect_user", "id": "k", "user": "nobody"}, "result", `{"connections":0}`},
		{"kick without user", map[string]string{"type": "disconnect_user", "id": "k"}, "error", "bad_request"},
		{"kick a too long id", map[string]string{"type": "disconnect_user", "id": "k", "user": strings.Repeat("u", 257)}, "error", "bad_request"},
		{"unknown type", map[string]string{"type": "drop_tables", "id": "x"}, "error", "unknown_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.t = t
			a.send(tt.msg)
			m := a.expect(tt.typ)
			if m.ID != tt.msg["id"] {
				t.Errorf("id %q, want %q", m.ID, tt.msg["id"])
			}
			switch tt.typ {
			case "result":
				if string(m.Data) != tt.data {
					t.Errorf("data %s, want %s", m.Data, tt.data)
				}
			case "error":
				var e struct{ Code, Message string }
				if json.Unmarshal(m.Data, &e) != nil || e.Code != tt.data || e.Message == "" {
					t.Errorf("error %s, want code %s", m.Data, tt.data)
				}
			}
		})
	}
	// A message that is not a JSON admin message ends the socket (1003).
	a.t = t
	if err := a.ws.WriteMessage(websocket.TextMessage, []byte("{nope")); err != nil {
		t.Fatal(err)
	}
	if code, _ := a.closeCode(); code != 1003 {
		t.Errorf("bad JSON: close %d, want 1003", code)
	}
}

// TestAdminAccess: who may open the dashboard. With an API key: the key,
// sent in the first message. Without one: this machine only, like the API.
// Never a page from another origin.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	const key = "admin-test-key-0123456789"
	open := wstest.Start(t, server.Config{NoDemo: true})
	keyed := wstest.Start(t, server.Config{NoDemo: true, APIKey: key})
	off := wstest.Start(t, server.Config{NoDemo: true, NoAdmin: true})

	// Refusals the handshake answers with an HTTP status.
	for _, tt := range []struct {
		name   string
		addr   string
		hdr    http.Header
		status int
	}{
		{"cross-origin page", keyed.Addr, http.Header{"Origin": {"https://evil.example"}}, 403},
		{"cross-origin page, no key", open.Addr, http.Header{"Origin": {"http://localhost:1"}}, 403},
		{"dashboard turned off", off.Addr, nil, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := dialAdmin(t, tt.addr, tt.hdr)
			if err == nil || resp == nil || resp.StatusCode != tt.status {
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				t.Fatalf("dial: %v, status %d, want %d", err, code, tt.status)
			}
		})
	}

	// Refusals after the upgrade: the close code and reason say why.
	for _, tt := range []struct {
		name   string
		addr   string
		hdr    http.Header
		first  any
		code   int
		reason string
	}{
		{"key: none sent", keyed.Addr, nil, map[string]string{"type": "auth"}, 4001, "API key"},
		{"key: wrong", keyed.Addr, nil, map[string]string{"type": "auth", "key": "nope"}, 4001, "not valid"},
		{"key: first message is not auth", keyed.Addr, nil, map[string]string{"type": "ping", "key": key}, 4001, "first message"},
		{"key: binary frame", keyed.Addr, nil, []byte{1, 2}, 1003, "JSON"},
		{"no key: through a proxy", open.Addr, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, map[string]string{"type": "auth"}, 4003, "proxy"},
		{"no key: foreign Host", open.Addr, http.Header{"Host": {"rebind.example"}}, map[string]string{"type": "auth"}, 4003, "Host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := dialAdmin(t, tt.addr, tt.hdr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if b, ok := tt.first.([]byte); ok {
				err = a.ws.WriteMessage(websocket.BinaryMessage, b)
			} else {
				err = a.ws.WriteJSON(tt.first)
			}
			if err != nil {
				t.Fatal(err)
			}
			code, reason := a.closeCode()
			if code != tt.code || !strings.Contains(reason, tt.reason) {
				t.Errorf("closed %d %q, want %d with %q", code, reason, tt.code, tt.reason)
			}
		})
	}

	// Admitted: the right key (from anywhere, same-origin page included),
	// or no key from this machine.
	for _, tt := range []struct {
		name, addr, key string
		hdr             http.Header
	}{
		{"key: right", keyed.Addr, key, nil},
		{"key: right, same-origin page", keyed.Addr, key, http.Header{"Origin": {"http://" + keyed.Addr}}},
		{"no key: loopback", open.Addr, "", nil},
		{"no key: same-origin page", open.Addr, "", http.Header{"Origin": {"http://" + open.Addr}}},
		{"no key: any key is ignored", open.Addr, "whatever", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := dialAdmin(t, tt.addr, tt.hdr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			a.send(map[string]string{"type": "auth", "key": tt.key})
			if m := a.next(); m.Type != "welcome" {
				t.Fatalf("got %s %s, want welcome", m.Type, m.Data)
			}
			if m := a.next(); m.Type != "snapshot" {
				t.Fatalf("got %s, want a snapshot right after the welcome", m.Type)
			}
		})
	}

	// The page itself holds no data and is served to anyone; the assets
	// carry the same headers as the demo's.
	for _, path := range []string{"/admin", "/admin/", "/admin/admin.js", "/admin/admin.css"} {
		status, hdr, body := httpDo(t, "GET", "http://"+keyed.Addr+path, nil, "")
		if status != 200 || !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'self'") || hdr.Get("Cache-Control") != "no-store" || len(body) == 0 {
			t.Errorf("GET %s: %d, headers %v", path, status, hdr)
		}
		if status, _, _ := httpDo(t, "GET", "http://"+off.Addr+path, nil, ""); status != 404 {
			t.Errorf("GET %s with NoAdmin: %d, want 404", path, status)
		}
	}
}

// TestAdminDrain: draining the node closes dashboards with 1012, as it
// does clients, so the page reconnects to whatever comes back.
func TestAdminDrain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{NoDemo: true, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	a := openAdmin(t, ln.Addr().String(), "")
	a.snapshot()
	cancel()
	if code, _ := a.closeCode(); code != 1012 {
		t.Errorf("close %d, want 1012", code)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
}
