package transport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// sseEvent is one dispatched Server-Sent Event, or a comment (Comment set).
type sseEvent struct {
	ID, Event, Data string
	HasID           bool
	Comment         string
	Retry           string
}

// sseStream reads events from a live /sse response.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	ch   chan sseEvent
	errc chan error
}

// openSSE GETs /sse?query on n and checks the answer is an event stream.
func openSSE(t *testing.T, n *wstest.Node, query string, hdr http.Header) *sseStream {
	t.Helper()
	resp := getSSE(t, n, query, hdr)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /sse?%s: %s %s", query, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	s := &sseStream{t: t, resp: resp, ch: make(chan sseEvent, 1024), errc: make(chan error, 1)}
	go s.read()
	t.Cleanup(s.close)
	return s
}

func getSSE(t *testing.T, n *wstest.Node, query string, hdr http.Header) *http.Response {
	t.Helper()
	return httpDo(t, http.MethodGet, "http://"+n.Addr+"/sse?"+query, nil, hdr)
}

func (s *sseStream) close() { s.resp.Body.Close() }

// read parses the stream as the EventSource algorithm does.
func (s *sseStream) read() {
	br := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.errc <- err
			close(s.ch)
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.Data != "" || ev.Retry != "" {
				s.ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			s.ch <- sseEvent{Comment: strings.TrimSpace(line[1:])}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID, ev.HasID = value, true
			case "event":
				ev.Event = value
			case "data":
				if ev.Data != "" {
					ev.Data += "\n"
				}
				ev.Data += value
			case "retry":
				ev.Retry = value
			}
		}
	}
}

// next returns the next event that is not a comment.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				s.t.Fatalf("stream ended: %v", <-s.errc)
			}
			if ev.Comment != "" || ev.Retry != "" {
				continue
			}
			return ev
		case <-timeout:
			s.t.Fatal("no SSE event in time")
		}
	}
}

// expect returns the next event, which must be of type typ (its `event:`
// field, "" for the default "message"), with its envelope decoded.
func (s *sseStream) expect(typ string) (sseEvent, protocol.Envelope) {
	s.t.Helper()
	ev := s.next()
	if ev.Event != typ {
		s.t.Fatalf("event %q (%s), want %q", ev.Event, ev.Data, typ)
	}
	var env protocol.Envelope
	if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
		s.t.Fatalf("data %q: %v", ev.Data, err)
	}
	want := typ
	if want == "" {
		want = protocol.TypeMessage
	}
	if env.Type != want {
		s.t.Fatalf("envelope type %q under event %q", env.Type, typ)
	}
	return ev, env
}

// expectSkipping is expect, passing over events of type skip.
func (s *sseStream) expectSkipping(typ, skip string) (sseEvent, protocol.Envelope) {
	s.t.Helper()
	for range 100 {
		ev := s.next()
		if ev.Event == skip {
			continue
		}
		var env protocol.Envelope
		if ev.Event != typ || json.Unmarshal([]byte(ev.Data), &env) != nil {
			s.t.Fatalf("event %q (%s), want %q", ev.Event, ev.Data, typ)
		}
		return ev, env
	}
	s.t.Fatalf("only %q events", skip)
	return sseEvent{}, protocol.Envelope{}
}

// subscribed reads connection_established and one `subscribed` per room.
func (s *sseStream) subscribed(rooms int) []protocol.SubscribedData {
	s.t.Helper()
	s.expect(protocol.TypeConnectionEstablished)
	var out []protocol.SubscribedData
	for range rooms {
		_, env := s.expect(protocol.TypeSubscribed)
		var d protocol.SubscribedData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// ended waits for the stream to end and returns what came before the end.
func (s *sseStream) ended() []sseEvent {
	s.t.Helper()
	var out []sseEvent
	timeout := time.After(waitLimit)
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-timeout:
			s.t.Fatal("stream did not end")
		}
	}
}

