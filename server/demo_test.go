package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// httpDo sends one request to the node at addr and returns the status, the
// headers and the body. host, if set, replaces the Host header.
func httpDo(t *testing.T, method, url string, hdr http.Header, host string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if host != "" {
		req.Host = host
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// jsonErrorCode returns error.code of a JSON error body, failing the test
// if the body is not one.
func jsonErrorCode(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Error.Code == "" || v.Error.Message == "" {
		t.Fatalf("not a JSON error body: %q", body)
	}
	return v.Error.Code
}

// TestDemoAssets: the page, its script and style and the SDK bundle are
// served from the binary with a CSP that allows no inline script; the
// bundle is the committed file; --no-demo removes all of them.
func TestDemoAssets(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{})
	off := wstest.Start(t, server.Config{NoDemo: true, NoAdmin: true})
	sdk, err := os.ReadFile("web/switchboard.min.js")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/demo/demo.js">`},
		{"/demo/demo.js", "text/javascript; charset=utf-8", `from '/switchboard.min.js'`},
		{"/demo/demo.css", "text/css; charset=utf-8", ".scoreboard"},
		{"/switchboard.min.js", "text/javascript; charset=utf-8", "export{"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, hdr, body := httpDo(t, "GET", "http://"+n.Addr+tt.path, nil, "")
			if status != 200 || hdr.Get("Content-Type") != tt.contentType {
				t.Fatalf("status %d, Content-Type %q", status, hdr.Get("Content-Type"))
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			csp := hdr.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers: CSP %q, nosniff %q", csp, hdr.Get("X-Content-Type-Options"))
			}
			if hdr.Get("Cache-Control") != "no-cache" || hdr.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("headers: Cache-Control %q, Referrer-Policy %q", hdr.Get("Cache-Control"), hdr.Get("Referrer-Policy"))
			}
			if tt.path == "/switchboard.min.js" && !bytes.Equal(body, sdk) {
				t.Error("served SDK bundle differs from server/web/switchboard.min.js")
			}
			status, _, body = httpDo(t, "GET", "http://"+off.Addr+tt.path, nil, "")
			if status != 404 || jsonErrorCode(t, body) != "not_found" {
				t.Errorf("with NoDemo: status %d %q", status, body)
			}
		})
	}
	// No inline script or handler attribute: the CSP would block them.
	for _, path := range []string{"/", "/admin"} {
		_, _, page := httpDo(t, "GET", "http://"+n.Addr+path, nil, "")
		if m := inlineScript.Find(page); m != nil {
			t.Errorf("%s has inline script: %s", path, m)
		}
	}
}

