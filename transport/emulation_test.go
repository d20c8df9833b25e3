package transport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// emuStream reads envelopes from a live /emulation/stream response, in
// either format; heartbeats are counted, not returned.
type emuStream struct {
	t          *testing.T
	resp       *http.Response
	ch         chan string // one envelope's JSON
	heartbeats chan struct{}
	session    string
	ce         protocol.ConnectionEstablished
}

func openEmu(t *testing.T, addr, format string, hdr http.Header) *emuStream {
	t.Helper()
	resp := getEmu(t, addr, "format="+format, hdr)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /emulation/stream?format=%s: %s %s", format, resp.Status, b)
	}
	want := map[string]string{"ndjson": "application/x-ndjson", "sse": "text/event-stream"}[format]
	if ct := resp.Header.Get("Content-Type"); ct != want {
		t.Fatalf("Content-Type %q, want %q", ct, want)
	}
	if resp.Header.Get("X-Accel-Buffering") != "no" || resp.Header.Get("Cache-Control") != "no-cache, no-transform" {
		t.Errorf("headers %v", resp.Header)
	}
	s := &emuStream{t: t, resp: resp, ch: make(chan string, 1024), heartbeats: make(chan struct{}, 16)}
	go s.read(format)
	t.Cleanup(func() { resp.Body.Close() })
	env := s.expect(protocol.TypeConnectionEstablished)
	if err := json.Unmarshal(env.Data, &s.ce); err != nil {
		t.Fatal(err)
	}
	s.session = s.ce.Session
	wantTransport := map[string]string{"ndjson": "http_stream", "sse": "sse"}[format]
	if s.ce.Transport != wantTransport || s.session == "" {
		t.Fatalf("connection_established %+v: want transport %q and a session", s.ce, wantTransport)
	}
	return s
}

func getEmu(t *testing.T, addr, query string, hdr http.Header) *http.Response {
	t.Helper()
	return httpDo(t, http.MethodGet, "http://"+addr+"/emulation/stream?"+query, nil, hdr)
}

// httpDo sends a request with headers hdr.
func httpDo(t *testing.T, method, url string, body io.Reader, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// read splits the stream: NDJSON lines, or SSE events that must have
// only a data field (no event:, no id:).
func (s *emuStream) read(format string) {
	defer close(s.ch)
	br := bufio.NewReader(s.resp.Body)
	first := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if format == "ndjson" {
			if line == "" {
				s.heartbeat()
				continue
			}
			s.ch <- line
			continue
		}
		switch {
		case line == "":
		case first && line == "retry: 2000":
		case line == ": heartbeat":
			s.heartbeat()
		case strings.HasPrefix(line, "data: "):
			s.ch <- strings.TrimPrefix(line, "data: ")
		default:
			s.ch <- "unexpected SSE line: " + line
		}
		first = false
	}
}

func (s *emuStream) heartbeat() {
	select {
	case s.heartbeats <- struct{}{}:
	default:
	}
}

func (s *emuStream) next() protocol.Envelope {
	s.t.Helper()
	select {
	case js, ok := <-s.ch:
		if !ok {
			s.t.Fatal("stream ended")
		}
		var env protocol.Envelope
		if err := json.Unmarshal([]byte(js), &env); err != nil {
			s.t.Fatalf("line %q: %v", js, err)
		}
		return env
	case <-time.After(waitLimit):
		s.t.Fatal("no envelope in time")
	}
	return protocol.Envelope{}
}

// expect returns the next envelope, skipping join/leave notices, which
// must be of type typ.
func (s *emuStream) expect(typ string) protocol.Envelope {
	s.t.Helper()
	for range 100 {
		env := s.next()
		if env.Type == protocol.TypeUserJoined || env.Type == protocol.TypeUserLeft {
			continue
		}
		if env.Type != typ {
			s.t.Fatalf("envelope %q %s, want %q", env.Type, env.Data, typ)
		}
		return env
	}
	s.t.Fatal("only join/leave notices")
	return protocol.Envelope{}
}

// ended waits for the stream to end and returns its last envelope.
func (s *emuStream) ended() protocol.Envelope {
	s.t.Helper()
	var last protocol.Envelope
	timeout := time.After(waitLimit)
	for {
		select {
		case js, ok := <-s.ch:
			if !ok {
				return last
			}
			last = protocol.Envelope{}
			_ = json.Unmarshal([]byte(js), &last)
		case <-timeout:
			s.t.Fatal("stream did not end")
		}
	}
}

// post sends frames for session to addr and returns the response.
func post(t *testing.T, addr, body string, hdr http.Header) *http.Response {
	t.Helper()
	h := http.Header{"Content-Type": {"text/plain"}}
	for k, vs := range hdr {
		h[k] = vs
	}
	return httpDo(t, http.MethodPost, "http://"+addr+"/emulation/send", strings.NewReader(body), h)
}

