package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// waitLimit bounds every wait for the node; it guards against a hang and
// says nothing about speed.
const waitLimit = 10 * time.Second

const key = "e2e-key-0123456789abcdef"

// node is a Switchboard node serving on a loopback port.
type node struct {
	srv  *server.Server
	base string // http://127.0.0.1:port
	key  string
}

func startNode(t *testing.T, apiKey string) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{Listen: ln.Addr().String(), NoDemo: true, DrainTimeout: 5 * time.Second, APIKey: apiKey})
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5*time.Second + waitLimit):
			t.Errorf("Serve did not return after the drain")
		}
	})
	return &node{srv: srv, base: "http://" + ln.Addr().String(), key: apiKey}
}

// call sends a JSON request to the API and decodes the answer into out.
func (n *node) call(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, n.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if n.key != "" {
		req.Header.Set("Authorization", "Bearer "+n.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q; body %s", method, path, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// client is a WebSocket connection read by a goroutine, so that every
// read can be bounded.
type client struct {
	t      *testing.T
	conn   *websocket.Conn
	msgs   chan protocol.Envelope
	end    chan error
	userID string
	connID string
}

func dial(t *testing.T, n *node) *client {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitLimit}
	u := "ws" + n.base[len("http"):] + "/ws"
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c := &client{t: t, conn: conn, msgs: make(chan protocol.Envelope, 256), end: make(chan error, 1)}
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				c.end <- err
				return
			}
			var env protocol.Envelope
			if err := json.Unmarshal(b, &env); err != nil {
				c.end <- err
				return
			}
			c.msgs <- env
		}
	}()
	t.Cleanup(func() { conn.Close() })
	est := c.next(protocol.TypeConnectionEstablished)
	var d2 struct {
		UserID       string `json:"user_id"`
		ConnectionID string `json:"connection_id"`
	}
	if err := json.Unmarshal(est.Data, &d2); err != nil || d2.UserID == "" || d2.ConnectionID == "" {
		t.Fatalf("connection_established %s: %v", est.Data, err)
	}
	c.userID, c.connID = d2.UserID, d2.ConnectionID
	return c
}

// next returns the next message, which must be of type typ.
func (c *client) next(typ string) protocol.Envelope {
	c.t.Helper()
	select {
	case env, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection ended waiting for %s: %v", typ, <-c.end)
		}
		if env.Type != typ {
			c.t.Fatalf("got %s %s, want %s", env.Type, env.Data, typ)
		}
		return env
	case <-time.After(waitLimit):
		c.t.Fatalf("no %s within %s", typ, waitLimit)
	}
	panic("unreachable")
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) subscribe(room string) {
	c.t.Helper()
	c.send(map[string]string{"type": "subscribe", "id": "sub-" + room, "room": room})
	c.next(protocol.TypeSubscribed)
}

// closed waits for the disconnect event and the close frame and returns
// the close code.
func (c *client) closed() (protocol.Disconnect, int) {
	c.t.Helper()
	env := c.next(protocol.TypeDisconnect)
	var d protocol.Disconnect
	if err := json.Unmarshal(env.Data, &d); err != nil {
		c.t.Fatal(err)
	}
	for range c.msgs {
		c.t.Fatalf("a message after disconnect")
	}
	err := <-c.end
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		c.t.Fatalf("connection ended with %v, want a close frame", err)
	}
	return d, ce.Code
}

