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
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
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

// start runs a node with the test JWT secret unless cfg chose another
// authentication.
func start(t *testing.T, cfg server.Config) *wstest.Node {
	t.Helper()
	if cfg.Auth.JWTSecret == "" && cfg.Auth.ConnectProxyURL == "" {
		cfg.Auth.JWTSecret = secret
	}
	return wstest.Start(t, cfg)
}

func wstestConn(t *testing.T, ws *websocket.Conn) *wstest.Conn { return &wstest.Conn{T: t, WS: ws} }

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestHandshakeTokenSources(t *testing.T) {
	n := start(t, server.Config{})
	tok := token(t, "alice", time.Hour, nil)

	c := n.MustDial(t, "", bearer(tok))
	if u := wstest.UserOf(c.Expect("connection_established")); u != "alice" {
		t.Errorf("header token: user %q", u)
	}
	c = n.MustDial(t, "", http.Header{"Cookie": {"switchboard_token=" + tok}})
	if u := wstest.UserOf(c.Expect("connection_established")); u != "alice" {
		t.Errorf("cookie token: user %q", u)
	}
	c = n.MustDial(t, "token="+url.QueryEscape(tok), nil)
	if u := wstest.UserOf(c.Expect("connection_established")); u != "alice" {
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
		_, resp, err := n.Dial(t, b.query, b.hdr)
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

	c := n.MustDial(t, "", nil)
	c.Send(map[string]any{"type": "ping", "id": "p1"})
	if m := c.Expect("pong"); m.ID != "p1" {
		t.Errorf("pong id %q", m.ID)
	}
	c.Send(map[string]any{"type": "auth", "id": "a1", "data": map[string]string{"token": token(t, "bob", time.Hour, nil)}})
	m := c.Expect("connection_established")
	if m.ID != "a1" || wstest.UserOf(m) != "bob" {
		t.Errorf("auth answer %+v %s", m, m.Data)
	}

	// Too late: nothing within the auth timeout.
	late := n.MustDial(t, "", nil)
	if code := late.Closed(); code != 4001 {
		t.Errorf("auth timeout: close %d, want 4001", code)
	}
	// Messages before auth.
	early := n.MustDial(t, "", nil)
	early.Send(map[string]any{"type": "subscribe", "room": "chat:1"})
	if code := early.Closed(); code != 4001 {
		t.Errorf("subscribe before auth: close %d, want 4001", code)
	}
	// A bad token in the auth frame.
	badTok := n.MustDial(t, "", nil)
	badTok.Send(map[string]any{"type": "auth", "data": map[string]string{"token": token(t, "bob", -time.Hour, nil)}})
	if code := badTok.Closed(); code != 4001 {
		t.Errorf("expired token in auth frame: close %d, want 4001", code)
	}
	// Malformed auth data.
	badData := n.MustDial(t, "", nil)
	badData.Send(map[string]any{"type": "auth", "data": "not an object"})
	if code := badData.Closed(); code != 4001 {
		t.Errorf("malformed auth data: close %d, want 4001", code)
	}
}

func TestAnonymousAllowed(t *testing.T) {
	n := start(t, server.Config{Auth: server.AuthConfig{AllowAnonymous: true, Timeout: 300 * time.Millisecond}})
	// A frame other than auth makes the connection anonymous, then runs.
	c := n.MustDial(t, "", nil)
	c.Send(map[string]any{"type": "subscribe", "id": "s1", "room": "chat:1"})
	if u := wstest.UserOf(c.Expect("connection_established")); !strings.HasPrefix(u, "anon-") {
		t.Errorf("anonymous user id %q", u)
	}
	// Default permission with auth on is "authenticated": anonymous users
	// are refused.
	if m := c.Expect("error"); wstest.ErrorCode(m) != "forbidden" || m.ID != "s1" {
		t.Errorf("anonymous subscribe: %s", m.Data)
	}
	// Silence past the timeout: anonymous, not closed.
	quiet := n.MustDial(t, "", nil)
	if u := wstest.UserOf(quiet.Expect("connection_established")); !strings.HasPrefix(u, "anon-") {
		t.Errorf("quiet connection: user %q", u)
	}
}

func TestRoomPermissions(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Options{Namespaces: map[string]hub.Namespace{
		"user":    {Permissions: hub.Permissions{Subscribe: hub.PermOwner, Publish: hub.PermServer}},
		"private": {Private: true},
		"team":    {Permissions: hub.Permissions{Subscribe: hub.PermToken}},
		"news":    {Permissions: hub.Permissions{Publish: hub.PermServer, Presence: hub.PermServer, History: hub.PermServer}},
	}}})
	alice := n.MustDial(t, "", bearer(token(t, "alice", time.Hour, map[string]any{"rooms": []string{"team:1"}})))
	alice.Expect("connection_established")

	try := func(c *wstest.Conn, req map[string]any, want string) {
		t.Helper()
		c.Send(req)
		for {
			m, err := c.Next()
			if err != nil {
				t.Fatalf("%v: %v", req, err)
			}
			if m.Type == "user_joined" || m.Type == "user_left" || m.Type == "message" {
				continue
			}
			got := m.Type
			if m.Type == "error" {
				got = "error:" + wstest.ErrorCode(m)
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
	if _, err := n.Srv.Hub.Publish(context.Background(), "news:1", "headline", json.RawMessage(`{"t":"x"}`), hub.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	alice.Expect("headline")

	// Repeated violations close with 4003.
	mallory := n.MustDial(t, "", bearer(token(t, "mallory", time.Hour, nil)))
	mallory.Expect("connection_established")
	for i := 0; i < 12; i++ {
		mallory.Send(map[string]any{"type": "subscribe", "room": fmt.Sprintf("user:victim%d", i)})
	}
	if code := mallory.Closed(); code != 4003 {
		t.Errorf("repeated violations: close %d, want 4003", code)
	}
}

func TestSessionExpiryAndRefresh(t *testing.T) {
	n := start(t, server.Config{Auth: server.AuthConfig{ExpiryLead: 1500 * time.Millisecond}})
	// Tokens that expired 2 s ago: still within the 5 s leeway, so they are
	// accepted, and the session lasts as long as the leeway does (about
	// 3 s more; jwt exp has 1 s resolution), which leaves room for the
	// 1.5 s lead.
	refresher := n.MustDial(t, "", bearer(token(t, "carol", -2*time.Second, nil)))
	refresher.Expect("connection_established")
	lazy := n.MustDial(t, "", bearer(token(t, "dave", -2*time.Second, nil)))
	lazy.Expect("connection_established")

	refresher.Expect("session_expiring")
	refresher.Send(map[string]any{"type": "refresh", "id": "r1", "data": map[string]string{"token": token(t, "mallory", time.Hour, nil)}})
	if m := refresher.Expect("error"); wstest.ErrorCode(m) != "forbidden" {
		t.Errorf("refresh with another user's token: %s", m.Data)
	}
	refresher.Send(map[string]any{"type": "refresh", "id": "r2", "data": map[string]string{"token": token(t, "carol", time.Hour, nil)}})
	if m := refresher.Expect("refreshed"); m.ID != "r2" {
		t.Errorf("refreshed id %q", m.ID)
	}

	lazy.Expect("session_expiring")
	if code := lazy.Closed(); code != 4000 {
		t.Errorf("expired session: close %d, want 4000", code)
	}
	// The refreshed connection outlives the old expiry.
	refresher.Send(map[string]any{"type": "ping", "id": "alive"})
	if m := refresher.Expect("pong"); m.ID != "alive" {
		t.Errorf("pong id %q", m.ID)
	}
}

func TestBanAndConnectionCap(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Options{MaxConnectionsPerUser: 2}})
	tok := token(t, "erin", time.Hour, nil)
	a := n.MustDial(t, "", bearer(tok))
	a.Expect("connection_established")
	b := n.MustDial(t, "", bearer(tok))
	b.Expect("connection_established")
	third := n.MustDial(t, "", bearer(tok))
	if code := third.Closed(); code != 4004 {
		t.Errorf("third connection of a user capped at 2: close %d, want 4004", code)
	}

	if err := n.Srv.Hub.Ban(context.Background(), "erin", time.Minute); err != nil {
		t.Fatal(err)
	}
	if code := a.Closed(); code != 4004 {
		t.Errorf("banned user: close %d, want 4004", code)
	}
	_, resp, err := n.Dial(t, "", bearer(tok))
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("handshake while banned: err %v resp %v", err, resp)
	}
	if err := n.Srv.Hub.Ban(context.Background(), "erin", 0); err != nil {
		t.Fatal(err)
	}
	n.MustDial(t, "", bearer(tok)).Expect("connection_established")
}

