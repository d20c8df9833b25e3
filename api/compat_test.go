package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// httpCall sends one request (a JSON body when body is set, the API key
// when apiKey is) and returns the status, headers and body of the answer.
func httpCall(t *testing.T, method, url, body, apiKey string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSeedBroadcastRoute drives a real node the way the seeds' FastAPI
// backend would: POST /broadcast/{room} with a JSON object. Members get a
// "broadcast" event whose data is the body; the answer has the seeds'
// shape; the route wants the API key like /api/; and the seeds' other
// paths get a 404 that names the real route.
func TestSeedBroadcastRoute(t *testing.T) {
	n := wstest.Start(t, server.Config{APIKey: key, Hub: hub.Options{NoJoinLeave: true}, NoDemo: true})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	c.Send(map[string]string{"type": "subscribe", "id": "s", "room": "match:7"})
	c.Expect("subscribed")

	do := func(method, path, body, apiKey string) (int, http.Header, string) {
		t.Helper()
		return httpCall(t, method, "http://"+n.Addr+path, body, apiKey)
	}

	if status, _, body := do("POST", "/broadcast/match:7", `{"text":"goal"}`, ""); status != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) {
		t.Errorf("without the key: %d %s, want 401 unauthorized", status, body)
	}
	if status, _, body := do("POST", "/broadcast/match:7", `{"text":"goal"}`, "wrong-key"); status != http.StatusForbidden {
		t.Errorf("wrong key: %d %s, want 403", status, body)
	}
	status, hdr, body := do("POST", "/broadcast/match:7", `{"text":"goal","minute":42}`, key)
	var ans struct {
		Status     string `json:"status"`
		Room       string `json:"room"`
		Recipients int    `json:"recipients"`
		EventID    string `json:"event_id"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil || ans.Status != "sent" || ans.Room != "match:7" || ans.Recipients != 1 || ans.EventID == "" {
		t.Fatalf("publish: %d %s", status, body)
	}
	if l := hdr.Get("Link"); l != `</api/broadcast/match:7>; rel="alternate"` {
		t.Errorf("Link %q", l)
	}
	ev := c.Expect("broadcast")
	if ev.ID != ans.EventID || ev.Room != "match:7" || string(ev.Data) != `{"text":"goal","minute":42}` {
		t.Errorf("members got %s", ev.Raw)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/broadcast/match:7", `"goal"`, 400, "must be a JSON object"},
		{"POST", "/broadcast/bad%20room", `{}`, 400, `"invalid_room"`},
		{"GET", "/broadcast/match:7", "", 405, `"method_not_allowed"`},
		{"GET", "/rooms", "", 404, "GET /api/rooms"},
		{"GET", "/stats", "", 404, "GET /api/stats"},
		{"GET", "/nowhere", "", 404, "the WebSocket endpoint is /ws"},
	} {
		status, _, body := do(tt.method, tt.path, tt.body, key)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", tt.method, tt.path, status, body, tt.status, tt.want)
		}
	}
}
