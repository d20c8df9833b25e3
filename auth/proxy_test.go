package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestConnectProxy(t *testing.T) {
	var got ProxyRequest
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("proxy body: %v", err)
		}
		switch got.Cookies["sessionid"] {
		case "good":
			w.Write([]byte(`{"user_id":"42","rooms":["team:7"],"info":{"name":"Ann"},"expires_at":` + jsonInt(time.Now().Add(time.Hour).Unix()) + `}`))
		case "expired":
			w.Write([]byte(`{"user_id":"42","expires_at":1}`))
		case "nouser":
			w.Write([]byte(`{"rooms":[]}`))
		case "garbage":
			w.Write([]byte(`<html>`))
		case "slow":
			time.Sleep(300 * time.Millisecond)
			w.Write([]byte(`{"user_id":"42"}`))
		default:
			http.Error(w, "no session", http.StatusForbidden)
		}
	}))
	defer backend.Close()
	p := &ConnectProxy{URL: backend.URL, Timeout: 100 * time.Millisecond}
	req := func(cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.Header.Set("Cookie", "sessionid="+cookie)
		r.Header.Set("User-Agent", "test-agent")
		r.Header.Set("X-Secret-Internal", "not forwarded")
		return r
	}
	creds, err := p.AuthenticateRequest(context.Background(), req("good"))
	if err != nil {
		t.Fatalf("good session refused: %v", err)
	}
	if creds.UserID != "42" || creds.Rooms[0] != "team:7" || string(creds.Info) != `{"name":"Ann"}` || creds.ExpiresAt.IsZero() {
		t.Errorf("credentials = %+v", creds)
	}
	if got.Headers["User-Agent"] != "test-agent" || got.Headers["X-Secret-Internal"] != "" {
		t.Errorf("forwarded headers = %v", got.Headers)
	}
	for _, c := range []string{"none", "expired", "nouser", "garbage", "slow"} {
		if creds, err := p.AuthenticateRequest(context.Background(), req(c)); err == nil {
			t.Errorf("%s: let in as %+v", c, creds)
		}
	}
	down := &ConnectProxy{URL: "http://127.0.0.1:1/auth", Timeout: 200 * time.Millisecond}
	if _, err := down.AuthenticateRequest(context.Background(), req("good")); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable backend: got %v", err)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }
