package rpcproxy_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

type rpcResp struct {
	JSONRPC string             `json:"jsonrpc"`
	ID      json.RawMessage    `json:"id"`
	Result  json.RawMessage    `json:"result"`
	Error   *protocol.RPCError `json:"error"`
}

// call sends an rpc envelope and returns the JSON-RPC response in its data.
func call(t *testing.T, c *wstest.Conn, id, method string, params any) rpcResp {
	t.Helper()
	c.Send(map[string]any{"type": "rpc", "id": id, "data": map[string]any{"method": method, "params": params}})
	m := c.Expect("rpc_result")
	if m.ID != id {
		t.Fatalf("rpc_result id %q, want %q", m.ID, id)
	}
	var r rpcResp
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func backend(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "http://" + ln.Addr().String() + "/rpc"
}

func TestRPC(t *testing.T) {
	url := backend(t, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserID string `json:"user_id"`
			Method string `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		switch req.Method {
		case "getMatches":
			w.Write([]byte(`{"result":{"user":"` + req.UserID + `","matches":[1,2]}}`))
		case "refuse":
			w.Write([]byte(`{"error":{"code":4,"message":"no such match"}}`))
		case "crash":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "garbage":
			w.Write([]byte(`<html>`))
		case "slowBackend":
			time.Sleep(2 * time.Second)
		}
	})
	n := wstest.Start(t, server.Config{RPCProxyURL: url, Hub: hub.Options{RPCTimeout: 500 * time.Millisecond}})
	n.Srv.Hub.HandleRPC("add", func(ctx context.Context, c hub.RPCCall) (json.RawMessage, error) {
		var p [2]int
		if err := json.Unmarshal(c.Params, &p); err != nil {
			return nil, &protocol.RPCError{Code: protocol.RPCInvalidParams, Message: "want [a, b]"}
		}
		return json.Marshal(p[0] + p[1])
	})
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	n.Srv.Hub.HandleRPC("hang", func(ctx context.Context, c hub.RPCCall) (json.RawMessage, error) {
		<-block // ignores ctx on purpose: the hub must still answer
		return nil, nil
	})
	c := n.MustDial(t, "", nil)
	user := wstest.UserOf(c.Expect("connection_established"))

	if r := call(t, c, "1", "add", []int{2, 3}); r.Error != nil || string(r.Result) != "5" || string(r.ID) != `"1"` || r.JSONRPC != "2.0" {
		t.Errorf("add: %+v %s", r, r.Result)
	}
	if r := call(t, c, "2", "add", "x"); r.Error == nil || r.Error.Code != protocol.RPCInvalidParams {
		t.Errorf("bad params: %+v", r)
	}
	if r := call(t, c, "3", "getMatches", map[string]string{"status": "live"}); r.Error != nil || !strings.Contains(string(r.Result), `"user":"`+user+`"`) {
		t.Errorf("proxied call: %+v %s", r.Error, r.Result)
	}
	if r := call(t, c, "4", "refuse", nil); r.Error == nil || r.Error.Code != 4 || r.Error.Message != "no such match" {
		t.Errorf("backend error passed through: %+v", r.Error)
	}
	for _, m := range []string{"crash", "garbage"} {
		if r := call(t, c, m, m, nil); r.Error == nil || r.Error.Code != protocol.RPCBackendFailure {
			t.Errorf("%s: %+v", m, r.Error)
		}
	}
	if r := call(t, c, "5", "slowBackend", nil); r.Error == nil || r.Error.Code != protocol.RPCTimeout {
		t.Errorf("slow backend: %+v", r.Error)
	}
	if r := call(t, c, "6", "hang", nil); r.Error == nil || r.Error.Code != protocol.RPCTimeout {
		t.Errorf("handler ignoring its context: %+v", r.Error)
	}
	// The connection stays usable after all of that.
	c.Send(map[string]any{"type": "ping", "id": "p"})
	c.Expect("pong")

	// Raw JSON-RPC frames, as the seeds' WebSocketRPC class sends them.
	c.WS.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":7,"method":"add","params":[40,2]}`))
	m, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	var raw rpcResp
	json.Unmarshal(m.Raw, &raw)
	if raw.JSONRPC != "2.0" || string(raw.ID) != "7" || string(raw.Result) != "42" {
		t.Errorf("raw JSON-RPC answer: %s", m.Raw)
	}
	// A raw notification (no id) gets no answer; the next answer is the ping's.
	c.WS.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","method":"add","params":[1,1]}`))
	c.Send(map[string]any{"type": "ping", "id": "after-notification"})
	if m := c.Expect("pong"); m.ID != "after-notification" {
		t.Errorf("pong id %q", m.ID)
	}
	if r := call(t, c, "8", "", nil); r.Error == nil || r.Error.Code != protocol.RPCInvalidRequest {
		t.Errorf("no method: %+v", r.Error)
	}
	if st := n.Srv.Hub.Stats(); st.RPCCalls["ok"] < 2 || st.RPCCalls["timeout"] < 2 || st.RPCCalls["backend_failure"] < 2 {
		t.Errorf("rpc counters = %v", st.RPCCalls)
	}
}