func sendBody(t *testing.T, session string, frames ...any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"session": session, "frames": frames})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// send POSTs frames to the session through addr and wants 204.
func (s *emuStream) send(addr string, frames ...any) {
	s.t.Helper()
	resp := post(s.t, addr, sendBody(s.t, s.session, frames...), nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		s.t.Fatalf("POST /emulation/send: %s %s", resp.Status, b)
	}
}

type obj = map[string]any

// A whole session over each format: every answer comes down the stream,
// in the order the frames were sent.
func TestEmuSession(t *testing.T) {
	for _, format := range []string{"ndjson", "sse"} {
		t.Run(format, func(t *testing.T) {
			n := wstest.Start(t, server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: 2 * time.Second}})
			n.Srv.Hub.HandleRPC("echo", func(ctx context.Context, call hub.RPCCall) (json.RawMessage, error) {
				return call.Params, nil
			})
			s := openEmu(t, n.Addr, format, nil)
			if !strings.HasPrefix(s.session, s.ce.ConnectionID+".") || len(s.session) < len(s.ce.ConnectionID)+1+22 {
				t.Errorf("session %q: want the connection id and a secret of at least 128 bits", s.session)
			}
			ws := n.MustDial(t, "", nil)
			ws.Expect(protocol.TypeConnectionEstablished)
			ws.Send(obj{"type": "subscribe", "id": "w1", "room": "chat:emu"})
			ws.Expect(protocol.TypeSubscribed)

			s.send(n.Addr, obj{"type": "subscribe", "id": "1", "room": "chat:emu"})
			if env := s.expect(protocol.TypeSubscribed); env.ID != "1" || env.Room != "chat:emu" {
				t.Errorf("subscribed %+v", env)
			}
			// Several frames in one POST, answered in order.
			s.send(n.Addr,
				obj{"type": "publish", "id": "2", "room": "chat:emu", "data": obj{"text": "hi"}},
				obj{"type": "rpc", "id": "3", "data": obj{"method": "echo", "params": obj{"x": 1}}},
				obj{"type": "presence", "id": "4", "room": "chat:emu"},
				obj{"type": "ping", "id": "5"},
			)
			got := s.collect(5)
			for typ, id := range map[string]string{protocol.TypeAck: "2", protocol.TypeRPCResult: "3", protocol.TypePresenceResult: "4", protocol.TypePong: "5"} {
				if env, ok := got[typ]; !ok || env.ID != id {
					t.Errorf("%s: %+v (have %v)", typ, env, keys(got))
				}
			}
			var ack protocol.AckData
			_ = json.Unmarshal(got[protocol.TypeAck].Data, &ack)
			if ev, ok := got["publish"]; !ok || ev.ID != ack.EventID || ack.EventID == "" {
				t.Errorf("the session's own event %+v, ack %+v", ev, ack)
			}
			if !strings.Contains(string(got[protocol.TypeRPCResult].Data), `"x":1`) {
				t.Errorf("rpc result %s", got[protocol.TypeRPCResult].Data)
			}
			// The WebSocket member got the emulated client's publish.
			for i := 0; ; i++ {
				m, err := ws.Next()
				if err != nil || i > 20 {
					t.Fatalf("the WebSocket member did not get the event: %v", err)
				}
				if m.ID == ack.EventID && strings.Contains(string(m.Raw), `"text":"hi"`) {
					break
				}
			}
			// A bad frame is answered on the stream, as on a WebSocket.
			s.send(n.Addr, obj{"type": "subscribe", "id": "6", "room": "bad room!"})
			if env := s.expect(protocol.TypeError); env.ID != "6" {
				t.Errorf("error %+v", env)
			}
			s.send(n.Addr, obj{"type": "unsubscribe", "id": "7", "room": "chat:emu"})
			if env := s.expect(protocol.TypeUnsubscribed); env.ID != "7" {
				t.Errorf("unsubscribed %+v", env)
			}
			// Heartbeats keep the stream alive.
			select {
			case <-s.heartbeats:
			case <-time.After(5*time.Second + waitLimit):
				t.Error("no heartbeat")
			}
			// The stream ends: the session is gone, on every node.
			s.resp.Body.Close()
			waitFor(t, "the stream to leave the hub", func() bool { return n.Srv.Emulation.Open() == 0 })
			expectRefusal(t, "after the stream", post(t, n.Addr, sendBody(t, s.session, obj{"type": "ping"}), nil), 404, "unknown_session")
		})
	}
}

