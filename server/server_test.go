package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// waitLimit bounds every wait; a deadlock guard, not a speed expectation.
const waitLimit = 10 * time.Second

type node struct {
	srv    *server.Server
	addr   string
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// start runs server.New(cfg) + Serve on 127.0.0.1:0. The test stops it
// with n.cancel (or cleanup does).
func start(t *testing.T, cfg server.Config) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	n := &node{srv: srv, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(cfg.DrainTimeout + waitLimit):
			t.Error("Serve did not return")
		}
	})
	return n
}

// serveResult waits for Serve to return after n.cancel.
func (n *node) serveResult(t *testing.T) error {
	t.Helper()
	select {
	case err := <-n.done:
		n.done <- err // for cleanup
		return err
	case <-time.After(n.srv.Config().DrainTimeout + waitLimit):
		t.Fatal("Serve did not return")
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a gorilla connection whose messages are read by a goroutine.
type client struct {
	c    *websocket.Conn
	msgs chan []byte
	end  chan error
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, _, err := (&websocket.Dialer{HandshakeTimeout: waitLimit}).Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{c: c, msgs: make(chan []byte, 1024), end: make(chan error, 1)}
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				cl.end <- err
				close(cl.msgs)
				return
			}
			cl.msgs <- b
		}
	}()
	if e := cl.next(t); e.Type != protocol.TypeConnectionEstablished {
		t.Fatalf("first message %q", e.Type)
	}
	return cl
}

func (cl *client) next(t *testing.T) *protocol.Envelope {
	t.Helper()
	select {
	case b, ok := <-cl.msgs:
		if !ok {
			t.Fatalf("connection ended: %v", <-cl.end)
		}
		var e protocol.Envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		return &e
	case <-time.After(waitLimit):
		t.Fatal("no message")
	}
	return nil
}

