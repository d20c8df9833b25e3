package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
)

const secret = "0123456789abcdef0123456789abcdef-e2e-secret"

func token(t *testing.T, sub string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type node struct {
	srv  *server.Server
	addr string
}

// start runs a node on 127.0.0.1:0 with cfg (JWT secret filled in) until
// the test ends.
func start(t *testing.T, cfg server.Config) *node {
	t.Helper()
	if cfg.Auth.JWTSecret == "" && cfg.Auth.ConnectProxyURL == "" {
		cfg.Auth.JWTSecret = secret
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	return &node{srv: srv, addr: ln.Addr().String()}
}

type conn struct {
	t  *testing.T
	ws *websocket.Conn
}

func (n *node) dial(t *testing.T, query string, hdr http.Header) (*conn, *http.Response, error) {
	t.Helper()
	u := "ws://" + n.addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(u, hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &conn{t: t, ws: ws}, resp, nil
}

func (n *node) mustDial(t *testing.T, query string, hdr http.Header) *conn {
	t.Helper()
	c, resp, err := n.dial(t, query, hdr)
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		t.Fatalf("dial: %v %s", err, body)
	}
	return c
}

type msg struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Room   string          `json:"room"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data"`
}

func (c *conn) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next reads the next message, failing after 5 s.
func (c *conn) next() (msg, error) {
	c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("bad JSON from server: %s", b)
	}
	return m, nil
}

// expect reads until a message of type typ (skipping join/leave notices).
func (c *conn) expect(typ string) msg {
	c.t.Helper()
	for i := 0; i < 50; i++ {
		m, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type == "user_joined" || m.Type == "user_left" {
			continue
		}
		c.t.Fatalf("waiting for %s, got %s %s", typ, m.Type, m.Data)
	}
	c.t.Fatalf("no %s in 50 messages", typ)
	return msg{}
}

// closed reads until the connection closes and returns the close code,
// checking the disconnect event before it carries the same code.
func (c *conn) closed() int {
	c.t.Helper()
	var disconnect *msg
	for i := 0; i < 100; i++ {
		m, err := c.next()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("want a close frame, got %v", err)
			}
			if disconnect == nil {
				c.t.Fatalf("close %d without a disconnect event before it", ce.Code)
			}
			var d struct{ Code int }
			json.Unmarshal(disconnect.Data, &d)
			if d.Code != ce.Code {
				c.t.Fatalf("disconnect event code %d, close frame %d", d.Code, ce.Code)
			}
			return ce.Code
		}
		if m.Type == "disconnect" {
			disconnect = &m
		}
	}
	c.t.Fatal("connection did not close")
	return 0
}

func errorCode(t *testing.T, m msg) string {
	t.Helper()
	var e struct{ Code string }
	json.Unmarshal(m.Data, &e)
	return e.Code
}

func userOf(t *testing.T, m msg) string {
	t.Helper()
	var d struct {
		UserID string `json:"user_id"`
	}
	json.Unmarshal(m.Data, &d)
	return d.UserID
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestHandshakeTokenSources(t *testing.T) {
	n := start(t, server.Config{})
	tok := token(t, "alice", time.Hour, nil)

	c := n.mustDial(t, "", bearer(tok))
	if u := userOf(t, c.expect("connection_established")); u != "alice" {
		t.Errorf("header token: user %q", u)
	}
	c = n.mustDial(t, "", http.Header{"Cookie": {"switchboard_token=" + tok}})
	if u := userOf(t, c.expect("connection_established")); u != "alice" {
		t.Errorf("cookie token: user %q", u)
	}
	c = n.mustDial(t, "token="+url.QueryEscape(tok), nil)
	if u := userOf(t, c.expect("connection_established")); u != "alice" {
		t.Errorf("query token: user %q", u)
	}

	bad := []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"expired", "", bearer(token(t, "alice", -time.Hour, nil))},
		{"garbage header", "", bearer("garbage")},
		{"alg none", "token=" + url.QueryEscape("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."), nil},
		{"query injection", "token=" + url.QueryEscape(tok+"\r\nX-Injected: 1") + "&token=x", nil},
		{"NUL in query", "token=%00" + tok, nil},
		{"header injection attempt", "", http.Header{"Authorization": {"Bearer " + tok + " extra"}}},
	}
	for _, b := range bad {
		_, resp, err := n.dial(t, b.query, b.hdr)
		if err == nil {
			t.Errorf("%s: connected", b.name)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: want 401, got %v", b.name, resp)
			continue
		}
		var body struct{ Error struct{ Code string } }
		if json.NewDecoder(resp.Body).Decode(&body); body.Error.Code != "unauthorized" {
			t.Errorf("%s: body code %q", b.name, body.Error.Code)
		}
	}
}

