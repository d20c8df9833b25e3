package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// waitLimit bounds every wait for something the server should do soon. It
// is a deadlock guard, not a speed expectation.
const waitLimit = 10 * time.Second

// testServer is a node serving on a loopback port.
type testServer struct {
	srv    *server.Server
	addr   string // 127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
}

// startServer starts server.New(cfg) on 127.0.0.1:0 and drains it when the
// test ends.
func startServer(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	cfg.Listen = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("server.New: %v", err)
	}
	ts := &testServer{srv: srv, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(cfg.DrainTimeout + waitLimit):
			t.Errorf("Serve did not return after the drain")
		}
	})
	return ts
}

func (ts *testServer) url(path string) string { return "ws://" + ts.addr + path }

// waitFor polls cond until it holds or waitLimit passes.
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

// ---- gorilla client ----

// wsClient is a gorilla connection with a read goroutine, so tests can wait
// for the next message with a bound.
type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	resp *http.Response
	msgs chan wsMsg
	err  chan error // the read error that ended the loop
}

type wsMsg struct {
	kind int
	data []byte
}

func dial(t *testing.T, url string, d *websocket.Dialer, hdr http.Header) *wsClient {
	t.Helper()
	c, err := tryDial(t, url, d, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func tryDial(t *testing.T, url string, d *websocket.Dialer, hdr http.Header) (*wsClient, error) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	d.HandshakeTimeout = waitLimit
	c, resp, err := d.Dial(url, hdr)
	if err != nil {
		return nil, err
	}
	return startClient(t, c, resp), nil
}

// startClient starts the read loop. Call before any read; set handlers
// (ping) before calling.
func startClient(t *testing.T, c *websocket.Conn, resp *http.Response) *wsClient {
	wc := &wsClient{t: t, c: c, resp: resp, msgs: make(chan wsMsg, 4096), err: make(chan error, 1)}
	c.SetReadLimit(32 << 20)
	go func() {
		defer close(wc.msgs)
		for {
			k, b, err := c.ReadMessage()
			if err != nil {
				wc.err <- err
				return
			}
			wc.msgs <- wsMsg{k, b}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return wc
}

// dialWS connects to /ws and consumes connection_established.
func (ts *testServer) dialWS(t *testing.T) *wsClient {
	t.Helper()
	c := dial(t, ts.url("/ws"), nil, nil)
	if e := c.next(); e.Type != protocol.TypeConnectionEstablished {
		t.Fatalf("first message is %q, want connection_established", e.Type)
	}
	return c
}

func (c *wsClient) raw() wsMsg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection ended while a message was expected: %v", c.readErr())
		}
		return m
	case <-time.After(waitLimit):
		c.t.Fatalf("no message within %s", waitLimit)
	}
	return wsMsg{}
}

// next returns the next message as an envelope.
func (c *wsClient) next() *protocol.Envelope {
	c.t.Helper()
	m := c.raw()
	if m.kind != websocket.TextMessage {
		c.t.Fatalf("got a message of kind %d, want text", m.kind)
	}
	var e protocol.Envelope
	if err := json.Unmarshal(m.data, &e); err != nil {
		c.t.Fatalf("server sent invalid JSON %q: %v", m.data, err)
	}
	return &e
}

// expect returns the next message and fails unless it has type typ.
func (c *wsClient) expect(typ string) *protocol.Envelope {
	c.t.Helper()
	e := c.next()
	if e.Type != typ {
		c.t.Fatalf("got %s, want type %q", encode(e), typ)
	}
	return e
}

// expectError returns the next message, which must be an error event with
// code and ref.
func (c *wsClient) expectError(code, ref string) protocol.Error {
	c.t.Helper()
	e := c.expect(protocol.TypeError)
	var pe protocol.Error
	if err := json.Unmarshal(e.Data, &pe); err != nil {
		c.t.Fatalf("error data %s: %v", e.Data, err)
	}
	if pe.Code != code || pe.Ref != ref || e.ID != ref || pe.Message == "" {
		c.t.Fatalf("got error %s, want code %q ref %q and a message", encode(e), code, ref)
	}
	return pe
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.c.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// roundTrip proves the connection is open and everything sent to it before
// has been read: an app-level ping must come back as the next message.
func (c *wsClient) roundTrip(id string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"ping","id":%q}`, id))
	if e := c.expect(protocol.TypePong); e.ID != id {
		c.t.Fatalf("pong id %q, want %q", e.ID, id)
	}
}

// subscribe joins room and waits until the server has finished the join:
// the user_joined notice is published after the subscribed answer, and a
// member subscribing meanwhile would see it (TestJoinNoticeRace).
func (c *wsClient) subscribe(room string) *protocol.Envelope {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"subscribe","id":"sub-%s","room":%q}`, room, room))
	e := c.expect(protocol.TypeSubscribed)
	if e.Room != room || e.ID != "sub-"+room {
		c.t.Fatalf("subscribed %s, want room %q", encode(e), room)
	}
	c.roundTrip("joined-" + room) // handled after the join completed
	return e
}