func (cl *client) send(t *testing.T, s string) {
	t.Helper()
	if err := cl.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// closeCode waits for the end of the connection and returns the close
// code the server sent.
func (cl *client) closeCode(t *testing.T) int {
	t.Helper()
	for range cl.msgs {
		t.Fatal("unexpected message before the close")
	}
	var ce *websocket.CloseError
	if err := <-cl.end; !errors.As(err, &ce) {
		t.Fatalf("ended without a close frame: %v", err)
	}
	return ce.Code
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{Hub: hub.Options{NoJoinLeave: true}})
	h := n.srv.Hub
	clients := []*client{dial(t, n.addr), dial(t, n.addr), dial(t, n.addr)}
	for i, cl := range clients {
		cl.send(t, fmt.Sprintf(`{"type":"subscribe","id":"s","room":"room:%d"}`, i%2))
		cl.next(t)
	}
	// Queue events, then drain at once: they arrive before the disconnect.
	const events = 200
	for i := range events {
		for r := range 2 {
			data := json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", 500)))
			if _, err := h.Publish(context.Background(), fmt.Sprintf("room:%d", r), "message", data, hub.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n.cancel()
	for i, cl := range clients {
		for want := range events {
			e := cl.next(t)
			var d struct{ N int }
			if e.Type != "message" || json.Unmarshal(e.Data, &d) != nil || d.N != want {
				t.Fatalf("client %d: got %s, want event %d", i, protocol.Encode(e), want)
			}
		}
		e := cl.next(t)
		var d protocol.Disconnect
		if e.Type != protocol.TypeDisconnect || json.Unmarshal(e.Data, &d) != nil || d.Code != 1012 || !d.Reconnect || d.Reason == "" {
			t.Fatalf("client %d: got %s, want disconnect 1012 with reconnect", i, protocol.Encode(e))
		}
		if code := cl.closeCode(t); code != 1012 {
			t.Fatalf("client %d: close %d, want 1012", i, code)
		}
	}
	if err := n.serveResult(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	st := h.Stats()
	if st.Connections != 0 || st.Rooms != 0 || len(h.Rooms()) != 0 || st.Closes["1012"] != 3 {
		t.Fatalf("after the drain: %d connections, %d rooms, closes %v", st.Connections, st.Rooms, st.Closes)
	}
	if _, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
		t.Error("the listener is still open after Serve returned")
	}
}

// rawHold completes a handshake and then neither reads nor answers the
// close: it holds the drain open until the server gives up on it.
func rawHold(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	_ = nc.SetReadDeadline(time.Now().Add(waitLimit))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc
}

func get(t *testing.T, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: waitLimit}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, nil // the body is the upgraded connection
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func errorCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	var v struct {
		Error struct{ Code, Message string }
	}
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &v) != nil || v.Error.Message == "" {
		t.Fatalf("status %d: body %q (%s) is not a JSON error", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	return v.Error.Code
}

var wsHeaders = http.Header{
	"Upgrade":               {"websocket"},
	"Connection":            {"Upgrade"},
	"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	"Sec-Websocket-Version": {"13"},
}

// TestDrainRefusesNewWork: while a drain waits for a client, new
// handshakes get 503 and /readyz reports not ready; /healthz stays up.
func TestDrainRefusesNewWork(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{})
	rawHold(t, n.addr)
	if resp, _ := get(t, "http://"+n.addr+"/readyz", nil); resp.StatusCode != 200 {
		t.Fatalf("/readyz %d before the drain", resp.StatusCode)
	}
	n.cancel()
	// Handshakes racing the cancel may still be accepted; once the drain
	// has begun they are refused.
	waitFor(t, "handshakes to be refused", func() bool {
		resp, body := get(t, "http://"+n.addr+"/ws", wsHeaders)
		return resp.StatusCode == 503 && errorCode(t, resp, body) == "shutting_down" && resp.Header.Get("Retry-After") != ""
	})
	// The held connection keeps the drain going: still refusing.
	resp, body := get(t, "http://"+n.addr+"/ws", wsHeaders)
	if resp.StatusCode != 503 || errorCode(t, resp, body) != "shutting_down" {
		t.Fatalf("handshake during the drain: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, "http://"+n.addr+"/readyz", nil)
	if resp.StatusCode != 503 {
		t.Errorf("/readyz during the drain: %d %s, want 503", resp.StatusCode, body)
	}
	if resp, _ := get(t, "http://"+n.addr+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("/healthz during the drain: %d", resp.StatusCode)
	}
	if err := n.serveResult(t); err != nil {
		t.Fatalf("Serve: %v (the held connection should be cut by the close linger, within the drain timeout)", err)
	}
	waitFor(t, "all connections gone", func() bool { return n.srv.Hub.Stats().Connections == 0 && n.srv.WS.Open() == 0 })
}

// TestDrainDeadline: a connection that outlasts DrainTimeout is cut and
// Serve reports it.
func TestDrainDeadline(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{DrainTimeout: 300 * time.Millisecond})
	rawHold(t, n.addr)
	n.cancel()
	err := n.serveResult(t)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("Serve: %v, want a drain deadline error", err)
	}
	waitFor(t, "the cut connection to be gone", func() bool { return n.srv.Hub.Stats().Connections == 0 && n.srv.WS.Open() == 0 })
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{})
	noDemo := start(t, server.Config{NoDemo: true})
	base := "http://" + n.addr
	tests := []struct {
		name   string
		url    string
		status int
		check  func(t *testing.T, resp *http.Response, body []byte)
	}{
		{"healthz", base + "/healthz", 200, func(t *testing.T, resp *http.Response, body []byte) {
			if !strings.Contains(string(body), `"ok"`) || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("body %q", body)
			}
		}},
		{"readyz", base + "/readyz", 200, func(t *testing.T, resp *http.Response, body []byte) {
			if !strings.Contains(string(body), `"ready"`) {
				t.Errorf("body %q", body)
			}
		}},
		{"demo page", base + "/", 200, func(t *testing.T, resp *http.Response, body []byte) {
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "WebSocket") {
				t.Errorf("demo page: %s %.100q", resp.Header.Get("Content-Type"), body)
			}
			if resp.Header.Get("Content-Security-Policy") == "" {
				t.Error("demo page without a Content-Security-Policy")
			}
		}},
		{"unknown path", base + "/nope", 404, func(t *testing.T, resp *http.Response, body []byte) {
			if code := errorCode(t, resp, body); code != "not_found" {
				t.Errorf("code %q", code)
			}
		}},
		{"no demo", "http://" + noDemo.addr + "/", 404, func(t *testing.T, resp *http.Response, body []byte) {
			errorCode(t, resp, body)
		}},
		{"ws without upgrade", base + "/ws", 400, func(t *testing.T, resp *http.Response, body []byte) {
			if code := errorCode(t, resp, body); code != "bad_handshake" {
				t.Errorf("code %q", code)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.url, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tt.status)
			}
			tt.check(t, resp, body)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := srv.Config()
	if c.Listen != ":8080" || c.WSPath != "/ws" || c.DrainTimeout != 10*time.Second || c.Transport.MaxConnections <= 0 || c.Logger == nil {
		t.Errorf("defaults: listen %q ws %q drain %s max %d", c.Listen, c.WSPath, c.DrainTimeout, c.Transport.MaxConnections)
	}
}

func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  server.Config
	}{
		{"heartbeat too short", server.Config{Transport: transport.Options{HeartbeatInterval: time.Second}}},
		{"heartbeat too long", server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Minute}}},
		{"pong timeout not below interval", server.Config{Transport: transport.Options{HeartbeatInterval: 10 * time.Second, PongTimeout: 10 * time.Second}}},
		{"unknown policy", server.Config{Transport: transport.Options{SlowConsumerPolicy: "drop_newest"}}},
		{"negative max connections", server.Config{Transport: transport.Options{MaxConnections: -1}}},
		{"empty origin pattern", server.Config{Transport: transport.Options{AllowedOrigins: []string{""}}}},
		{"negative history TTL", server.Config{Hub: hub.Options{History: engine.HistoryPolicy{TTL: -time.Second}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := server.New(ctx, tt.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// TestConfigOwnedFields: the Hub and Transport fields that New fills from
// the rest of Config are refused, naming the field to use, rather than
// quietly overwritten.
func TestConfigOwnedFields(t *testing.T) {
	t.Parallel()
	fallback := func(context.Context, hub.RPCCall) (json.RawMessage, error) { return nil, nil }
	tests := []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"hub engine", server.Config{Hub: hub.Options{Engine: memory.New(memory.Options{})}}, "Config.Hub.Engine is set by New: use Config.Engine"},
		{"hub node id", server.Config{Hub: hub.Options{NodeID: "n1"}}, "Config.Hub.NodeID is set by New: use Config.NodeID"},
		{"hub auth timeout", server.Config{Hub: hub.Options{Auth: hub.AuthOptions{Timeout: time.Second}}}, "use Config.Auth"},
		{"hub auth anonymous", server.Config{Hub: hub.Options{Auth: hub.AuthOptions{AllowAnonymous: true}}}, "use Config.Auth"},
		{"transport token cookie", server.Config{Transport: transport.Options{TokenCookie: "t"}}, "use Config.Auth.TokenCookie"},
		{"rpc fallback and proxy", server.Config{Hub: hub.Options{RPCFallback: fallback}, RPCProxyURL: "http://127.0.0.1:1/rpc"}, "both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := server.New(ctx, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// What New does not fill is carried as it is.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{Hub: hub.Options{RPCFallback: fallback, Auth: hub.AuthOptions{MaxViolations: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Config().Hub.RPCFallback == nil {
		t.Error("Hub.RPCFallback dropped")
	}
}

func TestServeListenerError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := srv.Serve(ctx, ln); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

// TestDrainWithHandshakesInFlight: handshakes still arriving when the drain
// starts are either refused (503) or accepted and then drained with 1012;
// none is left behind to hold the drain to its deadline.
func TestDrainWithHandshakesInFlight(t *testing.T) {
	t.Parallel()
	n := start(t, server.Config{DrainTimeout: 5 * time.Second})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{} // close code (or -1: no close frame) per accepted client
	refused := 0
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, resp, err := (&websocket.Dialer{HandshakeTimeout: waitLimit}).Dial("ws://"+n.addr+"/ws", nil)
				if err != nil {
					mu.Lock()
					if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
						refused++
					}
					mu.Unlock()
					if resp == nil {
						return // the listener is closed
					}
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					_ = c.SetReadDeadline(time.Now().Add(2 * waitLimit))
					for {
						if _, _, err := c.ReadMessage(); err != nil {
							var ce *websocket.CloseError
							code := -1
							if errors.As(err, &ce) {
								code = ce.Code
							}
							mu.Lock()
							codes[code]++
							mu.Unlock()
							return
						}
					}
				}()
			}
		}()
	}
	waitFor(t, "some connections", func() bool { return n.srv.Hub.Stats().ConnectionsTotal >= 20 })
	n.cancel()
	err := n.serveResult(t)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("close codes %v, %d refused", codes, refused)
	for code, k := range codes {
		if code != 1012 {
			t.Errorf("%d accepted connections ended with %d, want 1012", k, code)
		}
	}
}