func TestAuthFrame(t *testing.T) {
	n := start(t, server.Config{Auth: server.AuthConfig{Timeout: 400 * time.Millisecond}})

	c := n.mustDial(t, "", nil)
	c.send(map[string]any{"type": "ping", "id": "p1"})
	if m := c.expect("pong"); m.ID != "p1" {
		t.Errorf("pong id %q", m.ID)
	}
	c.send(map[string]any{"type": "auth", "id": "a1", "data": map[string]string{"token": token(t, "bob", time.Hour, nil)}})
	m := c.expect("connection_established")
	if m.ID != "a1" || userOf(t, m) != "bob" {
		t.Errorf("auth answer %+v %s", m, m.Data)
	}

	// Too late: nothing within the auth timeout.
	late := n.mustDial(t, "", nil)
	if code := late.closed(); code != 4001 {
		t.Errorf("auth timeout: close %d, want 4001", code)
	}
	// Messages before auth.
	early := n.mustDial(t, "", nil)
	early.send(map[string]any{"type": "subscribe", "room": "chat:1"})
	if code := early.closed(); code != 4001 {
		t.Errorf("subscribe before auth: close %d, want 4001", code)
	}
	// A bad token in the auth frame.
	badTok := n.mustDial(t, "", nil)
	badTok.send(map[string]any{"type": "auth", "data": map[string]string{"token": token(t, "bob", -time.Hour, nil)}})
	if code := badTok.closed(); code != 4001 {
		t.Errorf("expired token in auth frame: close %d, want 4001", code)
	}
	// Malformed auth data.
	badData := n.mustDial(t, "", nil)
	badData.send(map[string]any{"type": "auth", "data": "not an object"})
	if code := badData.closed(); code != 4001 {
		t.Errorf("malformed auth data: close %d, want 4001", code)
	}
}

func TestAnonymousAllowed(t *testing.T) {
	n := start(t, server.Config{Auth: server.AuthConfig{AllowAnonymous: true, Timeout: 300 * time.Millisecond}})
	// A frame other than auth makes the connection anonymous, then runs.
	c := n.mustDial(t, "", nil)
	c.send(map[string]any{"type": "subscribe", "id": "s1", "room": "chat:1"})
	if u := userOf(t, c.expect("connection_established")); !strings.HasPrefix(u, "anon-") {
		t.Errorf("anonymous user id %q", u)
	}
	// Default permission with auth on is "authenticated": anonymous users
	// are refused.
	if m := c.expect("error"); errorCode(t, m) != "forbidden" || m.ID != "s1" {
		t.Errorf("anonymous subscribe: %s", m.Data)
	}
	// Silence past the timeout: anonymous, not closed.
	quiet := n.mustDial(t, "", nil)
	if u := userOf(t, quiet.expect("connection_established")); !strings.HasPrefix(u, "anon-") {
		t.Errorf("quiet connection: user %q", u)
	}
}

