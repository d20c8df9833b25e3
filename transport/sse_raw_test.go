package transport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// rawSSE is a GET /sse over a TCP connection of the test's own, read
// byte for byte as the server wrote it.
type rawSSE struct {
	t    *testing.T
	nc   net.Conn
	br   *bufio.Reader
	head []string // the status line, then each header line
}

// dialSSE sends GET /sse?query with extra header lines and reads the
// response head.
func dialSSE(t *testing.T, addr, query string, extra ...string) *rawSSE {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /sse?" + query + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	_ = nc.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	s := &rawSSE{t: t, nc: nc, br: bufio.NewReader(nc)}
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			t.Fatalf("response head: %q, then %v", s.head, err)
		}
		if line == "\r\n" {
			return s
		}
		s.head = append(s.head, strings.TrimSuffix(line, "\r\n"))
	}
}

// event reads the next event's bytes, up to and with its blank line;
// heartbeat comments are skipped.
func (s *rawSSE) event() string {
	s.t.Helper()
	_ = s.nc.SetReadDeadline(time.Now().Add(waitLimit))
	var b strings.Builder
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("after %q: %v", b.String(), err)
		}
		if b.Len() == 0 && strings.HasPrefix(line, ":") {
			if _, err := s.br.ReadString('\n'); err != nil {
				s.t.Fatal(err)
			}
			continue
		}
		b.WriteString(line)
		if line == "\n" {
			return b.String()
		}
	}
}

// data is the data field of an event read by event.
func data(ev string) string {
	for line := range strings.SplitSeq(ev, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			return d
		}
	}
	return ""
}

// disconnect reads events up to a disconnect event, which must then end
// the response, and returns it.
func (s *rawSSE) disconnect() protocol.Disconnect {
	s.t.Helper()
	for range 10000 {
		ev := s.event()
		if !strings.HasPrefix(data(ev), `{"type":"disconnect"`) {
			continue
		}
		var env struct{ Data protocol.Disconnect }
		if err := json.Unmarshal([]byte(data(ev)), &env); err != nil {
			s.t.Fatal(err)
		}
		if rest, err := io.ReadAll(s.br); err != nil || len(rest) > 0 {
			s.t.Errorf("after the disconnect event: %q, %v; want the end of the connection", rest, err)
		}
		return env.Data
	}
	s.t.Fatal("no disconnect event")
	return protocol.Disconnect{}
}

// streamsRunning counts the goroutines running an SSE stream.
func streamsRunning() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "transport.(*sseConn).stream(")
}

// On HTTP/1.1 the stream takes its connection over: a response head of
// its own, no chunked encoding, the events as they are, and the end of
// the connection after the disconnect event.
func TestSSEHijackedResponse(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{AllowedOrigins: []string{"app.example.com"}}})
	s := dialSSE(t, n.Addr, "room=raw", "Origin: https://app.example.com")
	want := []string{
		"HTTP/1.1 200 OK",
		"Access-Control-Allow-Credentials: true",
		"Access-Control-Allow-Origin: https://app.example.com",
		"Cache-Control: no-cache, no-transform",
		"Connection: close",
		"Content-Type: text/event-stream",
		"Vary: Origin",
		"X-Accel-Buffering: no",
		"X-Content-Type-Options: nosniff",
	}
	if strings.Join(s.head, "\n") != strings.Join(want, "\n") {
		t.Errorf("response head:\n%s\nwant:\n%s", strings.Join(s.head, "\n"), strings.Join(want, "\n"))
	}
	if ev := s.event(); ev != "retry: 2000\n\n" {
		t.Errorf("first event %q", ev)
	}
	if ev := s.event(); !strings.HasPrefix(ev, "event: connection_established\ndata: {") {
		t.Errorf("second event %q", ev)
	}
	sub := s.event()
	if !strings.HasPrefix(sub, "id: ") || !strings.Contains(sub, "\nevent: subscribed\ndata: {") {
		t.Errorf("subscribed %q", sub)
	}
	// Bytes the client sends are ignored.
	if _, err := io.WriteString(s.nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\nnonsense"); err != nil {
		t.Fatal(err)
	}
	id := publish(t, n, "raw", "message", `{"n":1}`)
	ev := s.event()
	if want := "id: " + id + "\ndata: "; !strings.HasPrefix(ev, want) || strings.Count(ev, "\n") != 3 {
		t.Errorf("event %q, want %q...", ev, want)
	}
	var env protocol.Envelope
	if err := json.Unmarshal([]byte(data(ev)), &env); err != nil || env.ID != id || string(env.Data) != `{"n":1}` {
		t.Errorf("event %q: %v", ev, err)
	}
	id = publish(t, n, "raw", "chat.line", `{"text":"hi"}`)
	if ev := s.event(); !strings.HasPrefix(ev, "id: "+id+"\nevent: chat.line\ndata: {") {
		t.Errorf("event %q", ev)
	}
	go n.Stop()
	if d := s.disconnect(); d.Code != protocol.CloseServiceRestart || !d.Reconnect {
		t.Errorf("drain: disconnect %+v", d)
	}
}