func (c *wsClient) readErr() error {
	select {
	case err := <-c.err:
		c.err <- err
		return err
	case <-time.After(waitLimit):
		return errors.New("read loop still running")
	}
}

// expectClose reads until the connection ends and returns the close code
// (or fails if it ended without a close frame). Messages before it are
// returned too.
func (c *wsClient) expectClose() (int, []*protocol.Envelope) {
	c.t.Helper()
	var got []*protocol.Envelope
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				var ce *websocket.CloseError
				err := c.readErr()
				if !errors.As(err, &ce) {
					c.t.Fatalf("connection ended without a close frame: %v", err)
				}
				return ce.Code, got
			}
			var e protocol.Envelope
			if json.Unmarshal(m.data, &e) == nil {
				got = append(got, &e)
			}
		case <-time.After(waitLimit):
			c.t.Fatalf("connection not closed within %s", waitLimit)
		}
	}
}

// expectDisconnect requires a disconnect event with code as the last
// message, then a close frame with the same code.
func (c *wsClient) expectDisconnect(code protocol.CloseCode) protocol.Disconnect {
	c.t.Helper()
	got, msgs := c.expectClose()
	if got != int(code) {
		c.t.Fatalf("close code %d, want %d", got, code)
	}
	return lastDisconnect(c.t, msgs, code)
}