func publish(t *testing.T, n *wstest.Node, room, typ, data string) string {
	t.Helper()
	res, err := n.Srv.Hub.Publish(context.Background(), room, typ, json.RawMessage(data), hub.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.EventID
}

func TestSSEStreamsRoomEvents(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	s := openSSE(t, n, "room=news", nil)
	if s.resp.Header.Get("X-Accel-Buffering") != "no" || s.resp.Header.Get("Cache-Control") != "no-cache, no-transform" {
		t.Errorf("headers %v", s.resp.Header)
	}
	first := <-s.ch
	if first.Retry != "2000" {
		t.Errorf("first event %+v, want retry: 2000", first)
	}
	sub := s.subscribed(1)[0]
	if sub.Recovered != nil {
		t.Errorf("fresh stream says recovered=%v", *sub.Recovered)
	}

	id1 := publish(t, n, "news", "message", "{\n  \"n\": 1\n}")
	ev, env := s.expect("")
	if !ev.HasID || ev.ID != id1 || env.ID != id1 {
		t.Errorf("id %q / envelope id %q, want %q", ev.ID, env.ID, id1)
	}
	if string(env.Data) != `{"n":1}` && !strings.Contains(ev.Data, `"n":`) {
		t.Errorf("data %s", env.Data)
	}
	if strings.Contains(ev.Data, "\n") {
		t.Errorf("data spans lines: %q", ev.Data)
	}
	id2 := publish(t, n, "news", "chat.line", `{"text":"hi"}`)
	ev, env = s.expect("chat.line")
	if ev.ID != id2 || env.Room != "news" || string(env.Data) != `{"text":"hi"}` {
		t.Errorf("event %+v", ev)
	}
	// A WebSocket client in the same room gets the same JSON.
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "news"})
	c.Expect("subscribed")
	c.Send(map[string]any{"type": "message", "id": "p1", "room": "news", "data": map[string]int{"x": 7}})
	if ev, _ := s.expect(protocol.TypeUserJoined); ev.HasID {
		t.Errorf("user_joined has an id: %+v", ev)
	}
	ev, env = s.expect("")
	if string(env.Data) != `{"x":7}` || env.UserID == "" {
		t.Errorf("from WebSocket: %s", ev.Data)
	}
	var m wstest.Msg
	for range 2 { // the ack and the echo, in either order
		if got, err := c.Next(); err != nil {
			t.Fatal(err)
		} else if got.Type == "message" {
			m = got
		}
	}
	if string(m.Raw) != ev.Data {
		t.Errorf("WebSocket got %s, SSE %s", m.Raw, ev.Data)
	}
}

func TestSSEResumesFromLastEventID(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	s := openSSE(t, n, "room=feed", nil)
	s.subscribed(1)
	publish(t, n, "feed", "message", `{"n":1}`)
	ev, _ := s.expect("")
	last := ev.ID
	s.close()
	var missed []string
	for i := 2; i <= 4; i++ {
		missed = append(missed, publish(t, n, "feed", "message", fmt.Sprintf(`{"n":%d}`, i)))
	}

	for _, how := range []string{"header", "query"} {
		var s2 *sseStream
		if how == "header" {
			s2 = openSSE(t, n, "room=feed", http.Header{"Last-Event-ID": {last}})
		} else {
			s2 = openSSE(t, n, "room=feed&last_event_id="+url.QueryEscape(last), nil)
		}
		sub := s2.subscribed(1)[0]
		if sub.Recovered == nil || !*sub.Recovered || sub.Replayed != 3 {
			t.Fatalf("%s: subscribed %+v, want recovered 3", how, sub)
		}
		for _, id := range missed {
			if ev, _ := s2.expect(""); ev.ID != id {
				t.Errorf("%s: replayed %q, want %q", how, ev.ID, id)
			}
		}
		s2.close()
	}

	// An id from another epoch (a lost stream) cannot be recovered: the
	// client is told so, and resumes from the room's current position.
	s3 := openSSE(t, n, "room=feed", http.Header{"Last-Event-ID": {"zzzz-3"}})
	s3.expect(protocol.TypeConnectionEstablished)
	ev, env := s3.expect(protocol.TypeSubscribed)
	var d protocol.SubscribedData
	_ = json.Unmarshal(env.Data, &d)
	if d.Recovered == nil || *d.Recovered {
		t.Fatalf("foreign epoch: %s", env.Data)
	}
	if ev.ID != d.Position || d.Position != missed[2] {
		t.Errorf("subscribed id %q, position %q, want %q", ev.ID, d.Position, missed[2])
	}
}