// Several rooms over the hijacked path: each event's id is the stream's
// composite position.
func TestSSEHijackedSeveralRooms(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	a0 := publish(t, n, "a", "message", `{}`)
	s := dialSSE(t, n.Addr, "room=a,b")
	s.event() // retry
	s.event() // connection_established
	if ev := s.event(); !strings.HasPrefix(ev, "id: "+a0+",\nevent: subscribed\n") {
		t.Errorf("subscribed a: %q", ev)
	}
	ev := s.event()
	b0, _, _ := strings.Cut(strings.TrimPrefix(ev, "id: "+a0+","), "\n")
	if _, ok := protocol.ParseEventID(b0); !ok {
		t.Fatalf("subscribed b: %q", ev)
	}
	for i := range 3 {
		b := publish(t, n, "b", "message", `{"b":1}`)
		a := publish(t, n, "a", "message", `{"a":1}`)
		if ev := s.event(); !strings.HasPrefix(ev, "id: "+a0+","+b+"\ndata: ") {
			t.Errorf("%d: event of b %q, want id %s,%s", i, ev, a0, b)
		}
		if ev := s.event(); !strings.HasPrefix(ev, "id: "+a+","+b+"\ndata: ") {
			t.Errorf("%d: event of a %q, want id %s,%s", i, ev, a, b)
		}
		a0 = a
	}
}

// A client that goes away mid-stream frees its hub client and the
// goroutines of its stream.
func TestSSEHijackedClientGone(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	before := streamsRunning()
	var streams []*rawSSE
	for range 20 {
		s := dialSSE(t, n.Addr, "room=gone")
		s.event()
		s.event()
		s.event()
		streams = append(streams, s)
	}
	waitFor(t, "20 streams", func() bool { return n.Srv.Hub.Stats().Connections == 20 })
	for i, s := range streams {
		if i%2 == 0 {
			_ = s.nc.Close()
		} else {
			_ = s.nc.(*net.TCPConn).SetLinger(0) // a reset
			_ = s.nc.Close()
		}
		publish(t, n, "gone", "message", `{}`)
	}
	waitFor(t, "the streams to leave the hub", func() bool {
		return n.Srv.Hub.Stats().Connections == 0 && n.Srv.SSE.Open() == 0
	})
	waitFor(t, "the streams' goroutines to end", func() bool { return streamsRunning() <= before })
}

// A hijacked stream that stops reading is a slow consumer: with the
// disconnect policy, once it reads again it gets what was written, then
// `disconnect` 4005, then the end of the connection.
func TestSSEHijackedSlowConsumer(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{QueueMaxMessages: 8, WriteTimeout: waitLimit}})
	s := dialSSE(t, n.Addr, "room=flood")
	s.event()
	big := `{"pad":"` + bytesRepeat(32<<10) + `"}`
	for i := 0; i < 2000 && n.Srv.Hub.Stats().SlowConsumerDisconnects == 0; i++ {
		publish(t, n, "flood", "message", big)
	}
	if n.Srv.Hub.Stats().SlowConsumerDisconnects != 1 {
		t.Fatal("no slow consumer disconnect after 2000 events of 32 KiB to a stream that does not read")
	}
	if d := s.disconnect(); d.Code != protocol.CloseSlowConsumer || !d.Reconnect {
		t.Errorf("disconnect %+v", d)
	}
	waitFor(t, "the stream to leave the hub", func() bool { return n.Srv.Hub.Stats().Connections == 0 })
}

