package transport_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

func TestHandshakeStatus(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	tests := []struct {
		name     string
		method   string
		path     string
		edit     func(h http.Header)
		status   int
		code     string            // error.code of the JSON body
		wantHdrs map[string]string // response headers that must be present
	}{
		{name: "valid", status: 101},
		{name: "connection token list", edit: func(h http.Header) { h.Set("Connection", "keep-alive, Upgrade") }, status: 101},
		{name: "case-insensitive upgrade", edit: func(h http.Header) { h.Set("Upgrade", "WebSocket") }, status: 101},
		{name: "missing key", edit: func(h http.Header) { h.Del("Sec-WebSocket-Key") }, status: 400, code: "bad_handshake"},
		{name: "key of 15 bytes", edit: func(h http.Header) { h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j") }, status: 400, code: "bad_handshake"},
		{name: "key not base64", edit: func(h http.Header) { h.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!==") }, status: 400, code: "bad_handshake"},
		{name: "missing upgrade", edit: func(h http.Header) { h.Del("Upgrade") }, status: 400, code: "bad_handshake"},
		{name: "upgrade to another protocol", edit: func(h http.Header) { h.Set("Upgrade", "h2c") }, status: 400, code: "bad_handshake"},
		{name: "upgrade token list", edit: func(h http.Header) { h.Set("Upgrade", "websocket, h2c") }, status: 400, code: "bad_handshake"},
		{name: "missing connection", edit: func(h http.Header) { h.Del("Connection") }, status: 400, code: "bad_handshake"},
		{name: "connection keep-alive only", edit: func(h http.Header) { h.Set("Connection", "keep-alive") }, status: 400, code: "bad_handshake"},
		{name: "version 8", edit: func(h http.Header) { h.Set("Sec-WebSocket-Version", "8") }, status: 426, code: "unsupported_version",
			wantHdrs: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "missing version", edit: func(h http.Header) { h.Del("Sec-WebSocket-Version") }, status: 426, code: "unsupported_version",
			wantHdrs: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "POST", method: http.MethodPost, status: 405, code: "method_not_allowed", wantHdrs: map[string]string{"Allow": "GET"}},
		{name: "PUT", method: http.MethodPut, status: 405, code: "method_not_allowed", wantHdrs: map[string]string{"Allow": "GET"}},
		{name: "cross origin", edit: func(h http.Header) { h.Set("Origin", "http://evil.test") }, status: 403, code: "origin_not_allowed"},
		{name: "same host other port", edit: func(h http.Header) { h.Set("Origin", "http://127.0.0.1:1") }, status: 403, code: "origin_not_allowed"},
		{name: "null origin", edit: func(h http.Header) { h.Set("Origin", "null") }, status: 403, code: "origin_not_allowed"},
		{name: "same origin", edit: func(h http.Header) { h.Set("Origin", "http://"+ts.addr) }, status: 101},
		{name: "unknown path", path: "/nope", status: 404, code: "not_found"},
		{name: "unknown path, no upgrade", path: "/nope", edit: func(h http.Header) { h.Del("Upgrade"); h.Del("Connection") }, status: 404, code: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := handshakeHeaders()
			if tt.edit != nil {
				tt.edit(hdr)
			}
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodGet
			}
			if path == "" {
				path = "/ws"
			}
			_, resp := rawRequest(t, ts.addr, method, path, hdr, 0)
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, b, tt.status)
			}
			for k, v := range tt.wantHdrs {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.status == 101 {
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Errorf("Sec-WebSocket-Accept %q", got)
				}
				return
			}
			if code, _ := jsonBody(t, resp); code != tt.code {
				t.Errorf("error code %q, want %q", code, tt.code)
			}
		})
	}
	st := ts.srv.Hub.Stats()
	for _, status := range []string{"400", "403", "405", "426"} {
		if st.Handshakes[status] == 0 {
			t.Errorf("Stats().Handshakes[%s] = 0; refusals are not counted (%v)", status, st.Handshakes)
		}
	}
}

func TestAllowedOrigins(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{AllowedOrigins: []string{"*.example.com", "https://app.other.test", "localhost:3000"}}})
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true}, // not a browser
		{"https://a.example.com", true},
		{"http://a.example.com", true}, // host patterns ignore the scheme
		{"https://A.Example.COM", true},
		{"https://a.b.example.com", true},
		{"https://example.com", false},
		{"https://evilexample.com", false},
		{"https://example.com.evil.test", false},
		{"https://a.example.com:8443", false}, // the pattern has no port
		{"https://app.other.test", true},
		{"http://app.other.test", false}, // a full origin pins the scheme
		{"https://app.other.test:444", false},
		{"http://localhost:3000", true},
		{"http://localhost:3001", false},
		{"http://" + ts.addr, false}, // same-origin is not implied once a list is set
		{"not a url", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.origin), func(t *testing.T) {
			hdr := handshakeHeaders()
			if tt.origin != "" {
				hdr.Set("Origin", tt.origin)
			}
			_, resp := rawRequest(t, ts.addr, http.MethodGet, "/ws", hdr, 0)
			switch {
			case tt.ok && resp.StatusCode != 101:
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%s), want 101", resp.StatusCode, b)
			case !tt.ok && resp.StatusCode != 403:
				t.Fatalf("status %d, want 403", resp.StatusCode)
			case !tt.ok:
				if code, msg := jsonBody(t, resp); code != "origin_not_allowed" || !strings.Contains(msg, tt.origin) {
					t.Errorf("body code %q message %q", code, msg)
				}
			}
		})
	}
}