func TestSSESeveralRooms(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	a0 := publish(t, n, "a", "message", `{}`)
	s := openSSE(t, n, "room=a,b", nil)
	s.expect(protocol.TypeConnectionEstablished)
	ev, _ := s.expect(protocol.TypeSubscribed)
	if ev.ID != a0+"," {
		t.Errorf("id after subscribing a: %q", ev.ID)
	}
	ev, _ = s.expect(protocol.TypeSubscribed)
	b0 := strings.TrimPrefix(ev.ID, a0+",")
	if _, ok := protocol.ParseEventID(b0); !ok {
		t.Fatalf("id after subscribing b: %q", ev.ID)
	}
	b1 := publish(t, n, "b", "message", `{"b":1}`)
	if ev, _ = s.expect(""); ev.ID != a0+","+b1 {
		t.Errorf("id %q, want %q", ev.ID, a0+","+b1)
	}
	last := ev.ID
	s.close()
	a1 := publish(t, n, "a", "message", `{"a":1}`)
	b2 := publish(t, n, "b", "message", `{"b":2}`)
	s2 := openSSE(t, n, "room=a&room=b", http.Header{"Last-Event-ID": {last}})
	s2.expect(protocol.TypeConnectionEstablished)
	got := map[string]bool{}
	for range 4 {
		ev := s2.next()
		if ev.Event == "" {
			got[ev.ID] = true
		}
	}
	if !got[a1+","+b1] || !got[a1+","+b2] {
		t.Errorf("replayed ids %v, want %s,%s then %s,%s", got, a1, b1, a1, b2)
	}
}

func TestSSEBadRequests(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{AllowedOrigins: []string{"app.example.com"}}})
	cases := []struct {
		name   string
		method string
		query  string
		hdr    http.Header
		status int
		code   string
	}{
		{"no room", "GET", "", nil, 400, "bad_request"},
		{"empty room", "GET", "room=", nil, 400, "invalid_room"},
		{"bad room", "GET", "room=" + url.QueryEscape("a b\x00"), nil, 400, "invalid_room"},
		{"room twice", "GET", "room=a&room=a", nil, 400, "bad_request"},
		{"bad last event id", "GET", "room=a", http.Header{"Last-Event-ID": {"nonsense"}}, 400, "bad_request"},
		{"bad last_event_id query", "GET", "room=a&last_event_id=1-x", nil, 400, "bad_request"},
		{"positions for other rooms", "GET", "room=a", http.Header{"Last-Event-ID": {"ab-1,ab-2"}}, 400, "bad_request"},
		{"sub_token count", "GET", "room=a&room=b&sub_token=x", nil, 400, "bad_request"},
		{"sub_token refused", "GET", "room=a&sub_token=x", nil, 403, "forbidden"},
		{"POST", "POST", "room=a", nil, 405, "method_not_allowed"},
		{"foreign origin", "GET", "room=a", http.Header{"Origin": {"https://evil.example"}}, 403, "origin_not_allowed"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, "http://"+n.Addr+"/sse?"+tc.query, nil)
		for k, v := range tc.hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, tc.name, resp, tc.status, tc.code)
	}
	// An allowed origin gets the CORS headers EventSource needs.
	s := openSSE(t, n, "room=a", http.Header{"Origin": {"https://app.example.com"}})
	if s.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || s.resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("CORS headers %v", s.resp.Header)
	}
	s.subscribed(1)
	if st := n.Srv.Hub.Stats(); st.Connections != 1 {
		t.Errorf("%d connections after the refusals, want the one stream", st.Connections)
	}
}

// expectRefusal checks a refused request's status and JSON error code.
func expectRefusal(t *testing.T, name string, resp *http.Response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		resp.Body.Close()
		t.Errorf("%s: status %d, want %d", name, resp.StatusCode, status)
		return
	}
	if got, _ := jsonBody(t, resp); got != code {
		t.Errorf("%s: code %q, want %q", name, got, code)
	}
}

const sseSecret = "0123456789abcdef0123456789abcdef-sse-secret"