// inlineScript finds a script element without src, or an event-handler
// attribute.
var inlineScript = regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]|\son[a-z]+\s*=`)

// demoStep is the publish button's answer.
type demoStep struct {
	Room   string `json:"room"`
	Step   int    `json:"step"`
	Events []struct {
		Type    string `json:"type"`
		EventID string `json:"event_id"`
	} `json:"events"`
}

// TestDemoPublish: each press publishes the next step of the script to
// demo-match:ID; a subscriber receives exactly those events, with the
// answer's ids, and the script loops.
func TestDemoPublish(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoAdmin: true})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	c.Send(map[string]string{"type": "subscribe", "id": "s", "room": "demo-match:2"})
	c.Expect("subscribed")

	var steps []demoStep
	for i := 0; i < 10; i++ { // the script has 9 steps: the 10th starts again
		status, _, body := httpDo(t, "POST", "http://"+n.Addr+"/demo/matches/2/next", nil, "")
		if status != 200 {
			t.Fatalf("press %d: status %d %s", i, status, body)
		}
		var st demoStep
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Room != "demo-match:2" || st.Step != i%9 || len(st.Events) == 0 {
			t.Fatalf("press %d: %+v", i, st)
		}
		steps = append(steps, st)
		for _, ev := range st.Events {
			m := c.Expect(ev.Type)
			if m.ID != ev.EventID || m.Room != "demo-match:2" {
				t.Fatalf("got %s, want %s %s", m.Raw, ev.Type, ev.EventID)
			}
			if ev.Type == "match_data" {
				var d struct {
					HomeTeam string `json:"home_team"`
					AwayTeam string `json:"away_team"`
					Score    struct{ Home, Away int }
					Status   string
				}
				if err := json.Unmarshal(m.Data, &d); err != nil || d.HomeTeam != "City" || d.AwayTeam != "Athletic" || d.Status == "" {
					t.Errorf("match_data %s", m.Data)
				}
			}
		}
	}
	if steps[0].Events[0].Type != "match_data" || steps[9].Events[0].Type != "match_data" {
		t.Errorf("the script should start (and restart) with match_data: %+v / %+v", steps[0], steps[9])
	}
	// Every step is also in the room's history, where the page reads the
	// match's state on joining.
	c.Send(map[string]any{"type": "history", "id": "h", "room": "demo-match:2", "data": map[string]int{"limit": 100}})
	h := c.Expect("history_result")
	var page struct{ Events []json.RawMessage }
	if err := json.Unmarshal(h.Data, &page); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, st := range steps {
		want += len(st.Events)
	}
	if len(page.Events) != want {
		t.Errorf("history has %d events, the presses published %d", len(page.Events), want)
	}
}

// TestDemoPublishCarriesOn: the button continues the match a backend
// published into the room (publish.sh plays the same script), not a second
// match of its own; after full time, or after someone else's event, it
// starts a new one.
func TestDemoPublishCarriesOn(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoAdmin: true})
	press := func() demoStep {
		t.Helper()
		status, _, body := httpDo(t, "POST", "http://"+n.Addr+"/demo/matches/1/next", nil, "")
		var st demoStep
		if status != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("press: status %d %s", status, body)
		}
		return st
	}
	broadcast := func(typ, data string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+n.Addr+"/api/broadcast/demo-match:1", strings.NewReader(`{"type":"`+typ+`","data":`+data+`}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("broadcast: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	// Someone else's match in the room: the button kicks off its own.
	broadcast("commentary", `{"match_id":"1","minute":50,"text":"Testers score"}`)
	if st := press(); st.Step != 0 || st.Events[0].Type != "match_data" {
		t.Fatalf("after a foreign event: step %d, want kick-off", st.Step)
	}
	// A backend played up to half-time (the script's step 3, minute 45).
	broadcast("score_update", `{"match_id":"1","minute":45,"score":{"home":1,"away":0},"status":"half_time"}`)
	broadcast("commentary", `{"match_id":"1","minute":45,"text":"Half-time: Rovers 1, United 0."}`)
	if st := press(); st.Step != 4 {
		t.Fatalf("after half-time the button played step %d, want 4 (the second half)", st.Step)
	}
	for want := 5; want <= 8; want++ {
		if st := press(); st.Step != want {
			t.Fatalf("step %d, want %d", st.Step, want)
		}
	}
	if st := press(); st.Step != 0 || st.Events[0].Type != "match_data" {
		t.Fatalf("after full time: step %d %+v, want a new kick-off", st.Step, st.Events)
	}
}