// handshakeOfSize writes a WebSocket handshake whose request line and
// headers (to the blank line) are exactly size bytes, and returns the
// status line of the answer.
func handshakeOfSize(t *testing.T, addr string, size int) string {
	t.Helper()
	head := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Padding: "
	pad := size - len(head) - len("\r\n\r\n")
	if pad < 1 {
		t.Fatalf("size %d too small", size)
	}
	req := head + strings.Repeat("a", pad) + "\r\n\r\n"
	if len(req) != size {
		t.Fatalf("built %d bytes, want %d", len(req), size)
	}
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer to %d header bytes: %v", size, err)
	}
	return strings.TrimSpace(line)
}

// The handshake's request line and headers may take server.MaxHeaderBytes
// (16 KiB, protocol.md section 10) and not one byte more.
func TestHandshakeHeaderLimitEdge(t *testing.T) {
	n := start(t, server.Config{})
	for _, tc := range []struct {
		size int
		want string
	}{
		{server.MaxHeaderBytes - 1, "HTTP/1.1 101 Switching Protocols"},
		{server.MaxHeaderBytes, "HTTP/1.1 101 Switching Protocols"},
		{server.MaxHeaderBytes + 1, "HTTP/1.1 431 Request Header Fields Too Large"},
		{server.MaxHeaderBytes + 4<<10, "HTTP/1.1 431 Request Header Fields Too Large"},
	} {
		if got := handshakeOfSize(t, n.addr, tc.size); got != tc.want {
			t.Errorf("%d bytes of request head: %q, want %q", tc.size, got, tc.want)
		}
	}
}
