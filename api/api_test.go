package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

const testKey = "test-key-0123456789abcdef"

// fakeSink is a connection that records what the hub sends it.
type fakeSink struct {
	mu     sync.Mutex
	frames []protocol.Envelope
	closed *protocol.Disconnect
}

func (s *fakeSink) Send(f *protocol.Frame) bool {
	var env protocol.Envelope
	if err := json.Unmarshal(f.JSON, &env); err != nil {
		panic(fmt.Sprintf("hub sent invalid JSON %q: %v", f.JSON, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		return false
	}
	s.frames = append(s.frames, env)
	return true
}

func (s *fakeSink) Close(d protocol.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = &d
	}
}

// events returns the frames of type typ.
func (s *fakeSink) events(typ string) []protocol.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Envelope
	for _, f := range s.frames {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

func (s *fakeSink) closeCode() (protocol.Disconnect, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		return protocol.Disconnect{}, false
	}
	return *s.closed, true
}

// env is a hub and its API.
type env struct {
	t   *testing.T
	hub *hub.Hub
	api *Handler
	key string
}

// newEnv builds a hub (namespace "nohist" has neither history nor
// presence) and its API, with key as the only key ("" for none).
func newEnv(t *testing.T, key string) *env {
	t.Helper()
	h, err := hub.New(hub.Options{Engine: memory.New(memory.Options{}), Namespaces: map[string]hub.Namespace{
		"nohist": {History: &engine.HistoryPolicy{}, NoPresence: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := h.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if key != "" {
		keys = []string{key}
	}
	a, err := New(Options{Hub: h, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, hub: h, api: a, key: key}
}

// connect opens a fake connection for user ("" anonymous) subscribed to
// rooms.
func (e *env) connect(user string, rooms ...string) (*hub.Client, *fakeSink) {
	e.t.Helper()
	s := &fakeSink{}
	c := e.hub.Connect(s, hub.ConnectOptions{UserID: user})
	e.t.Cleanup(c.Gone)
	for i, room := range rooms {
		msg := fmt.Sprintf(`{"type":"subscribe","id":"s%d","room":%q}`, i, room)
		c.HandleMessage([]byte(msg))
		if n := len(s.events(protocol.TypeSubscribed)); n != i+1 {
			e.t.Fatalf("subscribe to %q: %d subscribed answers, want %d; frames %+v", room, n, i+1, s.frames)
		}
	}
	return c, s
}

// request builds a request as a local client with the env's key.
func (e *env) request(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Host = "127.0.0.1:8080"
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if e.key != "" {
		r.Header.Set("Authorization", "Bearer "+e.key)
	}
	return r
}

func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, r)
	return w
}

func (e *env) do(method, path, body string) *httptest.ResponseRecorder {
	return e.serve(e.request(method, path, body))
}

// decode decodes w's JSON body into v, failing on anything else.
func decode(t *testing.T, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, w.Body)
	}
	dec := json.NewDecoder(strings.NewReader(w.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("answer %s does not decode into %T: %v", w.Body, v, err)
	}
}

// wantOK checks the status and decodes the answer.
func wantOK(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if v != nil {
		decode(t, w, v)
	}
}

// wantError checks an error answer: status, JSON body with code and a
// message.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	var b errorBody
	decode(t, w, &b)
	if b.Error.Code != code || b.Error.Message == "" {
		t.Fatalf("error %+v, want code %q and a message", b.Error, code)
	}
}

// snapshot is the state a refused request must leave alone.
type snapshot struct {
	Stats    hub.Stats
	Rooms    []hub.RoomInfo
	History  []json.RawMessage
	Position string
	Frames   int
	Closed   bool
	Banned   bool
}

func (e *env) snapshot(s *fakeSink, room string) snapshot {
	e.t.Helper()
	rooms := e.hub.Rooms()
	slices.SortFunc(rooms, func(a, b hub.RoomInfo) int { return cmp.Compare(a.Name, b.Name) })
	page, err := e.hub.History(context.Background(), room, protocol.HistoryRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	_, closed := s.closeCode()
	return snapshot{Stats: e.hub.Stats(), Rooms: rooms, History: page.Events, Position: page.Position, Frames: s.count(), Closed: closed, Banned: e.hub.Banned("u1")}
}

// sample is a valid request to each route. The sample connection (user
// "u1", subscribed to chat:lobby) is the target of every send, so a
// refused request that did something shows up in its frames.
type sample struct {
	path      string
	body      string // a valid body ("" for GET)
	wrongType string // a body with a field of the wrong JSON type
}

func samples(connID string) map[string]sample {
	return map[string]sample{
		"POST /api/broadcast/{room}":            {"/api/broadcast/chat:lobby", `{"type":"score_update","data":{"home":1}}`, `{"type":7}`},
		"POST /api/broadcast":                   {"/api/broadcast", `{"type":"notice","data":"hi"}`, `{"type":["notice"]}`},
		"POST /api/publish":                     {"/api/publish", `{"events":[{"room":"chat:lobby","data":1}]}`, `{"events":{"room":"chat:lobby"}}`},
		"GET /api/rooms":                        {"/api/rooms", "", ""},
		"GET /api/rooms/{room}":                 {"/api/rooms/chat:lobby", "", ""},
		"GET /api/rooms/{room}/history":         {"/api/rooms/chat:lobby/history", "", ""},
		"GET /api/rooms/{room}/presence":        {"/api/rooms/chat:lobby/presence", "", ""},
		"GET /api/stats":                        {"/api/stats", "", ""},
		"POST /api/users/{user}/send":           {"/api/users/u1/send", `{"type":"notice","data":{}}`, `{"type":true}`},
		"POST /api/users/{user}/disconnect":     {"/api/users/u1/disconnect", `{"code":4006}`, `{"code":"4006"}`},
		"POST /api/users/{user}/ban":            {"/api/users/u1/ban", `{"seconds":60}`, `{"seconds":"60"}`},
		"POST /api/connections/{id}/send":       {"/api/connections/" + connID + "/send", `{"data":1}`, `{"data":1,"type":{}}`},
		"POST /api/connections/{id}/disconnect": {"/api/connections/" + connID + "/disconnect", `{"reason":"bye"}`, `{"reason":42}`},
		"POST /broadcast/{room}":                {"/broadcast/chat:lobby", `{"text":"hi"}`, `["text","hi"]`},
	}
}

func routeKey(rt route) string { return rt.method + " " + rt.pattern }

// TestRefusedRequestsChangeNothing sends every route each kind of bad
// request and checks the answer and that hub state, room history and the
// target connection are untouched.
func TestRefusedRequestsChangeNothing(t *testing.T) {
	e := newEnv(t, testKey)
	c, sink := e.connect("u1", "chat:lobby")
	smp := samples(c.ID())
	big := `{"data":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`

	type bad struct {
		name   string
		req    func(method, path, body string) *http.Request
		status int
		code   string
	}
	withHeader := func(k, v string) func(string, string, string) *http.Request {
		return func(method, path, body string) *http.Request {
			r := e.request(method, path, body)
			if v == "" {
				r.Header.Del(k)
			} else {
				r.Header.Set(k, v)
			}
			return r
		}
	}
	// Every route: authentication and query checks.
	common := []bad{
		{"no key", withHeader("Authorization", ""), 401, codeUnauthorized},
		{"basic auth", withHeader("Authorization", "Basic "+testKey), 401, codeUnauthorized},
		{"bearer without key", withHeader("Authorization", "Bearer "), 401, codeUnauthorized},
		{"wrong key", withHeader("Authorization", "Bearer wrong-key"), 403, codeForbidden},
		{"key prefix", withHeader("Authorization", "Bearer "+testKey[:len(testKey)-1]), 403, codeForbidden},
		{"key with suffix", withHeader("Authorization", "Bearer "+testKey+"x"), 403, codeForbidden},
		{"unknown query parameter", func(m, p, b string) *http.Request { return e.request(m, p+"?bogus=1", b) }, 400, protocol.ErrBadRequest},
	}
	// POST routes: body checks.
	posts := []bad{
		{"malformed JSON", func(m, p, b string) *http.Request { return e.request(m, p, `{"type":`) }, 400, protocol.ErrBadJSON},
		{"not JSON", func(m, p, b string) *http.Request { return e.request(m, p, `type=x`) }, 400, protocol.ErrBadJSON},
		{"array body", func(m, p, b string) *http.Request { return e.request(m, p, `[]`) }, 400, protocol.ErrBadRequest},
		{"null body", func(m, p, b string) *http.Request { return e.request(m, p, `null`) }, 400, protocol.ErrBadRequest},
		{"trailing data", func(m, p, b string) *http.Request { return e.request(m, p, b+` {}`) }, 400, protocol.ErrBadJSON},
		{"unknown field", func(m, p, b string) *http.Request { return e.request(m, p, `{"bogus":1}`) }, 400, protocol.ErrBadRequest},
		{"oversize body", func(m, p, b string) *http.Request { return e.request(m, p, big) }, 413, codeBodyTooLarge},
		{"text/plain", func(m, p, b string) *http.Request {
			r := e.request(m, p, b)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, 415, codeMediaType},
		{"form", func(m, p, b string) *http.Request {
			r := e.request(m, p, b)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 415, codeMediaType},
	}
	for _, rt := range e.api.routes {
		s, ok := smp[routeKey(rt)]
		if !ok {
			t.Fatalf("route %s has no sample request in this test", routeKey(rt))
		}
		cases := slices.Clone(common)
		if rt.method == http.MethodPost {
			cases = append(cases, posts...)
			cases = append(cases, bad{"wrong field type", func(m, p, b string) *http.Request { return e.request(m, p, s.wrongType) }, 400, protocol.ErrBadRequest})
			if !strings.HasSuffix(rt.pattern, "/disconnect") { // an empty body means the defaults there
				cases = append(cases, bad{"empty body", func(m, p, b string) *http.Request { return e.request(m, p, "") }, 400, protocol.ErrBadJSON})
			}
		}
		if rt.pattern == "/broadcast/{room}" { // the seeds' route: any object is the event's data
			cases = slices.DeleteFunc(cases, func(b bad) bool { return b.name == "unknown field" })
		}
		if strings.Contains(rt.pattern, "{room}") {
			for _, room := range []string{"bad%20room", ":lobby", "lobby:", strings.Repeat("r", protocol.MaxRoomLen+1), "caf%C3%A9"} {
				cases = append(cases, bad{"invalid room " + room[:min(len(room), 12)], func(m, p, b string) *http.Request {
					return e.request(m, strings.Replace(p, "chat:lobby", room, 1), b)
				}, 400, protocol.ErrInvalidRoom})
			}
		}
		for _, tc := range cases {
			t.Run(routeKey(rt)+"/"+tc.name, func(t *testing.T) {
				before := e.snapshot(sink, "chat:lobby")
				w := e.serve(tc.req(rt.method, s.path, s.body))
				wantError(t, w, tc.status, tc.code)
				if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				if after := e.snapshot(sink, "chat:lobby"); !reflect.DeepEqual(before, after) {
					t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	}
}

// TestNoKeyLoopbackOnly: with no key configured the API answers local
// programs only, whatever headers claim.
func TestNoKeyLoopbackOnly(t *testing.T) {
	e := newEnv(t, "")
	c, sink := e.connect("u1", "chat:lobby")
	smp := samples(c.ID())
	refused := []struct {
		name string
		edit func(r *http.Request)
	}{
		{"remote IPv4 peer", func(r *http.Request) { r.RemoteAddr = "203.0.113.5:1234" }},
		{"remote IPv6 peer", func(r *http.Request) { r.RemoteAddr = "[2001:db8::1]:1234" }},
		{"remote peer claiming loopback in X-Forwarded-For", func(r *http.Request) {
			r.RemoteAddr = "203.0.113.5:1234"
			r.Header.Set("X-Forwarded-For", "127.0.0.1")
		}},
		{"remote peer claiming loopback in X-Real-IP", func(r *http.Request) {
			r.RemoteAddr = "203.0.113.5:1234"
			r.Header.Set("X-Real-IP", "127.0.0.1")
		}},
		{"private network peer", func(r *http.Request) { r.RemoteAddr = "10.0.0.2:1234" }},
		{"unspecified address", func(r *http.Request) { r.RemoteAddr = "0.0.0.0:1234" }},
		{"peer without port", func(r *http.Request) { r.RemoteAddr = "127.0.0.1" }},
		{"empty peer", func(r *http.Request) { r.RemoteAddr = "" }},
		{"loopback via a proxy (X-Forwarded-For)", func(r *http.Request) { r.Header.Set("X-Forwarded-For", "198.51.100.7") }},
		{"loopback via a proxy (Forwarded)", func(r *http.Request) { r.Header.Set("Forwarded", "for=198.51.100.7") }},
		{"loopback browser (Origin)", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }},
		{"loopback, foreign Host (DNS rebinding)", func(r *http.Request) { r.Host = "evil.example:8080" }},
		{"a key does not open the door for remote peers", func(r *http.Request) {
			r.RemoteAddr = "203.0.113.5:1234"
			r.Header.Set("Authorization", "Bearer anything")
		}},
	}
	for _, rt := range e.api.routes {
		s := smp[routeKey(rt)]
		for _, tc := range refused {
			t.Run(routeKey(rt)+"/"+tc.name, func(t *testing.T) {
				before := e.snapshot(sink, "chat:lobby")
				r := e.request(rt.method, s.path, s.body)
				tc.edit(r)
				wantError(t, e.serve(r), 403, codeForbidden)
				if after := e.snapshot(sink, "chat:lobby"); !reflect.DeepEqual(before, after) {
					t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	}
	admitted := []struct{ peer, host string }{
		{"127.0.0.1:40000", "127.0.0.1:8080"},
		{"127.8.9.10:40000", "localhost:8080"},
		{"[::1]:40000", "[::1]:8080"},
		{"[::ffff:127.0.0.1]:40000", "localhost"},
		{"127.0.0.1:40000", "LOCALHOST"},
	}
	for _, a := range admitted {
		r := e.request(http.MethodGet, "/api/stats", "")
		r.RemoteAddr, r.Host = a.peer, a.host
		wantOK(t, e.serve(r), 200, &statsResponse{})
	}
}

func TestKeys(t *testing.T) {
	h, err := hub.New(hub.Options{Engine: memory.New(memory.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{""}, {"has space"}, {" lead"}, {"tab\tkey"}, {"caf\u00e9"}, {"ok-key", ""}} {
		if _, err := New(Options{Hub: h, Keys: bad}); err == nil {
			t.Errorf("New accepted keys %q", bad)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Errorf("New accepted Options without a hub")
	}
	// Several keys: each one works (rotation).
	a, err := New(Options{Hub: h, Keys: []string{"old-key-1234567890", "new-key-1234567890"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"Bearer old-key-1234567890", "Bearer new-key-1234567890", "bearer new-key-1234567890", "BEARER   new-key-1234567890"} {
		r := httptest.NewRequest(http.MethodGet, "/api/stats", nil)
		r.RemoteAddr = "203.0.113.5:1234" // with keys, the peer does not matter
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		wantOK(t, w, 200, &statsResponse{})
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, testKey)
	// Wrong methods on every route path get 405 with the allowed ones.
	allowed := map[string][]string{}
	for _, rt := range e.api.routes {
		allowed[rt.pattern] = append(allowed[rt.pattern], rt.method)
		if rt.method == http.MethodGet {
			allowed[rt.pattern] = append(allowed[rt.pattern], http.MethodHead)
		}
	}
	for p := range allowed {
		slices.Sort(allowed[p])
	}
	smp := samples("c1")
	for _, rt := range e.api.routes {
		path := smp[routeKey(rt)].path
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if slices.Contains(allowed[rt.pattern], m) {
				continue
			}
			w := e.do(m, path, "")
			wantError(t, w, 405, codeMethodNotAllowed)
			if got, want := w.Header().Get("Allow"), strings.Join(allowed[rt.pattern], ", "); got != want {
				t.Errorf("%s %s: Allow %q, want %q", m, path, got, want)
			}
		}
	}
	for _, p := range []string{"/api/", "/api/nope", "/api/rooms/", "/api/rooms/a/b/c", "/api/broadcast/team/42", "/api/users//send", "/api/stats/", "/apix"} {
		wantError(t, e.do(http.MethodPost, p, `{}`), 404, codeNotFound)
	}
	// Without a key even unknown paths say 401: the API does not tell
	// strangers what exists.
	r := e.request(http.MethodGet, "/api/nope", "")
	r.Header.Del("Authorization")
	wantError(t, e.serve(r), 401, codeUnauthorized)
}

func TestPublishRoom(t *testing.T) {
	e := newEnv(t, testKey)
	_, s := e.connect("u1", "chat:lobby")
	_, other := e.connect("u2", "chat:other")

	var res hub.PublishResult
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", `{"type":"score_update","data":{"home":2,"away":1}}`), 200, &res)
	if res.EventID == "" || res.Recipients != 1 || res.Duplicate {
		t.Fatalf("answer %+v, want an event id, 1 recipient, not duplicate", res)
	}
	got := s.events("score_update")
	if len(got) != 1 || got[0].ID != res.EventID || got[0].Room != "chat:lobby" || string(got[0].Data) != `{"home":2,"away":1}` || got[0].TS == 0 {
		t.Fatalf("member got %+v, want one score_update with id %s and the data", got, res.EventID)
	}
	if n := len(other.events("score_update")); n != 0 {
		t.Errorf("a member of another room got %d events", n)
	}

	// The type defaults to "message"; data may be any JSON value or absent.
	for _, body := range []string{`{"data":"text"}`, `{"data":[1,2]}`, `{}`, `{"data":null}`} {
		wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", body), 200, &res)
	}
	msgs := s.events(protocol.TypeMessage)
	if len(msgs) != 4 || string(msgs[0].Data) != `"text"` || string(msgs[1].Data) != `[1,2]` || msgs[2].Data != nil || msgs[3].Data != nil {
		t.Errorf("messages %+v", msgs)
	}

	// A '/' in a room name travels as %2F.
	_, slash := e.connect("u3", "team/42")
	wantOK(t, e.do("POST", "/api/broadcast/team%2F42", `{"data":1}`), 200, &res)
	if n := len(slash.events(protocol.TypeMessage)); n != 1 || res.Recipients != 1 {
		t.Errorf("team/42 got %d events, recipients %d; want 1 and 1", n, res.Recipients)
	}

	// A room with no members is fine: the event is kept in history.
	wantOK(t, e.do("POST", "/api/broadcast/empty:room", `{"data":1}`), 200, &res)
	if res.Recipients != 0 || res.EventID == "" {
		t.Errorf("empty room answer %+v", res)
	}
}

func TestPublishValidation(t *testing.T) {
	e := newEnv(t, testKey)
	_, s := e.connect("u1", "chat:lobby")
	huge := `{"data":"` + strings.Repeat("x", DefaultMaxDataBytes) + `"}`
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"reserved type subscribe", `{"type":"subscribe"}`, 400, protocol.ErrBadRequest},
		{"reserved type error", `{"type":"error"}`, 400, protocol.ErrBadRequest},
		{"reserved type disconnect", `{"type":"disconnect"}`, 400, protocol.ErrBadRequest},
		{"type with space", `{"type":"a b"}`, 400, protocol.ErrBadRequest},
		{"type too long", `{"type":"` + strings.Repeat("t", protocol.MaxTypeLen+1) + `"}`, 400, protocol.ErrBadRequest},
		{"idempotency key too long", `{"idempotency_key":"` + strings.Repeat("k", maxIdempotencyKeyLen+1) + `"}`, 400, protocol.ErrBadRequest},
		{"idempotency key not a string", `{"idempotency_key":1}`, 400, protocol.ErrBadRequest},
		{"data over the limit", huge, 413, codeDataTooLarge},
		{"malformed data", `{"data":{"a":}}`, 400, protocol.ErrBadJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(s, "chat:lobby")
			wantError(t, e.do("POST", "/api/broadcast/chat:lobby", tc.body), tc.status, tc.code)
			if after := e.snapshot(s, "chat:lobby"); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed")
			}
		})
	}
	// Type errors name the JSON field, not Go's structs.
	for _, tc := range []struct{ path, body, want string }{
		{"/api/broadcast/chat:lobby", `{"type":1}`, `field "type" must be a string`},
		{"/api/broadcast/chat:lobby", `{"idempotency_key":[]}`, `field "idempotency_key" must be a string`},
		{"/api/publish", `{"events":[{"room":"a"},{"room":5}]}`, `field "events.room" must be a string`},
		{"/api/users/u1/disconnect", `{"code":"x"}`, `field "code" must be an integer`},
	} {
		w := e.do("POST", tc.path, tc.body)
		var b errorBody
		decode(t, w, &b)
		if b.Error.Message != tc.want {
			t.Errorf("%s %s: message %q, want %q", tc.path, tc.body, b.Error.Message, tc.want)
		}
	}
	// Exactly at the data limit is accepted.
	at := `{"data":"` + strings.Repeat("x", DefaultMaxDataBytes-2) + `"}`
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", at), 200, nil)
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, testKey)
	_, s := e.connect("u1", "chat:lobby")
	var first, again, other hub.PublishResult
	body := `{"type":"goal","data":{"minute":42},"idempotency_key":"goal-42"}`
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", body), 200, &first)
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", body), 200, &again)
	if again.EventID != first.EventID || !again.Duplicate || first.Duplicate {
		t.Fatalf("first %+v, again %+v: want the same event id, duplicate only the second time", first, again)
	}
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", `{"type":"goal","idempotency_key":"goal-43"}`), 200, &other)
	if other.EventID == first.EventID || other.Duplicate {
		t.Errorf("another key %+v: want a new event", other)
	}
	if n := len(s.events("goal")); n != 2 {
		t.Errorf("member got %d goal events, want 2 (the duplicate is not delivered)", n)
	}
}

func TestPublishBatch(t *testing.T) {
	e := newEnv(t, testKey)
	_, a := e.connect("u1", "room:a")
	_, b := e.connect("u2", "room:b")
	var ans batchAnswer
	wantOK(t, e.do("POST", "/api/publish", `{"events":[
		{"room":"room:a","type":"t1","data":1,"idempotency_key":"k1"},
		{"room":"room:b","data":{"x":true}},
		{"room":"room:a","type":"t1","data":1,"idempotency_key":"k1"},
		{"room":"room:none","type":"t2"}]}`), 200, &ans)
	if ans.Failed != 0 || len(ans.Results) != 4 {
		t.Fatalf("answer %+v", ans)
	}
	r := ans.Results
	if r[0].Room != "room:a" || r[0].EventID == "" || r[0].Recipients != 1 || r[0].Duplicate {
		t.Errorf("result 0 %+v", r[0])
	}
	if r[1].Room != "room:b" || r[1].EventID == "" || r[1].Recipients != 1 {
		t.Errorf("result 1 %+v", r[1])
	}
	if r[2].EventID != r[0].EventID || !r[2].Duplicate {
		t.Errorf("result 2 %+v: want a duplicate of result 0", r[2])
	}
	if r[3].Room != "room:none" || r[3].Recipients != 0 || r[3].EventID == "" {
		t.Errorf("result 3 %+v", r[3])
	}
	if n := len(a.events("t1")); n != 1 {
		t.Errorf("room:a got %d t1 events, want 1", n)
	}
	if got := b.events(protocol.TypeMessage); len(got) != 1 || string(got[0].Data) != `{"x":true}` {
		t.Errorf("room:b got %+v", got)
	}

	// A bad event anywhere refuses the whole batch before anything is
	// published.
	item := `{"room":"room:a","type":"t3"}`
	many := func(n int) string { return `{"events":[` + strings.Repeat(item+",", n-1) + item + `]}` }
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"empty batch", `{"events":[]}`, 400, protocol.ErrBadRequest},
		{"no events field", `{}`, 400, protocol.ErrBadRequest},
		{"events null", `{"events":null}`, 400, protocol.ErrBadRequest},
		{"over the batch limit", many(DefaultMaxBatch + 1), 413, codeBatchTooLarge},
		{"bad room in the last event", `{"events":[` + item + `,{"room":"bad room"}]}`, 400, protocol.ErrInvalidRoom},
		{"missing room", `{"events":[` + item + `,{"type":"t3"}]}`, 400, protocol.ErrInvalidRoom},
		{"reserved type", `{"events":[` + item + `,{"room":"room:a","type":"pong"}]}`, 400, protocol.ErrBadRequest},
		{"unknown field in an event", `{"events":[{"room":"room:a","extra":1}]}`, 400, protocol.ErrBadRequest},
		{"event not an object", `{"events":["room:a"]}`, 400, protocol.ErrBadRequest},
		{"room not a string", `{"events":[{"room":5}]}`, 400, protocol.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(a, "room:a")
			wantError(t, e.do("POST", "/api/publish", tc.body), tc.status, tc.code)
			if after := e.snapshot(a, "room:a"); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed")
			}
		})
	}
	wantOK(t, e.do("POST", "/api/publish", many(DefaultMaxBatch)), 200, &ans)
	if len(ans.Results) != DefaultMaxBatch || len(a.events("t3")) != DefaultMaxBatch {
		t.Errorf("full batch: %d results, %d events delivered; want %d", len(ans.Results), len(a.events("t3")), DefaultMaxBatch)
	}
}

func TestBroadcastAndSends(t *testing.T) {
	e := newEnv(t, testKey)
	_, s1 := e.connect("alice")
	_, s2 := e.connect("alice")
	c3, s3 := e.connect("bob")

	var n recipients
	wantOK(t, e.do("POST", "/api/broadcast", `{"type":"maintenance","data":{"in":"5m"}}`), 200, &n)
	if n.Recipients != 3 {
		t.Errorf("broadcast recipients %d, want 3", n.Recipients)
	}
	for i, s := range []*fakeSink{s1, s2, s3} {
		if got := s.events("maintenance"); len(got) != 1 || string(got[0].Data) != `{"in":"5m"}` || got[0].Room != "" {
			t.Errorf("connection %d got %+v", i, got)
		}
	}

	wantOK(t, e.do("POST", "/api/users/alice/send", `{"type":"dm","data":"hi"}`), 200, &n)
	if n.Recipients != 2 || len(s1.events("dm")) != 1 || len(s2.events("dm")) != 1 || len(s3.events("dm")) != 0 {
		t.Errorf("user send: recipients %d; alice got %d and %d, bob %d; want 2: 1, 1, 0", n.Recipients, len(s1.events("dm")), len(s2.events("dm")), len(s3.events("dm")))
	}
	wantOK(t, e.do("POST", "/api/users/nobody/send", `{"data":1}`), 200, &n)
	if n.Recipients != 0 {
		t.Errorf("unknown user: recipients %d", n.Recipients)
	}

	wantOK(t, e.do("POST", "/api/connections/"+c3.ID()+"/send", `{"type":"direct"}`), 200, &n)
	if n.Recipients != 1 || len(s3.events("direct")) != 1 || len(s1.events("direct")) != 0 {
		t.Errorf("connection send: recipients %d, bob got %d, alice %d", n.Recipients, len(s3.events("direct")), len(s1.events("direct")))
	}
	before := e.snapshot(s1, "chat:lobby")
	wantError(t, e.do("POST", "/api/connections/nope/send", `{"type":"direct"}`), 404, codeConnNotFound)
	wantError(t, e.do("POST", "/api/users/"+strings.Repeat("u", maxUserIDLen+1)+"/send", `{}`), 400, protocol.ErrBadRequest)
	wantError(t, e.do("POST", "/api/connections/"+strings.Repeat("c", maxConnIDLen+1)+"/send", `{}`), 400, protocol.ErrBadRequest)
	wantError(t, e.do("POST", "/api/broadcast", `{"type":"connection_established"}`), 400, protocol.ErrBadRequest)
	if after := e.snapshot(s1, "chat:lobby"); !reflect.DeepEqual(before, after) {
		t.Errorf("state changed")
	}
}

func TestDisconnect(t *testing.T) {
	e := newEnv(t, testKey)
	// Valid codes close every connection of the user with that code.
	i := 0
	for _, tc := range []struct {
		body   string
		code   protocol.CloseCode
		reason string
	}{
		{``, protocol.CloseKicked, "kicked"},
		{`{}`, protocol.CloseKicked, "kicked"},
		{`{"reason":"spam"}`, protocol.CloseKicked, "spam"},
		{`{"code":1000}`, 1000, "normal"},
		{`{"code":1001,"reason":"moving"}`, 1001, "moving"},
		{`{"code":1008}`, 1008, "policy_violation"},
		{`{"code":1011}`, 1011, "internal_error"},
		{`{"code":1012}`, 1012, "service_restart"},
		{`{"code":1013}`, 1013, "try_again_later"},
		{`{"code":4000}`, 4000, "session_expired"},
		{`{"code":4999,"reason":"custom"}`, 4999, "custom"},
		{`{"code":4006,"reason":"` + strings.Repeat("r", maxReasonLen) + `"}`, 4006, strings.Repeat("r", maxReasonLen)},
	} {
		i++
		t.Run("user "+tc.body, func(t *testing.T) {
			// A user per case: the fake sinks do not unregister on close.
			user := fmt.Sprintf("mallory-%d", i)
			_, s1 := e.connect(user)
			_, s2 := e.connect(user)
			_, bystander := e.connect("trent")
			var a disconnectAnswer
			wantOK(t, e.do("POST", "/api/users/"+user+"/disconnect", tc.body), 200, &a)
			if a.Connections != 2 {
				t.Errorf("connections %d, want 2", a.Connections)
			}
			for _, s := range []*fakeSink{s1, s2} {
				d, ok := s.closeCode()
				if !ok || d.Code != tc.code || d.Reason != tc.reason || d.Reconnect != tc.code.Reconnect() {
					t.Errorf("closed %v with %+v, want code %d reason %q", ok, d, tc.code, tc.reason)
				}
			}
			if _, ok := bystander.closeCode(); ok {
				t.Errorf("another user's connection was closed")
			}
		})
	}
	// Invalid codes and reasons close nothing.
	_, s := e.connect("victim")
	for _, body := range []string{
		`{"code":0}`, `{"code":-1}`, `{"code":999}`, `{"code":1002}`, `{"code":1003}`, `{"code":1005}`,
		`{"code":1006}`, `{"code":1007}`, `{"code":1009}`, `{"code":1010}`, `{"code":1014}`, `{"code":1015}`,
		`{"code":2000}`, `{"code":3000}`, `{"code":3999}`, `{"code":5000}`,
		`{"code":66536}`, // 1000 after a careless uint16 conversion
		`{"code":4006.5}`, `{"code":"4006"}`, `{"code":null,"reason":5}`,
		`{"reason":"` + strings.Repeat("r", maxReasonLen+1) + `"}`,
	} {
		t.Run("refused "+body[:min(len(body), 30)], func(t *testing.T) {
			before := e.snapshot(s, "chat:lobby")
			wantError(t, e.do("POST", "/api/users/victim/disconnect", body), 400, protocol.ErrBadRequest)
			if after := e.snapshot(s, "chat:lobby"); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed")
			}
		})
	}

	c, s := e.connect("carol")
	_, s2 := e.connect("carol")
	var acc accepted
	wantOK(t, e.do("POST", "/api/connections/"+c.ID()+"/disconnect", `{"code":4321,"reason":"bye"}`), 202, &acc)
	if d, ok := s.closeCode(); !acc.Accepted || !ok || d.Code != 4321 || d.Reason != "bye" {
		t.Errorf("accepted %v; closed %v with %+v, want 4321 bye", acc.Accepted, ok, d)
	}
	if _, ok := s2.closeCode(); ok {
		t.Errorf("the user's other connection was closed")
	}
	// An unknown connection id is accepted and closes nothing.
	wantOK(t, e.do("POST", "/api/connections/unknown/disconnect", ``), 202, &acc)
	if _, ok := s2.closeCode(); ok {
		t.Errorf("an unknown id closed a connection")
	}
}

func TestRooms(t *testing.T) {
	e := newEnv(t, testKey)
	var list roomList
	w := e.do("GET", "/api/rooms", "")
	wantOK(t, w, 200, &list)
	if list.Rooms == nil || len(list.Rooms) != 0 || list.Node != e.hub.NodeID() || !strings.Contains(w.Body.String(), `"rooms":[]`) {
		t.Errorf("no rooms: %s", w.Body)
	}
	c1, _ := e.connect("u1", "z:last", "a:first")
	c2, _ := e.connect("u2", "a:first")
	wantOK(t, e.do("GET", "/api/rooms", ""), 200, &list)
	want := []hub.RoomInfo{{Name: "a:first", Members: 2}, {Name: "z:last", Members: 1}}
	if !reflect.DeepEqual(list.Rooms, want) {
		t.Errorf("rooms %+v, want %+v", list.Rooms, want)
	}

	var room roomDetail
	wantOK(t, e.do("GET", "/api/rooms/a:first", ""), 200, &room)
	wantMembers := []hub.MemberInfo{{UserID: "u1", ConnectionID: c1.ID()}, {UserID: "u2", ConnectionID: c2.ID()}}
	slices.SortFunc(wantMembers, func(a, b hub.MemberInfo) int { return cmp.Compare(a.ConnectionID, b.ConnectionID) })
	if room.Room != "a:first" || room.Members != 2 || !reflect.DeepEqual(room.Connections, wantMembers) {
		t.Errorf("room %+v, want members %+v", room, wantMembers)
	}
	wantError(t, e.do("GET", "/api/rooms/nobody:here", ""), 404, protocol.ErrRoomNotFound)
}

func TestHistory(t *testing.T) {
	e := newEnv(t, testKey)
	var ids []string
	for i := range 5 {
		var res hub.PublishResult
		wantOK(t, e.do("POST", "/api/broadcast/news", fmt.Sprintf(`{"type":"item","data":%d}`, i)), 200, &res)
		ids = append(ids, res.EventID)
	}
	var page protocol.HistoryPage
	wantOK(t, e.do("GET", "/api/rooms/news/history", ""), 200, &page)
	if len(page.Events) != 5 || page.Position != ids[4] || !page.Complete {
		t.Fatalf("history %+v", page)
	}
	var first protocol.Envelope
	if err := json.Unmarshal(page.Events[0], &first); err != nil || first.ID != ids[0] || first.Type != "item" || string(first.Data) != "0" {
		t.Errorf("first event %s (%v)", page.Events[0], err)
	}
	// Paging: since an id, limit per page.
	wantOK(t, e.do("GET", "/api/rooms/news/history?since="+ids[0]+"&limit=2", ""), 200, &page)
	if len(page.Events) != 2 || !page.HasMore || !strings.Contains(string(page.Events[1]), ids[2]) {
		t.Errorf("page after %s: %+v", ids[0], page)
	}
	wantOK(t, e.do("GET", "/api/rooms/news/history?since="+ids[2]+"&limit=2", ""), 200, &page)
	if len(page.Events) != 2 || page.HasMore {
		t.Errorf("last page: %+v", page)
	}
	wantOK(t, e.do("GET", "/api/rooms/news/history?limit=2", ""), 200, &page)
	if len(page.Events) != 2 || !strings.Contains(string(page.Events[1]), ids[4]) {
		t.Errorf("newest 2: %+v", page)
	}
	// A room that never had an event has an empty history.
	w := e.do("GET", "/api/rooms/quiet/history", "")
	wantOK(t, w, 200, &page)
	if len(page.Events) != 0 || !strings.Contains(w.Body.String(), `"events":[]`) {
		t.Errorf("empty room history %s", w.Body)
	}
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"?since=nonsense", 400, protocol.ErrBadRequest},
		{"?since=ABC-1", 400, protocol.ErrBadRequest},
		{"?limit=x", 400, protocol.ErrBadRequest},
		{"?limit=-1", 400, protocol.ErrBadRequest},
		{"?limit=1.5", 400, protocol.ErrBadRequest},
		{"?limit=1&limit=2", 400, protocol.ErrBadRequest},
		{"?since=%zz", 400, protocol.ErrBadRequest},
	} {
		wantError(t, e.do("GET", "/api/rooms/news/history"+tc.query, ""), tc.status, tc.code)
	}
	wantError(t, e.do("GET", "/api/rooms/nohist:x/history", ""), 400, protocol.ErrNotImplemented)
}

func TestPresence(t *testing.T) {
	e := newEnv(t, testKey)
	c, _ := e.connect("u1", "chat:lobby")
	var p struct {
		Clients int                 `json:"clients"`
		Users   int                 `json:"users"`
		Members []engine.ClientInfo `json:"members"`
	}
	wantOK(t, e.do("GET", "/api/rooms/chat:lobby/presence", ""), 200, &p)
	if p.Clients != 1 || p.Users != 1 || len(p.Members) != 1 || p.Members[0].ConnectionID != c.ID() || p.Members[0].UserID != "u1" {
		t.Errorf("presence %+v", p)
	}
	for _, q := range []string{"?counts_only=1", "?counts_only=true"} {
		w := e.do("GET", "/api/rooms/chat:lobby/presence"+q, "")
		wantOK(t, w, 200, &p)
		if strings.Contains(w.Body.String(), "members") || p.Clients != 1 || p.Users != 1 {
			t.Errorf("counts only %s", w.Body)
		}
	}
	w := e.do("GET", "/api/rooms/empty:room/presence", "")
	wantOK(t, w, 200, &p)
	if p.Clients != 0 || !strings.Contains(w.Body.String(), `"members":[]`) {
		t.Errorf("empty room presence %s", w.Body)
	}
	wantError(t, e.do("GET", "/api/rooms/chat:lobby/presence?counts_only=maybe", ""), 400, protocol.ErrBadRequest)
	wantError(t, e.do("GET", "/api/rooms/nohist:x/presence", ""), 400, protocol.ErrNotImplemented)
}

func TestStats(t *testing.T) {
	e := newEnv(t, testKey)
	e.connect("u1", "chat:lobby")
	var st statsResponse
	wantOK(t, e.do("GET", "/api/stats", ""), 200, &st)
	if st.Node.Node != e.hub.NodeID() || st.Node.Connections != 1 || st.Node.Rooms != 1 || len(st.Nodes) != 1 || st.Nodes[0].Node != st.Node.Node {
		t.Errorf("stats %+v", st)
	}
	wantOK(t, e.do("POST", "/api/broadcast/chat:lobby", `{}`), 200, nil)
	wantOK(t, e.do("GET", "/api/stats", ""), 200, &st)
	if st.Node.Publications != 1 || st.Node.MessagesOut == 0 {
		t.Errorf("after a publish: %+v", st.Node)
	}
}

// failingEngine fails publishes to rooms in namespace "fail" and every
// control command, as a broken broker would.
type failingEngine struct {
	*memory.Engine
}

var errBroker = errors.New("broker unreachable")

func (f failingEngine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	if protocol.Namespace(room) == "fail" {
		return engine.PublishResult{}, errBroker
	}
	return f.Engine.Publish(ctx, room, pub, opts)
}

func (f failingEngine) PublishControl(ctx context.Context, data []byte) error { return errBroker }

// TestEngineFailures: engine errors are 500 internal (503 unavailable once
// the engine is closed), and in a batch they fail only their own event.
func TestEngineFailures(t *testing.T) {
	mem := memory.New(memory.Options{})
	h, err := hub.New(hub.Options{Engine: failingEngine{mem}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.Run(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Hub: h, Keys: []string{testKey}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hub: h, api: a, key: testKey}

	wantError(t, e.do("POST", "/api/broadcast/fail:x", `{}`), 500, protocol.ErrInternal)
	wantError(t, e.do("POST", "/api/broadcast", `{}`), 500, protocol.ErrInternal)
	wantError(t, e.do("POST", "/api/users/u1/send", `{}`), 500, protocol.ErrInternal)
	wantError(t, e.do("POST", "/api/users/u1/disconnect", ``), 500, protocol.ErrInternal)
	wantError(t, e.do("POST", "/api/connections/c1/disconnect", ``), 500, protocol.ErrInternal)

	var ans batchAnswer
	wantOK(t, e.do("POST", "/api/publish", `{"events":[{"room":"ok:1"},{"room":"fail:2"},{"room":"ok:3"}]}`), 200, &ans)
	r := ans.Results
	if ans.Failed != 1 || len(r) != 3 || r[0].EventID == "" || r[2].EventID == "" || r[1].EventID != "" ||
		r[1].Error == nil || r[1].Error.Code != protocol.ErrInternal || r[0].Error != nil {
		t.Errorf("batch with one failing room: %+v", ans)
	}

	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.do("POST", "/api/broadcast/ok:1", `{}`), 503, codeUnavailable)
	wantError(t, e.do("GET", "/api/rooms/ok:1/history", ``), 503, codeUnavailable)
}

// TestHead: HEAD on a GET endpoint answers as GET would, without the body
// (over a real server, where net/http drops it).
func TestHead(t *testing.T) {
	e := newEnv(t, testKey)
	e.connect("u1", "chat:lobby")
	srv := httptest.NewServer(e.api)
	t.Cleanup(srv.Close)
	get := func(method string) (*http.Response, []byte) {
		t.Helper()
		r, err := http.NewRequest(method, srv.URL+"/api/rooms", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	g, gb := get(http.MethodGet)
	h, hb := get(http.MethodHead)
	if g.StatusCode != 200 || h.StatusCode != 200 || len(gb) == 0 || len(hb) != 0 {
		t.Fatalf("GET %d with %d bytes, HEAD %d with %d bytes; want 200 with a body, 200 without", g.StatusCode, len(gb), h.StatusCode, len(hb))
	}
	if ct := h.Header.Get("Content-Type"); ct != g.Header.Get("Content-Type") {
		t.Errorf("HEAD Content-Type %q, GET %q", ct, g.Header.Get("Content-Type"))
	}
}