func TestEndToEnd(t *testing.T) {
	n := startNode(t, key)
	alice := dial(t, n)
	bob := dial(t, n)
	alice.subscribe("match:42")
	// bob's user_joined reaches alice; consume it so later reads are
	// exactly the API's events.
	bob.subscribe("match:42")
	alice.next(protocol.TypeUserJoined)

	// Publish to the room: both members get the event with its type and data.
	var res struct {
		EventID    string `json:"event_id"`
		Recipients int    `json:"recipients"`
		Duplicate  bool   `json:"duplicate"`
	}
	body := `{"type":"score_update","data":{"home":2,"away":1},"idempotency_key":"goal-1"}`
	if code := n.call(t, "POST", "/api/broadcast/match:42", body, &res); code != 200 || res.EventID == "" || res.Recipients != 2 || res.Duplicate {
		t.Fatalf("publish: %d %+v", code, res)
	}
	for _, c := range []*client{alice, bob} {
		ev := c.next("score_update")
		if ev.ID != res.EventID || ev.Room != "match:42" || string(ev.Data) != `{"home":2,"away":1}` {
			t.Errorf("received %+v", ev)
		}
	}

	// The same idempotency key: same event id, duplicate, not delivered.
	// The marker event published next must be the next thing received.
	var dup struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	if code := n.call(t, "POST", "/api/broadcast/match:42", body, &dup); code != 200 || dup.EventID != res.EventID || !dup.Duplicate {
		t.Fatalf("re-publish: %d %+v, want event %s and duplicate", code, dup, res.EventID)
	}
	if code := n.call(t, "POST", "/api/broadcast/match:42", `{"type":"marker"}`, nil); code != 200 {
		t.Fatalf("marker: %d", code)
	}
	alice.next("marker")
	bob.next("marker")

	// Send to a user: the (anonymous) user from connection_established.
	var rc struct {
		Recipients int `json:"recipients"`
	}
	if code := n.call(t, "POST", "/api/users/"+url.PathEscape(alice.userID)+"/send", `{"type":"dm","data":"psst"}`, &rc); code != 200 || rc.Recipients != 1 {
		t.Fatalf("user send: %d %+v", code, rc)
	}
	if ev := alice.next("dm"); string(ev.Data) != `"psst"` || ev.Room != "" {
		t.Errorf("dm %+v", ev)
	}
	// Broadcast to all: reaches both; bob's first message proves he got no dm.
	if code := n.call(t, "POST", "/api/broadcast", `{"type":"notice","data":{"text":"maintenance at 5"}}`, &rc); code != 200 || rc.Recipients != 2 {
		t.Fatalf("broadcast: %d %+v", code, rc)
	}
	alice.next("notice")
	bob.next("notice")

	// Room listing and stats see both connections.
	var rooms struct {
		Rooms []struct {
			Name    string `json:"name"`
			Members int    `json:"members"`
		} `json:"rooms"`
	}
	if code := n.call(t, "GET", "/api/rooms", "", &rooms); code != 200 || len(rooms.Rooms) != 1 || rooms.Rooms[0].Name != "match:42" || rooms.Rooms[0].Members != 2 {
		t.Errorf("rooms: %d %+v", code, rooms)
	}

	// Disconnect one connection with a chosen code.
	if code := n.call(t, "POST", "/api/connections/"+bob.connID+"/disconnect", `{"code":4321,"reason":"bye bob"}`, nil); code != 202 {
		t.Fatalf("disconnect connection: %d", code)
	}
	d, code := bob.closed()
	if d.Code != 4321 || d.Reason != "bye bob" || code != 4321 {
		t.Errorf("bob got disconnect %+v and close code %d, want 4321 bye bob", d, code)
	}
	alice.next(protocol.TypeUserLeft)

	// Disconnect a user with the default code (4006 kicked).
	if code := n.call(t, "POST", "/api/users/"+url.PathEscape(alice.userID)+"/disconnect", "", nil); code != 200 {
		t.Fatalf("disconnect user: %d", code)
	}
	d, code = alice.closed()
	if d.Code != protocol.CloseKicked || code != int(protocol.CloseKicked) || d.Reconnect {
		t.Errorf("alice got disconnect %+v and close code %d, want 4006 without reconnect", d, code)
	}
}

// TestEndToEndAuth checks the key over a real connection, and the
// loopback rule of a node without a key (the peer really is 127.0.0.1).
func TestEndToEndAuth(t *testing.T) {
	n := startNode(t, key)
	for _, tc := range []struct {
		key  string
		want int
	}{{"", 401}, {"wrong", 403}, {key, 200}} {
		m := &node{base: n.base, key: tc.key}
		var out map[string]any
		if code := m.call(t, "GET", "/api/stats", "", &out); code != tc.want {
			t.Errorf("key %q: status %d, want %d (%v)", tc.key, code, tc.want, out)
		}
	}
	// The server's own routes are not shadowed, and /api/ paths that do
	// not exist answer the API's JSON 404.
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := n.call(t, "GET", "/api/nope", "", &e); code != 404 || e.Error.Code != "not_found" {
		t.Errorf("/api/nope: %d %+v", code, e)
	}

	open := startNode(t, "")
	var st struct {
		Node struct {
			Node string `json:"node"`
		} `json:"node"`
	}
	if code := open.call(t, "GET", "/api/stats", "", &st); code != 200 || st.Node.Node == "" {
		t.Errorf("keyless node from loopback: %d %+v", code, st)
	}
	// A loopback peer that arrived through a proxy is refused.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", open.base+"/api/stats", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("proxied request to a keyless node: %d, want 403", resp.StatusCode)
	}
}

func TestBanEndToEnd(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	c := n.MustDial(t, "", nil)
	user := wstest.UserOf(c.Expect("connection_established"))
	post := func(body string) (int, string) {
		resp, err := http.Post("http://"+n.Addr+"/api/users/"+user+"/ban", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, bad := range []string{`{}`, `{"seconds":-1}`, `{"seconds":99999999999}`, `{"seconds":"10"}`} {
		if status, body := post(bad); status != http.StatusBadRequest {
			t.Errorf("ban %s: %d %s", bad, status, body)
		}
	}
	if status, body := post(`{"seconds":60}`); status != http.StatusOK || !strings.Contains(body, "banned_until") {
		t.Fatalf("ban: %d %s", status, body)
	}
	if code := c.Closed(); code != 4004 {
		t.Errorf("banned user's connection closed with %d, want 4004", code)
	}
	if !n.Srv.Hub.Banned(user) {
		t.Error("user not banned")
	}
	if status, body := post(`{"seconds":0}`); status != http.StatusOK || body != "{\"banned_until\":0}\n" {
		t.Errorf("lift: %d %q", status, body)
	}
	if n.Srv.Hub.Banned(user) {
		t.Error("ban not lifted")
	}
}