func sseToken(t *testing.T, sub string, claims map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(sseSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSSEAuth(t *testing.T) {
	n := wstest.Start(t, server.Config{
		Auth: server.AuthConfig{JWTSecret: sseSecret},
		Hub: hub.Options{Namespaces: map[string]hub.Namespace{
			"staff": {Permissions: hub.Permissions{Subscribe: hub.PermOwner}},
		}},
	})
	tok := sseToken(t, "alice", nil)
	for _, how := range []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"header", "", http.Header{"Authorization": {"Bearer " + tok}}},
		{"cookie", "", http.Header{"Cookie": {"switchboard_token=" + tok}}},
		{"query", "&token=" + url.QueryEscape(tok), nil},
	} {
		s := openSSE(t, n, "room=lobby"+how.query, how.hdr)
		_, env := s.expect(protocol.TypeConnectionEstablished)
		var ce protocol.ConnectionEstablished
		_ = json.Unmarshal(env.Data, &ce)
		if ce.UserID != "alice" {
			t.Errorf("%s: user %q", how.name, ce.UserID)
		}
		s.close()
	}
	// A signed subscription: without a room parameter, the token's rooms.
	signed := sseToken(t, "alice", map[string]any{"rooms": []string{"news", "staff:alice"}})
	s := openSSE(t, n, "", http.Header{"Authorization": {"Bearer " + signed}})
	s.expect(protocol.TypeConnectionEstablished)
	for _, room := range []string{"news", "staff:alice"} {
		if _, env := s.expect(protocol.TypeSubscribed); env.Room != room {
			t.Errorf("signed subscription: subscribed %q, want %q", env.Room, room)
		}
	}
	s.close()
	resp := getSSE(t, n, "", http.Header{"Authorization": {"Bearer " + tok}})
	if code, _ := jsonBody(t, resp); resp.StatusCode != http.StatusBadRequest || code != "bad_request" {
		t.Errorf("no room and a token without rooms: %d %s", resp.StatusCode, code)
	}

	if err := n.Srv.Hub.Ban(context.Background(), "mallory", time.Hour); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name   string
		query  string
		hdr    http.Header
		status int
		code   string
	}{
		{"no token", "room=lobby", nil, 401, "unauthorized"},
		{"bad token", "room=lobby&token=garbage", nil, 401, "unauthorized"},
		{"expired", "room=lobby", http.Header{"Authorization": {"Bearer " + sseToken(t, "alice", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})}}, 401, "unauthorized"},
		{"banned", "room=lobby", http.Header{"Authorization": {"Bearer " + sseToken(t, "mallory", nil)}}, 403, "banned"},
		{"forbidden room", "room=staff:ops", http.Header{"Authorization": {"Bearer " + tok}}, 403, "forbidden"},
	}
	for _, tc := range refused {
		expectRefusal(t, tc.name, getSSE(t, n, tc.query, tc.hdr), tc.status, tc.code)
	}
	waitFor(t, "refused streams to leave the hub", func() bool { return n.Srv.Hub.Stats().Connections == 0 })
}

func TestSSEDisconnects(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	s := openSSE(t, n, "room=x", nil)
	s.subscribed(1)
	var ce protocol.ConnectionEstablished
	conns := n.Srv.Hub.Stats().Connections
	if conns != 1 {
		t.Fatalf("%d connections", conns)
	}
	_ = ce
	// Kicked through the server API's hub call: a disconnect event, then
	// the response ends.
	if err := n.Srv.Hub.DisconnectUser(context.Background(), firstUser(t, n), protocol.NewDisconnect(protocol.CloseKicked, "bye")); err != nil {
		t.Fatal(err)
	}
	evs := s.ended()
	d := lastSSEDisconnect(t, evs)
	if d.Code != protocol.CloseKicked || d.Reconnect {
		t.Errorf("disconnect %+v", d)
	}
	waitFor(t, "the stream to leave the hub", func() bool { return n.Srv.Hub.Stats().Connections == 0 })

	// A draining server ends streams with 1012 (reconnect).
	s = openSSE(t, n, "room=x", nil)
	s.subscribed(1)
	go n.Stop()
	d = lastSSEDisconnect(t, s.ended())
	if d.Code != protocol.CloseServiceRestart || !d.Reconnect {
		t.Errorf("drain: disconnect %+v", d)
	}
}

func firstUser(t *testing.T, n *wstest.Node) string {
	t.Helper()
	for _, r := range n.Srv.Hub.Rooms() {
		if ms, ok := n.Srv.Hub.RoomMembers(r.Name); ok && len(ms) > 0 {
			return ms[0].UserID
		}
	}
	t.Fatal("no member")
	return ""
}

func lastSSEDisconnect(t *testing.T, evs []sseEvent) protocol.Disconnect {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].Event != protocol.TypeDisconnect {
		t.Fatalf("stream ended without a disconnect event: %+v", evs)
	}
	var env struct{ Data protocol.Disconnect }
	if err := json.Unmarshal([]byte(evs[len(evs)-1].Data), &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

func TestSSEHeartbeat(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: 2 * time.Second}})
	s := openSSE(t, n, "room=x", nil)
	s.subscribed(1)
	timeout := time.After(5*time.Second + waitLimit)
	for {
		select {
		case ev := <-s.ch:
			if ev.Comment == "heartbeat" {
				return
			}
		case <-timeout:
			t.Fatal("no heartbeat comment")
		}
	}
}