func TestRoomPermissions(t *testing.T) {
	n := start(t, server.Config{Namespaces: map[string]hub.Namespace{
		"user":    {Permissions: hub.Permissions{Subscribe: hub.PermOwner, Publish: hub.PermServer}},
		"private": {Private: true},
		"team":    {Permissions: hub.Permissions{Subscribe: hub.PermToken}},
		"news":    {Permissions: hub.Permissions{Publish: hub.PermServer, Presence: hub.PermServer, History: hub.PermServer}},
	}})
	alice := n.mustDial(t, "", bearer(token(t, "alice", time.Hour, map[string]any{"rooms": []string{"team:1"}})))
	alice.expect("connection_established")

	try := func(c *conn, req map[string]any, want string) {
		t.Helper()
		c.send(req)
		for {
			m, err := c.next()
			if err != nil {
				t.Fatalf("%v: %v", req, err)
			}
			if m.Type == "user_joined" || m.Type == "user_left" || m.Type == "message" {
				continue
			}
			got := m.Type
			if m.Type == "error" {
				got = "error:" + errorCode(t, m)
			}
			if got != want {
				t.Errorf("%v: got %s %s, want %s", req, got, m.Data, want)
			}
			return
		}
	}
	try(alice, map[string]any{"type": "subscribe", "room": "user:alice"}, "subscribed")
	try(alice, map[string]any{"type": "subscribe", "room": "user:bob"}, "error:forbidden")
	try(alice, map[string]any{"type": "message", "room": "user:alice", "data": 1}, "error:forbidden")
	try(alice, map[string]any{"type": "subscribe", "room": "team:1"}, "subscribed")
	try(alice, map[string]any{"type": "subscribe", "room": "team:2"}, "error:forbidden")
	try(alice, map[string]any{"type": "subscribe", "room": "private:1"}, "error:forbidden")
	own := token(t, "alice", time.Hour, map[string]any{"room": "private:1"})
	foreign := token(t, "bob", time.Hour, map[string]any{"room": "private:1"})
	otherRoom := token(t, "alice", time.Hour, map[string]any{"room": "private:2"})
	try(alice, map[string]any{"type": "subscribe", "room": "private:1", "data": map[string]string{"token": foreign}}, "error:forbidden")
	try(alice, map[string]any{"type": "subscribe", "room": "private:1", "data": map[string]string{"token": otherRoom}}, "error:forbidden")
	try(alice, map[string]any{"type": "subscribe", "room": "private:1", "data": map[string]string{"token": own}}, "subscribed")
	try(alice, map[string]any{"type": "subscribe", "room": "news:1"}, "subscribed")
	try(alice, map[string]any{"type": "message", "room": "news:1", "data": 1}, "error:forbidden")
	try(alice, map[string]any{"type": "presence", "room": "news:1"}, "error:forbidden")
	try(alice, map[string]any{"type": "history", "room": "news:1"}, "error:forbidden")

	// The server API may still publish where clients may not.
	if _, err := n.srv.Hub.Publish(context.Background(), "news:1", "headline", json.RawMessage(`{"t":"x"}`), hub.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	alice.expect("headline")

	// Repeated violations close with 4003.
	mallory := n.mustDial(t, "", bearer(token(t, "mallory", time.Hour, nil)))
	mallory.expect("connection_established")
	for i := 0; i < 12; i++ {
		mallory.send(map[string]any{"type": "subscribe", "room": fmt.Sprintf("user:victim%d", i)})
	}
	if code := mallory.closed(); code != 4003 {
		t.Errorf("repeated violations: close %d, want 4003", code)
	}
}

func TestSessionExpiryAndRefresh(t *testing.T) {
	n := start(t, server.Config{Auth: server.AuthConfig{ExpiryLead: 1500 * time.Millisecond}})
	// jwt exp has 1 s resolution; 3 s leaves room for the lead.
	refresher := n.mustDial(t, "", bearer(token(t, "carol", 3*time.Second, nil)))
	refresher.expect("connection_established")
	lazy := n.mustDial(t, "", bearer(token(t, "dave", 3*time.Second, nil)))
	lazy.expect("connection_established")

	refresher.expect("session_expiring")
	refresher.send(map[string]any{"type": "refresh", "id": "r1", "data": map[string]string{"token": token(t, "mallory", time.Hour, nil)}})
	if m := refresher.expect("error"); errorCode(t, m) != "forbidden" {
		t.Errorf("refresh with another user's token: %s", m.Data)
	}
	refresher.send(map[string]any{"type": "refresh", "id": "r2", "data": map[string]string{"token": token(t, "carol", time.Hour, nil)}})
	if m := refresher.expect("refreshed"); m.ID != "r2" {
		t.Errorf("refreshed id %q", m.ID)
	}

	lazy.expect("session_expiring")
	if code := lazy.closed(); code != 4000 {
		t.Errorf("expired session: close %d, want 4000", code)
	}
	// The refreshed connection outlives the old expiry.
	refresher.send(map[string]any{"type": "ping", "id": "alive"})
	if m := refresher.expect("pong"); m.ID != "alive" {
		t.Errorf("pong id %q", m.ID)
	}
}

func TestBanAndConnectionCap(t *testing.T) {
	n := start(t, server.Config{MaxConnectionsPerUser: 2})
	tok := token(t, "erin", time.Hour, nil)
	a := n.mustDial(t, "", bearer(tok))
	a.expect("connection_established")
	b := n.mustDial(t, "", bearer(tok))
	b.expect("connection_established")
	third := n.mustDial(t, "", bearer(tok))
	if code := third.closed(); code != 4004 {
		t.Errorf("third connection of a user capped at 2: close %d, want 4004", code)
	}

	if err := n.srv.Hub.Ban(context.Background(), "erin", time.Minute); err != nil {
		t.Fatal(err)
	}
	if code := a.closed(); code != 4004 {
		t.Errorf("banned user: close %d, want 4004", code)
	}
	_, resp, err := n.dial(t, "", bearer(tok))
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("handshake while banned: err %v resp %v", err, resp)
	}
	if err := n.srv.Hub.Ban(context.Background(), "erin", 0); err != nil {
		t.Fatal(err)
	}
	n.mustDial(t, "", bearer(tok)).expect("connection_established")
}