// collect reads n envelopes, skipping join/leave notices, by type (each
// type at most once).
func (s *emuStream) collect(n int) map[string]protocol.Envelope {
	s.t.Helper()
	got := map[string]protocol.Envelope{}
	for i := 0; len(got) < n && i < 100; i++ {
		env := s.next()
		if env.Type == protocol.TypeUserJoined || env.Type == protocol.TypeUserLeft {
			continue
		}
		if _, dup := got[env.Type]; dup {
			s.t.Fatalf("two %q envelopes", env.Type)
		}
		got[env.Type] = env
	}
	return got
}

func keys(m map[string]protocol.Envelope) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Every refusal of both endpoints: status and JSON error code. None
// disturbs a live session on the same node.
func TestEmuRefusals(t *testing.T) {
	n := wstest.Start(t, server.Config{
		Transport: transport.Options{AllowedOrigins: []string{"app.example.com"}, MaxMessageSize: 1024},
		Auth:      server.AuthConfig{JWTSecret: sseSecret},
	})
	tok := http.Header{"Authorization": {"Bearer " + sseToken(t, "alice", nil)}}
	live := openEmu(t, n.Addr, "ndjson", tok)
	if live.ce.UserID != "alice" {
		t.Errorf("user %q", live.ce.UserID)
	}
	connID, secret, _ := strings.Cut(live.session, ".")
	wrong := connID + "." + strings.Repeat("A", len(secret))

	streams := []struct {
		name   string
		method string
		query  string
		hdr    http.Header
		status int
		code   string
	}{
		{"no token", "GET", "format=ndjson", nil, 401, "unauthorized"},
		{"bad token", "GET", "format=sse&token=garbage", nil, 401, "unauthorized"},
		{"bad format", "GET", "format=xml", tok, 400, "bad_request"},
		{"POST", "POST", "format=ndjson", tok, 405, "method_not_allowed"},
		{"origin", "GET", "format=ndjson", http.Header{"Authorization": tok["Authorization"], "Origin": {"https://evil.test"}}, 403, "origin_not_allowed"},
	}
	for _, tc := range streams {
		resp := httpDo(t, tc.method, "http://"+n.Addr+"/emulation/stream?"+tc.query, nil, tc.hdr)
		expectRefusal(t, "stream: "+tc.name, resp, tc.status, tc.code)
	}

	big := `{"type":"publish","room":"x","data":"` + strings.Repeat("a", 2000) + `"}`
	sends := []struct {
		name   string
		body   string
		hdr    http.Header
		status int
		code   string
	}{
		{"not JSON", `{"session":`, nil, 400, "bad_json"},
		{"frames not objects", `{"session":"` + live.session + `","frames":[1,"x"]}`, nil, 400, "bad_json"},
		{"frames not an array", `{"session":"` + live.session + `","frames":{"type":"ping"}}`, nil, 400, "bad_json"},
		{"no session", `{"frames":[{"type":"ping"}]}`, nil, 400, "bad_request"},
		{"no frames", `{"session":"` + live.session + `","frames":[]}`, nil, 400, "bad_request"},
		{"65 frames", `{"session":"` + live.session + `","frames":[` + strings.Repeat(`{"type":"ping"},`, 64) + `{"type":"ping"}]}`, nil, 400, "bad_request"},
		{"unknown session", sendBody(t, "0123456789abcdef."+strings.Repeat("A", 24), obj{"type": "ping"}), nil, 404, "unknown_session"},
		{"malformed session", sendBody(t, "nonsense", obj{"type": "ping"}), nil, 404, "unknown_session"},
		{"wrong secret", sendBody(t, wrong, obj{"type": "ping"}), nil, 404, "unknown_session"},
		{"frame over the message size", `{"session":"` + live.session + `","frames":[` + big + `]}`, nil, 413, "too_large"},
		{"body over the limit", `{"session":"` + live.session + `","frames":[` + strings.Repeat(`{"type":"ping"},`, 64*1024/16) + `{}]}`, nil, 413, "too_large"},
		{"origin", sendBody(t, live.session, obj{"type": "ping"}), http.Header{"Origin": {"https://evil.test"}}, 403, "origin_not_allowed"},
	}
	for _, tc := range sends {
		expectRefusal(t, "send: "+tc.name, post(t, n.Addr, tc.body, tc.hdr), tc.status, tc.code)
	}
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		resp := httpDo(t, m, "http://"+n.Addr+"/emulation/send", nil, nil)
		if allow := resp.Header.Get("Allow"); allow != "POST, OPTIONS" {
			t.Errorf("%s: Allow %q", m, allow)
		}
		expectRefusal(t, "send: "+m, resp, 405, "method_not_allowed")
	}

	// A CORS preflight from an allowed origin, then the POST itself.
	resp := httpDo(t, http.MethodOptions, "http://"+n.Addr+"/emulation/send", nil, http.Header{
		"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Errorf("preflight: %s %v", resp.Status, resp.Header)
	}
	resp = post(t, n.Addr, sendBody(t, live.session, obj{"type": "ping", "id": "cors"}), http.Header{"Origin": {"https://app.example.com"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("cross-origin POST: %s %v", resp.Status, resp.Header)
	}
	// The live session saw nothing of the refused requests.
	if env := live.expect(protocol.TypePong); env.ID != "cors" {
		t.Errorf("pong %+v", env)
	}
	live.send(n.Addr, obj{"type": "ping", "id": "after"})
	if env := live.expect(protocol.TypePong); env.ID != "after" {
		t.Errorf("pong %+v", env)
	}
}

// Without a token an emulated connection cannot authenticate later (there
// is no auth frame path): anonymous if allowed, else 401. A token's
// refresh works as on a WebSocket.
func TestEmuAuth(t *testing.T) {
	n := wstest.Start(t, server.Config{Auth: server.AuthConfig{JWTSecret: sseSecret, AllowAnonymous: true}})
	s := openEmu(t, n.Addr, "sse", nil)
	if !strings.HasPrefix(s.ce.UserID, "anon-") {
		t.Errorf("user %q, want an anonymous one", s.ce.UserID)
	}
	a := openEmu(t, n.Addr, "ndjson", http.Header{"Cookie": {"switchboard_token=" + sseToken(t, "bob", nil)}})
	if a.ce.UserID != "bob" {
		t.Fatalf("user %q", a.ce.UserID)
	}
	a.send(n.Addr, obj{"type": "refresh", "id": "r", "data": obj{"token": sseToken(t, "bob", nil)}})
	if env := a.expect(protocol.TypeRefreshed); env.ID != "r" {
		t.Errorf("refreshed %+v", env)
	}
	// A session cannot take another's frames: the secret is per stream.
	resp := post(t, n.Addr, sendBody(t, s.session[:17]+a.session[17:], obj{"type": "ping"}), nil)
	expectRefusal(t, "another stream's secret", resp, 404, "unknown_session")

	// The server ends a stream with a disconnect envelope; its session is
	// then gone.
	if err := n.Srv.Hub.DisconnectConn(context.Background(), a.ce.ConnectionID, protocol.NewDisconnect(protocol.CloseKicked, "bye")); err != nil {
		t.Fatal(err)
	}
	last := a.ended()
	var d protocol.Disconnect
	_ = json.Unmarshal(last.Data, &d)
	if last.Type != protocol.TypeDisconnect || d.Code != protocol.CloseKicked {
		t.Errorf("the stream ended with %+v", last)
	}
	waitFor(t, "the kicked stream to leave the hub", func() bool { return n.Srv.Emulation.Open() == 1 })
	expectRefusal(t, "a kicked session", post(t, n.Addr, sendBody(t, a.session, obj{"type": "ping"}), nil), 404, "unknown_session")
}

// An emulated stream that stops reading is a slow consumer like any
// other: its queue overflows, it ends, and the hub forgets it; a session
// beside it is not disturbed.
func TestEmuSlowConsumer(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{QueueMaxMessages: 8, WriteTimeout: time.Second}})
	rc, resp := rawRequest(t, n.Addr, "GET", "/emulation/stream?format=ndjson", nil, 4096)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ce struct {
		Data protocol.ConnectionEstablished
	}
	if err := json.Unmarshal([]byte(line), &ce); err != nil {
		t.Fatal(err)
	}
	slow := &emuStream{t: t, session: ce.Data.Session}
	slow.send(n.Addr, obj{"type": "subscribe", "id": "1", "room": "flood"})
	good := openEmu(t, n.Addr, "sse", nil)
	good.send(n.Addr, obj{"type": "subscribe", "id": "1", "room": "flood"})
	good.expect(protocol.TypeSubscribed)
	big := `{"pad":"` + bytesRepeat(32<<10) + `"}`
	for range 1000 {
		publish(t, n, "flood", "message", big)
		if n.Srv.Hub.Stats().SlowConsumerDisconnects > 0 {
			break
		}
		good.expect(protocol.TypeMessage)
	}
	waitFor(t, "the slow stream to be dropped", func() bool {
		st := n.Srv.Hub.Stats()
		return st.SlowConsumerDisconnects == 1 && st.Connections == 1
	})
	_ = rc
	expectRefusal(t, "send to the dropped stream", post(t, n.Addr, sendBody(t, slow.session, obj{"type": "ping"}), nil), 404, "unknown_session")
	good.send(n.Addr, obj{"type": "ping", "id": "p"})
	for range 1000 {
		if env := good.next(); env.Type == protocol.TypePong {
			return
		}
	}
	t.Fatal("no pong")
}