func lastDisconnect(t *testing.T, msgs []*protocol.Envelope, code protocol.CloseCode) protocol.Disconnect {
	t.Helper()
	if len(msgs) == 0 || msgs[len(msgs)-1].Type != protocol.TypeDisconnect {
		t.Fatalf("no disconnect event before the close frame (got %d messages)", len(msgs))
	}
	var d protocol.Disconnect
	if err := json.Unmarshal(msgs[len(msgs)-1].Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Code != code || d.Reason == "" || d.Reconnect != code.Reconnect() {
		t.Fatalf("disconnect %+v, want code %d with a reason and reconnect %v", d, code, code.Reconnect())
	}
	return d
}

func encode(e *protocol.Envelope) string { return string(protocol.Encode(e)) }

// ---- raw TCP client: handshakes and frames as bytes ----

// validKey is a Sec-WebSocket-Key (16 bytes in base64).
const validKey = "dGhlIHNhbXBsZSBub25jZQ=="

// handshakeHeaders are the headers of a valid handshake; tests delete or
// change some.
func handshakeHeaders() http.Header {
	h := http.Header{}
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Key", validKey)
	h.Set("Sec-WebSocket-Version", "13")
	return h
}

// rawConn is a TCP connection speaking WebSocket by hand.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// rawRequest sends method path with exactly hdr (plus Host) and returns the
// response; on 101 the connection is ready for frames.
// A positive rcvbuf sets SO_RCVBUF before connecting, so the window the
// client advertises stays small.
func rawRequest(t *testing.T, addr, method, path string, hdr http.Header, rcvbuf int) (*rawConn, *http.Response) {
	t.Helper()
	return rawRequestProto(t, addr, method, path, "HTTP/1.1", hdr, rcvbuf)
}

// rawRequestProto is rawRequest with another HTTP version on the request
// line.
func rawRequestProto(t *testing.T, addr, method, path, proto string, hdr http.Header, rcvbuf int) (*rawConn, *http.Response) {
	t.Helper()
	d := net.Dialer{Timeout: waitLimit}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = setRcvBuf(fd, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", method, path, proto, addr)
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if method != http.MethodGet {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	_ = nc.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(nc, b.String()); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, path, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return rc, resp
}

// rawDial completes a valid handshake on path with extra headers.
func rawDial(t *testing.T, addr, path string, extra http.Header, rcvbuf int) (*rawConn, *http.Response) {
	t.Helper()
	hdr := handshakeHeaders()
	for k, vs := range extra {
		hdr.Del(k)
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
	rc, resp := rawRequest(t, addr, http.MethodGet, path, hdr, rcvbuf)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("handshake: status %d %s", resp.StatusCode, body)
	}
	return rc, resp
}

// frame is one WebSocket frame as sent or received.
type frame struct {
	fin     bool
	rsv     byte // the three RSV bits, as 0x40|0x20|0x10
	op      byte
	masked  bool
	payload []byte
}

var maskKey = [4]byte{0x12, 0x34, 0x56, 0x78}

// encodeFrame returns f's bytes; a masked frame uses maskKey.
func encodeFrame(f frame) []byte {
	b0 := f.op | f.rsv
	if f.fin {
		b0 |= 0x80
	}
	var mbit byte
	if f.masked {
		mbit = 0x80
	}
	n := len(f.payload)
	out := []byte{b0}
	switch {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xFFFF:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !f.masked {
		return append(out, f.payload...)
	}
	out = append(out, maskKey[:]...)
	for i, c := range f.payload {
		out = append(out, c^maskKey[i%4])
	}
	return out
}

func (rc *rawConn) write(b []byte) error {
	_ = rc.nc.SetWriteDeadline(time.Now().Add(waitLimit))
	_, err := rc.nc.Write(b)
	return err
}

// writeFrame sends one frame (masked unless f says otherwise via unmasked).
func (rc *rawConn) writeFrame(f frame) {
	rc.t.Helper()
	if err := rc.write(encodeFrame(f)); err != nil {
		rc.t.Fatalf("write frame: %v", err)
	}
}

func (rc *rawConn) sendText(s string) {
	rc.t.Helper()
	rc.writeFrame(frame{fin: true, op: 0x1, masked: true, payload: []byte(s)})
}

// readFrame reads one server frame; server frames must be unmasked.
func (rc *rawConn) readFrame() (frame, error) {
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitLimit))
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, rsv: h[0] & 0x70, op: h[0] & 0x0F, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if f.masked {
		return f, errors.New("server sent a masked frame")
	}
	if n > 64<<20 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, f.payload); err != nil {
		return frame{}, err
	}
	return f, nil
}

// readUntilClose reads frames until a close frame and returns its code
// and the text frames before it (uncompressed ones only). Pings are
// answered.
func (rc *rawConn) readUntilClose() (int, []*protocol.Envelope) {
	rc.t.Helper()
	var got []*protocol.Envelope
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("connection ended without a close frame: %v", err)
		}
		switch f.op {
		case 0x8:
			if len(f.payload) < 2 {
				rc.t.Fatalf("close frame without a code")
			}
			return int(binary.BigEndian.Uint16(f.payload)), got
		case 0x1:
			var e protocol.Envelope
			if f.rsv == 0 && json.Unmarshal(f.payload, &e) == nil {
				got = append(got, &e)
			}
		case 0x9:
			rc.writeFrame(frame{fin: true, op: 0xA, masked: true, payload: f.payload})
		}
	}
}

// expectClose requires a close frame with code (after any frames).
func (rc *rawConn) expectClose(code int) []*protocol.Envelope {
	rc.t.Helper()
	got, msgs := rc.readUntilClose()
	if got != code {
		rc.t.Fatalf("close code %d, want %d", got, code)
	}
	return msgs
}

// nextText returns the next text frame's envelope, answering pings.
func (rc *rawConn) nextText() (frame, *protocol.Envelope) {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("read: %v", err)
		}
		if f.op == 0x9 {
			rc.writeFrame(frame{fin: true, op: 0xA, masked: true, payload: f.payload})
			continue
		}
		if f.op == 0xA {
			continue
		}
		if f.op != 0x1 {
			rc.t.Fatalf("got opcode %#x, want a text frame", f.op)
		}
		var e protocol.Envelope
		if f.rsv == 0 {
			if err := json.Unmarshal(f.payload, &e); err != nil {
				rc.t.Fatalf("invalid JSON %q", f.payload)
			}
		}
		return f, &e
	}
}

// jsonBody decodes a refusal's {"error":{"code","message"}} body.
func jsonBody(t *testing.T, resp *http.Response) (code, msg string) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json (body %q)", ct, b)
	}
	var v struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
	if v.Error.Code == "" || v.Error.Message == "" {
		t.Fatalf("body %q lacks error.code or error.message", b)
	}
	return v.Error.Code, v.Error.Message
}

// bytesRepeat makes a JSON-safe string of n bytes.
func bytesRepeat(n int) string { return string(bytes.Repeat([]byte("abcdefgh"), n/8+1)[:n]) }

func deadline() time.Time { return time.Now().Add(waitLimit) }