func TestRPCWithoutProxy(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	if r := call(t, c, "1", "getMatches", nil); r.Error == nil || r.Error.Code != protocol.RPCMethodNotFound {
		t.Errorf("unknown method: %+v", r.Error)
	}
	// Built-in methods.
	c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:rpc"})
	c.Expect("subscribed")
	c.Send(map[string]any{"type": "message", "id": "m", "room": "chat:rpc", "data": "hello"})
	c.Expect("message")
	c.Expect("ack")
	r := call(t, c, "2", "presence", map[string]any{"room": "chat:rpc"})
	if r.Error != nil || !strings.Contains(string(r.Result), `"clients":1`) {
		t.Errorf("presence: %+v %s", r.Error, r.Result)
	}
	r = call(t, c, "3", "history", map[string]any{"room": "chat:rpc"})
	if r.Error != nil || !strings.Contains(string(r.Result), `"data":"hello"`) {
		t.Errorf("history: %+v %s", r.Error, r.Result)
	}
	if r := call(t, c, "4", "history", map[string]any{}); r.Error == nil || r.Error.Code != protocol.RPCInvalidParams {
		t.Errorf("history without room: %+v", r.Error)
	}
}

func TestRPCInFlightLimit(t *testing.T) {
	n := wstest.Start(t, server.Config{Hub: hub.Options{RPCTimeout: 5 * time.Second}})
	release := make(chan struct{})
	n.Srv.Hub.HandleRPC("wait", func(ctx context.Context, c hub.RPCCall) (json.RawMessage, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return json.RawMessage(`true`), nil
	})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	for i := 0; i < hub.DefaultMaxRPCInFlight+1; i++ {
		c.Send(map[string]any{"type": "rpc", "id": "w" + string(rune('a'+i)), "data": map[string]any{"method": "wait"}})
	}
	m := c.Expect("rpc_result") // the one over the limit is refused at once
	var r rpcResp
	json.Unmarshal(m.Data, &r)
	if r.Error == nil || r.Error.Code != protocol.RPCTooMany {
		t.Fatalf("over the in-flight limit: %s", m.Raw)
	}
	close(release)
	for i := 0; i < hub.DefaultMaxRPCInFlight; i++ {
		m := c.Expect("rpc_result")
		var r rpcResp
		json.Unmarshal(m.Data, &r)
		if r.Error != nil {
			t.Errorf("released call: %+v", r.Error)
		}
	}
}