func TestHandshakeFlood(t *testing.T) {
	n := start(t, server.Config{HandshakeRate: 5, HandshakeBurst: 10, TrustedProxies: []string{"127.0.0.1/32"}})
	tok := token(t, "flood", time.Hour, nil)
	refused := 0
	var retryAfter string
	for i := 0; i < 30; i++ {
		c, resp, err := n.dial(t, "", bearer(tok))
		if err == nil {
			c.ws.Close()
			continue
		}
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			refused++
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if refused < 15 {
		t.Errorf("30 handshakes at once with burst 10: %d refused with 429, want most", refused)
	}
	if retryAfter == "" {
		t.Error("429 without Retry-After")
	}
	// Another client, named by the trusted proxy, is not affected.
	h := bearer(tok)
	h.Set("X-Forwarded-For", "198.51.100.7")
	n.mustDial(t, "", h).expect("connection_established")
	// A spoofed X-Forwarded-For from an untrusted peer changes nothing:
	// here the peer is trusted, so the test checks the limiter keys on
	// the forwarded address instead.
	h.Set("X-Forwarded-For", "198.51.100.8")
	n.mustDial(t, "", h).expect("connection_established")
}

func TestMessageFlood(t *testing.T) {
	n := start(t, server.Config{MaxMessagesPerSecond: 50})
	flooder := n.mustDial(t, "", bearer(token(t, "flooder", time.Hour, nil)))
	flooder.expect("connection_established")
	calm := n.mustDial(t, "", bearer(token(t, "calm", time.Hour, nil)))
	calm.expect("connection_established")
	calm.send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:calm"})
	calm.expect("subscribed")

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 3000; i++ {
			b, _ := json.Marshal(map[string]any{"type": "message", "room": "chat:flood", "data": i})
			if flooder.ws.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		}
	}()
	// The calm connection's own traffic keeps flowing while the flood runs.
	for i := 0; i < 20; i++ {
		calm.send(map[string]any{"type": "message", "id": fmt.Sprint("m", i), "room": "chat:calm", "data": i})
		calm.expect("message") // its own event (echo is on), then the ack
		calm.expect("ack")
	}
	throttled := 0
	code := 0
	for i := 0; i < 5000 && code == 0; i++ {
		m, err := flooder.next()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
		if m.Type == "error" && errorCode(t, m) == "throttled" {
			throttled++
		}
	}
	<-done
	if throttled == 0 {
		t.Error("flooder got no throttled errors")
	}
	if code != 4004 {
		t.Errorf("persistent flood: close %d, want 4004", code)
	}
	if st := n.srv.Hub.Stats(); st.Throttled == 0 {
		t.Error("throttled not counted")
	}
}

func TestConnectProxyE2E(t *testing.T) {
	backend := http.NewServeMux()
	backend.HandleFunc("POST /auth", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Cookies map[string]string }
		json.NewDecoder(r.Body).Decode(&req)
		if req.Cookies["sessionid"] != "s3cret" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"user_id":"django-7"}`))
	})
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bs := &http.Server{Handler: backend}
	go bs.Serve(bl)
	t.Cleanup(func() { bs.Close() })

	n := start(t, server.Config{Auth: server.AuthConfig{ConnectProxyURL: "http://" + bl.Addr().String() + "/auth"}})
	c := n.mustDial(t, "", http.Header{"Cookie": {"sessionid=s3cret"}})
	if u := userOf(t, c.expect("connection_established")); u != "django-7" {
		t.Errorf("proxy user %q", u)
	}
	_, resp, err := n.dial(t, "", http.Header{"Cookie": {"sessionid=wrong"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad session: err %v resp %v", err, resp)
	}
	bs.Close()
	_, resp, err = n.dial(t, "", http.Header{"Cookie": {"sessionid=s3cret"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("backend down: want 401, got err %v resp %v", err, resp)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	n := start(t, server.Config{TLSCertFile: cert, TLSKeyFile: key})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss://"+n.addr+"/ws", bearer(token(t, "tls", time.Hour, nil)))
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	c := &conn{t: t, ws: ws}
	if u := userOf(t, c.expect("connection_established")); u != "tls" {
		t.Errorf("user %q", u)
	}
	c.send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:tls"})
	c.expect("subscribed")
	c.send(map[string]any{"type": "message", "id": "m", "room": "chat:tls", "data": strings.Repeat("x", 3000)})
	c.expect("message")
	c.expect("ack")
}

func selfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cp, kp := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cp, kp
}