func TestAllowAnyOrigin(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{AllowedOrigins: []string{"*"}}})
	hdr := http.Header{"Origin": {"https://anything.test"}}
	c := dial(t, ts.url("/ws"), nil, hdr)
	c.expect("connection_established")
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{MaxConnections: 2}})
	a := ts.dialWS(t)
	ts.dialWS(t)
	_, resp := rawRequest(t, ts.addr, http.MethodGet, "/ws", handshakeHeaders(), 0)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: status %d, want 503", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if code, _ := jsonBody(t, resp); code != "connection_limit" {
		t.Errorf("code %q, want connection_limit", code)
	}
	// A slot frees when a connection closes.
	a.c.Close()
	waitFor(t, "the closed connection to be untracked", func() bool { return ts.srv.WS.Open() == 1 })
	ts.dialWS(t)
	if n := ts.srv.Hub.Stats().Handshakes["503"]; n != 1 {
		t.Errorf("Handshakes[503] = %d, want 1", n)
	}
}

func TestSubprotocol(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	tests := []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{protocol.Subprotocol}, protocol.Subprotocol},
		{[]string{"other.v2", protocol.Subprotocol}, protocol.Subprotocol},
		{[]string{"other.v2"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.offer, ","), func(t *testing.T) {
			c := dial(t, ts.url("/ws"), &websocket.Dialer{Subprotocols: tt.offer}, nil)
			if got := c.c.Subprotocol(); got != tt.want {
				t.Errorf("subprotocol %q, want %q", got, tt.want)
			}
			if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.want {
				t.Errorf("Sec-WebSocket-Protocol header %q, want %q", got, tt.want)
			}
			c.expect("connection_established")
			c.roundTrip("p")
		})
	}
}

// TestSubprotocolHeaderLines: the offer may come as several header lines
// (RFC 6455 4.1 allows either form).
func TestSubprotocolHeaderLines(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	hdr := http.Header{"Sec-Websocket-Protocol": {"other.v2", protocol.Subprotocol}}
	rc, resp := rawDial(t, ts.addr, "/ws", hdr, 0)
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != protocol.Subprotocol {
		t.Errorf("selected %q, want %q", got, protocol.Subprotocol)
	}
	if _, e := rc.nextText(); e.Type != "connection_established" {
		t.Fatalf("first message %s", encode(e))
	}
}

// TestFramesBehindHandshake: a client may send its first frames right
// behind the handshake request, before the 101 arrives; the bytes that the
// HTTP server already buffered must not be lost.
func TestFramesBehindHandshake(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	for _, path := range []string{"/ws", "/echo"} {
		t.Run(path, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", ts.addr, waitLimit)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, ts.addr, validKey)
			msg := `{"type":"ping","id":"early"}`
			b := append([]byte(req), encodeFrame(frame{fin: true, op: 0x1, masked: true, payload: []byte(msg)})...)
			if _, err := nc.Write(b); err != nil {
				t.Fatal(err)
			}
			rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
			_ = nc.SetReadDeadline(deadline())
			resp, err := http.ReadResponse(rc.br, &http.Request{Method: http.MethodGet})
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("handshake: %v %v", resp, err)
			}
			if path == "/ws" {
				rc.nextText() // connection_established
				if _, e := rc.nextText(); e.Type != "pong" || e.ID != "early" {
					t.Fatalf("got %s, want the early ping's pong", encode(e))
				}
				return
			}
			f, err := rc.readFrame()
			if err != nil || string(f.payload) != msg {
				t.Fatalf("echo %q %v, want the early frame back", f.payload, err)
			}
		})
	}
}

// TestMaxConnectionsConcurrent: handshakes racing for the last slots do not
// overshoot the cap.
func TestMaxConnectionsConcurrent(t *testing.T) {
	t.Parallel()
	const limit, dialers = 5, 40
	ts := startServer(t, server.Config{Transport: transport.Options{MaxConnections: limit}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	start := make(chan struct{})
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, resp, err := (&websocket.Dialer{HandshakeTimeout: waitLimit}).Dial(ts.url("/ws"), nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted++
				t.Cleanup(func() { c.Close() })
			case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
				refused++
			default:
				t.Errorf("dial: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if accepted != limit || refused != dialers-limit {
		t.Errorf("%d accepted, %d refused; want %d and %d", accepted, refused, limit, dialers-limit)
	}
	if open := ts.srv.WS.Open(); open != accepted {
		t.Errorf("Open() = %d, want %d", open, accepted)
	}
}
