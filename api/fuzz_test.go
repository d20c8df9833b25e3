package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
)

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodHead}

// FuzzAPI sends arbitrary paths, queries and bodies to the server API. Every
// answer must be JSON (an error is {"error": {"code", "message"}} with a 4xx
// status) and nothing may panic or fail with 5xx: the memory engine cannot
// fail, so a 5xx is a parser letting bad input through.
func FuzzAPI(f *testing.F) {
	h, err := hub.New(hub.Options{Engine: memory.New(memory.Options{})})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	if err := h.Run(ctx); err != nil {
		f.Fatal(err)
	}
	a, err := New(Options{Hub: h})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		m                 uint8
		path, query, body string
	}{
		{1, "broadcast/chat:1", "", `{"type":"message","data":{"text":"hi"}}`},
		{1, "broadcast", "", `{"rooms":["a","b"],"data":1}`},
		{1, "publish", "", `[{"room":"a","data":1},{"room":"b","type":"x","data":null,"idempotency_key":"k"}]`},
		{1, "publish", "", `{"room":"a"}`},
		{0, "rooms", "prefix=chat&limit=5", ``},
		{0, "rooms/chat:1", "", ``},
		{0, "rooms/chat:1/history", "since=abc-1&limit=10", ``},
		{0, "rooms/chat:1/history", "limit=-1&since=%ff", ``},
		{0, "rooms/chat%3A1/presence", "counts_only=true", ``},
		{0, "stats", "x=1", ``},
		{1, "users/u1/send", "", `{"type":"notice","data":{}}`},
		{1, "users/u1/disconnect", "", `{"code":4006,"reason":"bye"}`},
		{1, "users/u1/ban", "", `{"duration_ms":1000}`},
		{1, "users/%00/ban", "", `{"duration_ms":-5}`},
		{1, "connections/c1/send", "", `{"type":"notice","data":[1,2]}`},
		{1, "connections/c1/disconnect", "", `{"code":99999}`},
		{1, "broadcast/chat:1", "", `{"type":"message","data":` + string(bytes.Repeat([]byte("["), 40)) + `}`},
		{2, "rooms/a", "", ``},
		{1, "publish", "", `not json`},
	} {
		f.Add(s.m, s.path, s.query, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, m uint8, path, query string, body []byte) {
		u, err := url.ParseRequestURI("/api/" + path)
		if err != nil {
			return
		}
		u.RawQuery = query
		r, err := http.NewRequest(fuzzMethods[int(m)%len(fuzzMethods)], u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = "127.0.0.1:8080"
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", r.Method, u, w.Code, w.Body)
		}
		if r.Method == http.MethodHead || w.Code == http.StatusNoContent {
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q (status %d, body %q)", r.Method, u, ct, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s: answer is not JSON: %q", r.Method, u, w.Body)
		}
		if w.Code >= 400 {
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s: %d without an error object: %s", r.Method, u, w.Code, w.Body)
			}
		}
	})
}