func TestHandshakeFlood(t *testing.T) {
	n := start(t, server.Config{Transport: transport.Options{HandshakeRate: 5, HandshakeBurst: 10}, TrustedProxies: []string{"127.0.0.1/32"}})
	tok := token(t, "flood", time.Hour, nil)
	refused := 0
	var retryAfter string
	for i := 0; i < 30; i++ {
		c, resp, err := n.Dial(t, "", bearer(tok))
		if err == nil {
			c.WS.Close()
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
	n.MustDial(t, "", h).Expect("connection_established")
	// A spoofed X-Forwarded-For from an untrusted peer changes nothing:
	// here the peer is trusted, so the test checks the limiter keys on
	// the forwarded address instead.
	h.Set("X-Forwarded-For", "198.51.100.8")
	n.MustDial(t, "", h).Expect("connection_established")
}

func TestMessageFlood(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Options{MaxMessagesPerSecond: 50}})
	flooder := n.MustDial(t, "", bearer(token(t, "flooder", time.Hour, nil)))
	flooder.Expect("connection_established")
	calm := n.MustDial(t, "", bearer(token(t, "calm", time.Hour, nil)))
	calm.Expect("connection_established")
	calm.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:calm"})
	calm.Expect("subscribed")

	// Ten times the limit, sustained: a burst alone is only throttled;
	// ignoring the throttled errors for seconds gets the connection closed.
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			b, _ := json.Marshal(map[string]any{"type": "message", "room": "chat:flood", "data": i})
			if flooder.WS.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// The calm connection's own traffic keeps flowing while the flood runs.
	for i := 0; i < 20; i++ {
		calm.Send(map[string]any{"type": "message", "id": fmt.Sprint("m", i), "room": "chat:calm", "data": i})
		calm.Expect("message") // its own event (echo is on), then the ack
		calm.Expect("ack")
	}
	throttled := 0
	code := 0
	for i := 0; i < 20000 && code == 0; i++ {
		m, err := flooder.Next()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			break
		}
		if m.Type == "error" && wstest.ErrorCode(m) == "throttled" {
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
	if st := n.Srv.Hub.Stats(); st.Throttled == 0 {
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
	c := n.MustDial(t, "", http.Header{"Cookie": {"sessionid=s3cret"}})
	if u := wstest.UserOf(c.Expect("connection_established")); u != "django-7" {
		t.Errorf("proxy user %q", u)
	}
	_, resp, err := n.Dial(t, "", http.Header{"Cookie": {"sessionid=wrong"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad session: err %v resp %v", err, resp)
	}
	bs.Close()
	_, resp, err = n.Dial(t, "", http.Header{"Cookie": {"sessionid=s3cret"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("backend down: want 401, got err %v resp %v", err, resp)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	n := start(t, server.Config{TLSCertFile: cert, TLSKeyFile: key})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss://"+n.Addr+"/ws", bearer(token(t, "tls", time.Hour, nil)))
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	c := wstestConn(t, ws)
	if u := wstest.UserOf(c.Expect("connection_established")); u != "tls" {
		t.Errorf("user %q", u)
	}
	c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:tls"})
	c.Expect("subscribed")
	c.Send(map[string]any{"type": "message", "id": "m", "room": "chat:tls", "data": strings.Repeat("x", 3000)})
	c.Expect("message")
	c.Expect("ack")
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

// TestOversizedHeaders: a handshake with more header bytes than the
// server reads (16 KiB) is refused by Go's HTTP server with 431 before any
// handler runs; the node keeps serving others.
func TestOversizedHeaders(t *testing.T) {
	n := start(t, server.Config{})
	h := bearer(token(t, "big", time.Hour, nil))
	h.Set("X-Padding", strings.Repeat("a", 20<<10))
	_, resp, err := n.Dial(t, "", h)
	if err == nil {
		t.Fatal("connected with 20 KiB of headers")
	}
	if resp == nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("want 431, got %v (%v)", resp, err)
	}
	n.MustDial(t, "", bearer(token(t, "small", time.Hour, nil))).Expect("connection_established")
}

// A refresh without a token is a malformed request (bad_request), not a
// rejected token: it is not counted as an authentication failure.
func TestRefreshWithoutToken(t *testing.T) {
	n := start(t, server.Config{})
	c := n.MustDial(t, "", bearer(token(t, "erin", time.Hour, nil)))
	c.Expect("connection_established")
	before := n.Srv.Hub.Stats().AuthFailures
	for i, data := range []any{nil, map[string]any{}, map[string]any{"token": ""}, "tok", map[string]any{"token": 5}} {
		req := map[string]any{"type": "refresh", "id": fmt.Sprint("r", i)}
		if data != nil {
			req["data"] = data
		}
		c.Send(req)
		m := c.Expect("error")
		if code := wstest.ErrorCode(m); code != "bad_request" || m.ID != fmt.Sprint("r", i) {
			t.Errorf("refresh with data %v: %s, want bad_request naming r%d", data, m.Raw, i)
		}
	}
	if after := n.Srv.Hub.Stats().AuthFailures; after != before {
		t.Errorf("auth failures went from %d to %d for refreshes without a token", before, after)
	}
	// A real token still refreshes.
	c.Send(map[string]any{"type": "refresh", "id": "ok", "data": map[string]string{"token": token(t, "erin", time.Hour, nil)}})
	c.Expect("refreshed")
}

// pace sends pings on c at rate per second for d (on an absolute schedule,
// so a stall is caught up rather than lost) until the socket fails.
func pace(c *wstest.Conn, rate float64, d time.Duration) {
	step := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * step)
		if at.Sub(start) > d {
			return
		}
		time.Sleep(time.Until(at))
		if c.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p"}`)) != nil {
			return
		}
	}
}

// readAll counts a connection's throttled errors until it is closed or
// quiet for the given time, and returns the close code (0: not closed) and when the
// first throttled error and the close arrived.
func readAll(c *wstest.Conn, quiet time.Duration) (throttled, code int, firstThrottled, closedAt time.Time) {
	for i := 0; i < 100000; i++ {
		c.WS.SetReadDeadline(time.Now().Add(quiet))
		_, b, err := c.WS.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code, closedAt = ce.Code, time.Now()
			}
			return
		}
		if strings.Contains(string(b), `"throttled"`) {
			if throttled == 0 {
				firstThrottled = time.Now()
			}
			throttled++
		}
	}
	return
}

// The persistent-abuse rule of protocol.md section 10, on real sockets: a
// client steadily at 1.5x its limit (most of its frames pass) is closed
// with 4004 about 3 s after it first went over; one at 0.9x is never
// throttled or closed.
func TestSteadyOverLimitCloses4004(t *testing.T) {
	const limit = 40
	n := start(t, server.Config{Hub: hub.Options{MaxMessagesPerSecond: limit}})
	over := n.MustDial(t, "", bearer(token(t, "over", time.Hour, nil)))
	over.Expect("connection_established")
	under := n.MustDial(t, "", bearer(token(t, "under", time.Hour, nil)))
	under.Expect("connection_established")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Spend the two-second burst at once, then keep to 1.5x.
		for i := 0; i < 2*limit; i++ {
			if over.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"b"}`)) != nil {
				return
			}
		}
		pace(over, 1.5*limit, 10*time.Second)
	}()
	go func() { defer wg.Done(); pace(under, 0.9*limit, 5*time.Second) }()

	type result struct {
		throttled, code int
		first, closedAt time.Time
	}
	res := make(chan result, 1)
	go func() {
		th, code, first, at := readAll(under, time.Second)
		res <- result{th, code, first, at}
	}()
	th, code, first, closedAt := readAll(over, 3*time.Second)
	if code != 4004 {
		t.Errorf("1.5x the limit: close %d after %d throttled errors, want 4004", code, th)
	} else if d := closedAt.Sub(first); d < 2500*time.Millisecond || d > 8*time.Second {
		t.Errorf("1.5x the limit: closed %s after the first throttled error, want about 3 s", d)
	} else {
		t.Logf("1.5x: %d throttled, closed with 4004 %s after the first", th, closedAt.Sub(first).Round(10*time.Millisecond))
	}
	wg.Wait()
	u := <-res
	if u.throttled != 0 || u.code != 0 {
		t.Errorf("0.9x the limit: %d throttled errors, close %d; want none", u.throttled, u.code)
	}
}