// TestDemoPublishRefusals: who may press the button. Without an API key:
// this machine only, like the API, but a same-origin page is fine; with a
// key: the key. Cross-origin pages never.
func TestDemoPublishRefusals(t *testing.T) {
	t.Parallel()
	open := wstest.Start(t, server.Config{NoAdmin: true})
	keyed := wstest.Start(t, server.Config{NoAdmin: true, APIKey: "demo-test-key-0123456789"})
	tests := []struct {
		name   string
		node   *wstest.Node
		method string
		path   string
		hdr    http.Header
		host   string
		status int
		code   string
	}{
		{"no key, loopback", open, "POST", "/demo/matches/1/next", nil, "", 200, ""},
		{"no key, same-origin page", open, "POST", "/demo/matches/1/next", http.Header{"Origin": {"http://" + open.Addr}}, "", 200, ""},
		{"no key, localhost name", open, "POST", "/demo/matches/1/next", nil, "localhost", 200, ""},
		{"cross-origin page", open, "POST", "/demo/matches/1/next", http.Header{"Origin": {"http://evil.example"}}, "", 403, "forbidden"},
		{"null origin", open, "POST", "/demo/matches/1/next", http.Header{"Origin": {"null"}}, "", 403, "forbidden"},
		{"no key, through a proxy", open, "POST", "/demo/matches/1/next", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "", 403, "forbidden"},
		{"no key, Forwarded header", open, "POST", "/demo/matches/1/next", http.Header{"Forwarded": {"for=203.0.113.9"}}, "", 403, "forbidden"},
		{"no key, foreign Host (DNS rebinding)", open, "POST", "/demo/matches/1/next", nil, "rebind.example:80", 403, "forbidden"},
		{"unknown match", open, "POST", "/demo/matches/9/next", nil, "", 404, "not_found"},
		{"arbitrary room", open, "POST", "/demo/matches/chat:lobby/next", nil, "", 404, "not_found"},
		{"GET", open, "GET", "/demo/matches/1/next", nil, "", 405, "method_not_allowed"},
		{"key: none sent", keyed, "POST", "/demo/matches/1/next", nil, "", 401, "unauthorized"},
		{"key: wrong", keyed, "POST", "/demo/matches/1/next", http.Header{"Authorization": {"Bearer nope"}}, "", 403, "forbidden"},
		{"key: right", keyed, "POST", "/demo/matches/1/next", http.Header{"Authorization": {"Bearer demo-test-key-0123456789"}}, "", 200, ""},
		{"key: right, foreign Host", keyed, "POST", "/demo/matches/1/next", http.Header{"Authorization": {"Bearer demo-test-key-0123456789"}}, "switchboard.example", 200, ""},
		{"key: right, cross-origin", keyed, "POST", "/demo/matches/1/next", http.Header{"Authorization": {"Bearer demo-test-key-0123456789"}, "Origin": {"https://evil.example"}}, "", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := httpDo(t, tt.method, "http://"+tt.node.Addr+tt.path, tt.hdr, tt.host)
			if status != tt.status {
				t.Fatalf("status %d %s, want %d", status, body, tt.status)
			}
			if tt.code != "" {
				if code := jsonErrorCode(t, body); code != tt.code {
					t.Errorf("code %q, want %q", code, tt.code)
				}
			}
		})
	}
}

// TestDemoPublishThrottled: the button is rate-limited for the whole node
// (2 a second, 10 at once), so visitors cannot flood the demo rooms. The
// bound on presses is loose: 10 + 2 per second elapsed, never reached by a
// request loop on loopback unless the limiter is broken.
func TestDemoPublishThrottled(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoAdmin: true})
	start := time.Now()
	for i := 0; i < 200; i++ {
		status, hdr, body := httpDo(t, "POST", "http://"+n.Addr+"/demo/matches/3/next", nil, "")
		if status == 200 {
			continue
		}
		if status != 429 || jsonErrorCode(t, body) != "throttled" || hdr.Get("Retry-After") == "" {
			t.Fatalf("press %d: status %d %s", i, status, body)
		}
		if max := 10 + 2*time.Since(start).Seconds() + 1; float64(i) > max {
			t.Errorf("%d presses went through before the first 429; the limit allows %.0f", i, max)
		}
		return
	}
	t.Fatal("200 presses and no 429")
}

// TestDemoPublishFromRemotePeer: without a key, a request whose TCP peer
// is another machine is refused even with a loopback Host. The request is
// handed to the node's handler directly, with a remote peer address.
func TestDemoPublishFromRemotePeer(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{NoAdmin: true})
	for _, peer := range []string{"203.0.113.9:40000", "[2001:db8::1]:40000", "not-an-address"} {
		req := httptest.NewRequest("POST", "http://127.0.0.1/demo/matches/1/next", nil)
		req.RemoteAddr = peer
		rec := httptest.NewRecorder()
		n.Srv.Handler().ServeHTTP(rec, req)
		if rec.Code != 403 || jsonErrorCode(t, rec.Body.Bytes()) != "forbidden" {
			t.Errorf("peer %s: status %d %s, want 403 forbidden", peer, rec.Code, rec.Body)
		}
	}
}
