package rpcproxy_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/rpcproxy"
	"github.com/switchboard-rt/switchboard/server"
)

// proxyBackend answers by room name, so each case is one room.
func proxyBackend(t *testing.T, calls *atomic.Int64) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req rpcproxy.PublishRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ConnectionID == "" || req.UserID == "" {
			http.Error(w, "bad request from switchboard", http.StatusBadRequest)
			return
		}
		switch strings.TrimPrefix(req.Room, "p") { // publish rooms mirror the subscribe ones
		case "ok:1":
			w.Write([]byte(`{}`))
		case "ok:data":
			if req.Type == "" && string(req.Data) == `{"invite":"abc"}` {
				w.Write([]byte(`{"result":{"data":{"role":"captain"}}}`))
				return
			}
			w.Write([]byte(`{"error":{"code":"bad_invite","reason":"no invite"}}`))
		case "ok:rewrite":
			if req.Type == "message" && string(req.Data) == `{"text":"darn"}` {
				w.Write([]byte(`{"result":{"data":{"text":"****"}}}`))
				return
			}
			w.Write([]byte(`{"result":{}}`))
		case "team:7":
			w.Write([]byte(`{"error":{"code":"not_member","reason":"join team 7 first"}}`))
		case "odd:1":
			w.Write([]byte(`{"error":{"code":"Not A Code!","reason":"odd"}}`))
		case "bare:1":
			w.Write([]byte(`{"error":{}}`))
		case "crash:1":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "redirect:1":
			w.WriteHeader(http.StatusNoContent)
		case "html:1":
			w.Write([]byte(`<html>oops</html>`))
		case "shape:1":
			w.Write([]byte(`{"result":5}`))
		case "array:1":
			w.Write([]byte(`[{}]`))
		case "slow:1":
			time.Sleep(1500 * time.Millisecond)
			w.Write([]byte(`{}`))
		default:
			http.Error(w, "unexpected room "+req.Room, http.StatusBadRequest)
		}
	})
}

// deadURL is a URL nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/gone"
}