// A stream that stops reading is a slow consumer like a WebSocket: with
// the disconnect policy its queue overflows, the stream ends, and the
// hub forgets it; other streams are not disturbed.
func TestSSESlowConsumer(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{QueueMaxMessages: 8, WriteTimeout: time.Second}})
	rc, resp := rawRequest(t, n.Addr, "GET", "/sse?room=flood", nil, 4096)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	good := openSSE(t, n, "room=flood", nil)
	good.subscribed(1)
	// 32 KiB events: the socket buffers (4 MiB at most on Linux) fill
	// within a few hundred, then the queue of 8.
	big := `{"pad":"` + bytesRepeat(32<<10) + `"}`
	for range 1000 {
		publish(t, n, "flood", "message", big)
		if n.Srv.Hub.Stats().SlowConsumerDisconnects > 0 {
			break
		}
		good.expectSkipping("", protocol.TypeUserLeft)
	}
	deadline := time.Now().Add(waitLimit)
	for st := n.Srv.Hub.Stats(); st.SlowConsumerDisconnects != 1 || st.Connections != 1; st = n.Srv.Hub.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("slow consumer disconnects %d, connections %d: want the one slow stream dropped", st.SlowConsumerDisconnects, st.Connections)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = rc
	publish(t, n, "flood", "message", `{"after":1}`)
	for {
		if _, env := good.expectSkipping("", protocol.TypeUserLeft); strings.Contains(string(env.Data), "after") {
			break
		}
	}
}

func TestSSELimitsAndAnonymous(t *testing.T) {
	n := wstest.Start(t, server.Config{
		Hub: hub.Options{
			MaxRoomsPerClient: 2,
			Namespaces:        map[string]hub.Namespace{"pub": {Permissions: hub.Permissions{Subscribe: hub.PermAnyone}}},
		},
		Auth: server.AuthConfig{JWTSecret: sseSecret, AllowAnonymous: true},
	})
	resp := getSSE(t, n, "room=pub:a,pub:b,pub:c", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("3 rooms with a limit of 2: %s", resp.Status)
	}
	if code, _ := jsonBody(t, resp); code != protocol.ErrTooManyRooms {
		t.Errorf("code %q, want too_many_rooms", code)
	}
	// With anonymous connections allowed, a stream without a token is an
	// anonymous user, as a WebSocket without an auth frame would be, with
	// an anonymous user's permissions.
	resp = getSSE(t, n, "room=lobby", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous in a room for authenticated users: %s", resp.Status)
	}
	if code, _ := jsonBody(t, resp); code != protocol.ErrForbidden {
		t.Errorf("code %q, want forbidden", code)
	}
	s := openSSE(t, n, "room=pub:a,pub:b", nil)
	_, env := s.expect(protocol.TypeConnectionEstablished)
	var ce protocol.ConnectionEstablished
	_ = json.Unmarshal(env.Data, &ce)
	if !strings.HasPrefix(ce.UserID, "anon-") {
		t.Errorf("user %q, want an anonymous one", ce.UserID)
	}
	waitFor(t, "the refused stream to leave the hub", func() bool { return n.Srv.Hub.Stats().Connections == 1 })
}

// With drop_oldest a stream that falls behind loses its oldest queued
// events instead of the connection.
func TestSSEDropOldest(t *testing.T) {
	n := wstest.Start(t, server.Config{Transport: transport.Options{QueueMaxMessages: 4, SlowConsumerPolicy: "drop_oldest", WriteTimeout: time.Second}})
	rc, resp := rawRequest(t, n.Addr, "GET", "/sse?room=flood", nil, 4096)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	big := `{"pad":"` + bytesRepeat(16<<10) + `"}`
	for i := 0; i < 400 && n.Srv.Hub.Stats().QueueDrops == 0; i++ {
		publish(t, n, "flood", "message", big)
	}
	if n.Srv.Hub.Stats().QueueDrops == 0 {
		t.Fatal("no queue drops after 400 large events to a stream that does not read")
	}
	if st := n.Srv.Hub.Stats(); st.SlowConsumerDisconnects != 0 || st.Connections != 1 {
		t.Errorf("stats %+v: want the stream kept", st)
	}
	_ = rc
}

// Serve's WriteTimeout (15 s) bounds ordinary responses; a stream must
// outlive it (it moves its own write deadline).
func TestSSEOutlivesServerTimeouts(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	s := openSSE(t, n, "room=long", nil)
	s.subscribed(1)
	time.Sleep(16 * time.Second)
	id := publish(t, n, "long", "message", `{"late":true}`)
	if ev, _ := s.expect(""); ev.ID != id {
		t.Errorf("after 16 s: %+v, want %s", ev, id)
	}
}