// A write that cannot finish within WriteTimeout ends the stream: with
// drop_oldest the queue never overflows, the write deadline does it.
func TestSSEHijackedWriteTimeout(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{
		QueueMaxMessages: 4, SlowConsumerPolicy: "drop_oldest", WriteTimeout: time.Second,
	}})
	rc, resp := rawRequest(t, n.Addr, "GET", "/sse?room=stall", nil, 4096)
	if resp.StatusCode != 200 || resp.TransferEncoding != nil || !resp.Close {
		t.Fatalf("status %d, transfer encoding %v, close %v", resp.StatusCode, resp.TransferEncoding, resp.Close)
	}
	big := `{"pad":"` + bytesRepeat(32<<10) + `"}`
	deadline := time.Now().Add(waitLimit)
	for n.Srv.Hub.Stats().Connections > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stream still open %s after it stopped reading, with a write timeout of 1 s", waitLimit)
		}
		publish(t, n, "stall", "message", big)
		time.Sleep(5 * time.Millisecond)
	}
	if st := n.Srv.Hub.Stats(); st.SlowConsumerDisconnects != 0 {
		t.Errorf("stats %+v: want the write deadline, not the queue, to end it", st)
	}
	// The server closed the connection: reading reaches its end.
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.Copy(io.Discard, rc.br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("reading the stalled stream: %v", err)
	}
}

// Over TLS: HTTP/2 cannot be hijacked, so the stream stays with net/http;
// HTTP/1.1 is hijacked, and with no descriptor for direct writes (a
// tls.Conn) every write goes through the flush goroutine and the net.Conn.
func TestSSEOverTLS(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv, err := server.New(ctx, server.Config{NoDemo: true, NoAdmin: true})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewUnstartedServer(srv.Handler())
		ts.EnableHTTP2 = h2
		ts.StartTLS()
		defer ts.Close()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sse?room=tls", nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		wantMajor, wantClose := 1, true
		if h2 {
			wantMajor, wantClose = 2, false
		}
		if resp.ProtoMajor != wantMajor || resp.Close != wantClose || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("HTTP/2 %v: %s %s, close %v, Content-Type %q", h2, resp.Proto, resp.Status, resp.Close, resp.Header.Get("Content-Type"))
		}
		s := &sseStream{t: t, resp: resp, ch: make(chan sseEvent, 64), errc: make(chan error, 1)}
		go s.read()
		s.subscribed(1)
		for i := range 3 {
			res, err := srv.Hub.Publish(ctx, "tls", "message", json.RawMessage(`{"n":`+strconv.Itoa(i)+`}`), hub.PublishOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ev, _ := s.expect(""); ev.ID != res.EventID {
				t.Errorf("HTTP/2 %v: event %+v, want id %s", h2, ev, res.EventID)
			}
		}
		resp.Body.Close()
		waitFor(t, "the stream to leave the hub", func() bool { return srv.Hub.Stats().Connections == 0 })
	}
}

// noHijack is a ResponseWriter that flushes but cannot be hijacked, as a
// middleware's wrapper may be.
type noHijack struct{ http.ResponseWriter }

func (w noHijack) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// On HTTP/1.1, a ResponseWriter that cannot be hijacked keeps the stream
// with net/http: chunked, and the connection stays net/http's.
func TestSSENotHijackable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{NoDemo: true, NoAdmin: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(noHijack{w}, r)
	}))
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/sse?room=wrapped")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("%s, close %v, transfer encoding %v: want a chunked net/http response", resp.Status, resp.Close, resp.TransferEncoding)
	}
	s := &sseStream{t: t, resp: resp, ch: make(chan sseEvent, 64), errc: make(chan error, 1)}
	go s.read()
	s.subscribed(1)
	res, err := srv.Hub.Publish(ctx, "wrapped", "message", json.RawMessage(`{"w":1}`), hub.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ := s.expect(""); ev.ID != res.EventID {
		t.Errorf("event %+v, want id %s", ev, res.EventID)
	}
	if err := srv.Hub.DisconnectUser(ctx, firstUser(t, &wstest.Node{Srv: srv}), protocol.NewDisconnect(protocol.CloseKicked, "bye")); err != nil {
		t.Fatal(err)
	}
	if d := lastSSEDisconnect(t, s.ended()); d.Code != protocol.CloseKicked {
		t.Errorf("disconnect %+v", d)
	}
	waitFor(t, "the stream to leave the hub", func() bool { return srv.Hub.Stats().Connections == 0 })
}