// Every answer to a raw JSON-RPC frame, or to a frame that only looks like
// one, is exactly one JSON object; notifications get none.
func TestRawJSONRPCIDShapes(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	cases := []struct {
		name, frame string
		want        string // "" for no answer; "error:CODE" for an error envelope; else the raw id, then the JSON-RPC error code or "ok"
		code        int
	}{
		{"envelope type jsonrpc, string id", `{"type":"jsonrpc","id":"j1"}`, "error:bad_request", 0},
		{"envelope type jsonrpc, no id", `{"type":"jsonrpc","data":{"method":"presence"}}`, "error:bad_request", 0},
		{"type jsonrpc on a JSON-RPC request", `{"type":"jsonrpc","jsonrpc":"2.0","id":"j2","method":"nope"}`, `"j2"`, protocol.RPCMethodNotFound},
		{"string id", `{"jsonrpc":"2.0","id":"s1","method":"presence","params":{"room":"chat:rpc"}}`, `"s1"`, 0},
		{"escaped string id", `{"jsonrpc":"2.0","id":"a\"b\u00e9","method":"nope"}`, `"a\"b\u00e9"`, protocol.RPCMethodNotFound},
		{"integer id", `{"jsonrpc":"2.0","id":7,"method":"presence","params":{"room":"chat:rpc"}}`, `7`, 0},
		{"negative fractional id", `{"jsonrpc":"2.0","id":-1.5e3,"method":"nope"}`, `-1.5e3`, protocol.RPCMethodNotFound},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"nope"}`, `null`, protocol.RPCMethodNotFound},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"presence"}`, `null`, protocol.RPCInvalidRequest},
		{"array id", `{"jsonrpc":"2.0","id":[1],"method":"presence"}`, `null`, protocol.RPCInvalidRequest},
		{"boolean id", `{"jsonrpc":"2.0","id":true,"method":"presence"}`, `null`, protocol.RPCInvalidRequest},
		{"bad params", `{"jsonrpc":"2.0","id":"p","method":"presence","params":"x"}`, `"p"`, protocol.RPCInvalidParams},
		{"no method", `{"jsonrpc":"2.0","id":"m"}`, `"m"`, protocol.RPCInvalidRequest},
		{"notification", `{"jsonrpc":"2.0","method":"presence","params":{"room":"chat:rpc"}}`, "", 0},
		{"notification, bad params", `{"jsonrpc":"2.0","method":"presence","params":"x"}`, "", 0},
		{"notification, unknown method", `{"jsonrpc":"2.0","method":"nope"}`, "", 0},
		{"wrong version", `{"jsonrpc":"1.0","id":"v","method":"presence"}`, "error:bad_request", 0},
	}
	for i, tc := range cases {
		if err := c.WS.WriteMessage(websocket.TextMessage, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		// Calls run on their own goroutines, so an answer may come after
		// the pong of a later ping: read until the answer (if one is
		// due) and two pings' pongs, counting everything else.
		var answers []wstest.Msg
		for round := 0; round < 2; round++ {
			pingID := "after-" + strconv.Itoa(i) + "-" + strconv.Itoa(round)
			c.Send(map[string]any{"type": "ping", "id": pingID})
			ponged := false
			for k := 0; k < 10 && (!ponged || (tc.want != "" && len(answers) == 0)); k++ {
				m, err := c.Next() // fails the test on a frame that is not JSON
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if m.Type == "pong" && m.ID == pingID {
					ponged = true
					continue
				}
				answers = append(answers, m)
			}
		}
		if tc.want == "" {
			if len(answers) != 0 {
				t.Errorf("%s: notification answered with %d frames: %s", tc.name, len(answers), answers[0].Raw)
			}
			continue
		}
		if len(answers) != 1 {
			t.Errorf("%s: %d answers, want exactly one", tc.name, len(answers))
			continue
		}
		a := answers[0]
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(a.Raw, &obj); err != nil {
			t.Errorf("%s: answer is not one JSON object: %q", tc.name, a.Raw)
			continue
		}
		if code, ok := strings.CutPrefix(tc.want, "error:"); ok {
			if a.Type != "error" || wstest.ErrorCode(a) != code {
				t.Errorf("%s: got %s, want error %s", tc.name, a.Raw, code)
			}
			continue
		}
		var r rpcResp
		if err := json.Unmarshal(a.Raw, &r); err != nil || r.JSONRPC != "2.0" || obj["type"] != nil {
			t.Errorf("%s: not a raw JSON-RPC response: %s", tc.name, a.Raw)
			continue
		}
		if string(r.ID) != tc.want {
			t.Errorf("%s: id %s, want %s", tc.name, r.ID, tc.want)
		}
		switch {
		case tc.code == 0 && (r.Error != nil || r.Result == nil):
			t.Errorf("%s: want a result, got %s", tc.name, a.Raw)
		case tc.code != 0 && (r.Error == nil || r.Error.Code != tc.code):
			t.Errorf("%s: want error %d, got %s", tc.name, tc.code, a.Raw)
		}
	}
}