func TestSubscribeAndPublishProxies(t *testing.T) {
	var calls atomic.Int64
	url := proxyBackend(t, &calls)
	n := wstest.Start(t, server.Config{
		SubscribeProxyURL: url, PublishProxyURL: url, ProxyTimeout: 500 * time.Millisecond,
		NamespaceProxies: map[string]server.NamespaceProxy{
			"free":  {Subscribe: "off", Publish: "off"},
			"down":  {Subscribe: deadURL(t)},
			"pdown": {Publish: deadURL(t)},
		},
	})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")

	// request sends env and returns its answer: ok (the type of success)
	// or error.
	request := func(env map[string]any, ok string) wstest.Msg {
		c.Send(env)
		for {
			m, err := c.Next()
			if err != nil {
				t.Fatalf("%v: %v", env, err)
			}
			if m.ID == env["id"] && (m.Type == ok || m.Type == "error") {
				return m
			}
		}
	}
	subscribe := func(id, room string) wstest.Msg {
		return request(map[string]any{"type": "subscribe", "id": id, "room": room}, "subscribed")
	}
	// The documented client-side answer for each kind of backend answer.
	for _, tc := range []struct{ room, typ, code, msg string }{
		{"ok:1", "subscribed", "", ""},
		{"free:1", "subscribed", "", ""}, // proxy off in this namespace
		{"team:7", "error", "not_member", "join team 7 first"},
		{"odd:1", "error", "forbidden", "odd"},
		{"bare:1", "error", "forbidden", "subscribe refused by the application"},
		{"crash:1", "error", "unavailable", "status 500"},
		{"redirect:1", "error", "unavailable", "status 204"},
		{"html:1", "error", "unavailable", "not a JSON object"},
		{"shape:1", "error", "unavailable", "not a JSON object"},
		{"array:1", "error", "unavailable", "not a JSON object"},
		{"slow:1", "error", "unavailable", "did not answer in time"},
		{"down:1", "error", "unavailable", "unreachable"},
	} {
		m := subscribe("s-"+tc.room, tc.room)
		if m.Type != tc.typ {
			t.Errorf("subscribe %s: got %s, want %s", tc.room, m.Raw, tc.typ)
			continue
		}
		if tc.typ == "error" {
			var e struct{ Code, Message string }
			json.Unmarshal(m.Data, &e)
			if e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("subscribe %s: error %s %q, want %s containing %q", tc.room, e.Code, e.Message, tc.code, tc.msg)
			}
			if n.Srv.Hub.RoomSize(tc.room) != 0 {
				t.Errorf("refused subscribe to %s joined the room", tc.room)
			}
		}
	}
	if got := calls.Load(); got != 10 { // every subscribe but free:1's and down:1's
		t.Errorf("backend calls = %d, want 10", got)
	}
	// The backend sees the subscribe's data and answers data of its own.
	c.Send(map[string]any{"type": "subscribe", "id": "d1", "room": "ok:data", "data": map[string]string{"invite": "abc"}})
	if m := c.Expect("subscribed"); !strings.Contains(string(m.Data), `"data":{"role":"captain"}`) {
		t.Errorf("subscribed with the backend's data: %s", m.Raw)
	}

	// Publishes: a second connection watches what is delivered.
	w := n.MustDial(t, "", nil)
	w.Expect("connection_established")
	// The backend allows subscribing to pok:rewrite (ok:rewrite without
	// a type); publishing needs no subscription.
	w.Send(map[string]any{"type": "subscribe", "id": "w", "room": "pok:rewrite"})
	if m := w.Expect("subscribed"); m.ID != "w" {
		t.Fatalf("watcher subscribe: %s", m.Raw)
	}
	publish := func(id, room, data string) wstest.Msg {
		return request(map[string]any{"type": "message", "id": id, "room": room, "data": json.RawMessage(data)}, "ack")
	}
	if m := publish("p1", "pok:rewrite", `{"text":"darn"}`); m.Type != "ack" {
		t.Errorf("rewritten publish: %s", m.Raw)
	}
	if m := publish("p2", "pok:rewrite", `{"text":"fine"}`); m.Type != "ack" {
		t.Errorf("allowed publish: %s", m.Raw)
	}
	if m := publish("p3", "pteam:7", `{"text":"hi"}`); m.Type != "error" || wstest.ErrorCode(m) != "not_member" {
		t.Errorf("refused publish: %s", m.Raw)
	}
	if m := publish("p4", "pdown:1", `{"text":"hi"}`); m.Type != "error" || wstest.ErrorCode(m) != "unavailable" {
		t.Errorf("publish with the proxy down: %s", m.Raw)
	}
	var got []string
	for len(got) < 2 {
		m, err := w.Next()
		if err != nil {
			t.Fatalf("watcher: %v (got %v)", err, got)
		}
		if m.Type == "message" {
			got = append(got, m.Room+" "+string(m.Data))
		}
	}
	if got[0] != `pok:rewrite {"text":"****"}` || got[1] != `pok:rewrite {"text":"fine"}` {
		t.Errorf("delivered = %v, want the rewritten data then the original", got)
	}

	// Backend failures are not the client's fault: more of them than the
	// violation limit (10) leave the connection open.
	for i := range 12 {
		if m := subscribe("again"+string(rune('a'+i)), "crash:1"); wstest.ErrorCode(m) != "unavailable" {
			t.Fatalf("retry %d: %s", i, m.Raw)
		}
	}
	c.Send(map[string]any{"type": "ping", "id": "alive"})
	if m := c.Expect("pong"); m.ID != "alive" {
		t.Errorf("pong %s", m.Raw)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	for name, cfg := range map[string]server.Config{
		"subscribe URL": {SubscribeProxyURL: "ftp://x"},
		"publish URL":   {PublishProxyURL: "localhost:8000"},
		"namespace URL": {NamespaceProxies: map[string]server.NamespaceProxy{"chat": {Subscribe: "nope"}}},
		"rpc URL":       {RPCProxyURL: "/relative"},
	} {
		_, err := server.New(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "is not an http(s) URL") {
			t.Errorf("%s: %v, want a clear URL error", name, err)
		}
	}
}
