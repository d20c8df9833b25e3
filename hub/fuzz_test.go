package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// fuzzAuth accepts the token "good" for user "u" and refuses the rest.
type fuzzAuth struct{}

func (fuzzAuth) Authenticate(ctx context.Context, token string) (*Credentials, error) {
	if token != "good" {
		return nil, errors.New("bad token")
	}
	return &Credentials{UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (fuzzAuth) VerifySubscription(ctx context.Context, token, room, userID string) error {
	if token != "sub:"+room {
		return errors.New("bad subscription token")
	}
	return nil
}

// fuzzRequestTypes are the requests whose data (and last_event_id) the hub
// parses for any peer that got past the handshake.
var fuzzRequestTypes = []string{"subscribe", "sync", "history", "presence", "rpc", "refresh", "auth", "unsubscribe", "message"}

// FuzzRequestData sends each request type with arbitrary data, room and
// last_event_id, on an anonymous and on an authenticated connection. The
// hub must not panic, must answer only with JSON objects, must answer a
// request that has an id with its answer type or an error naming it, and
// may close the connection only with a documented code.
func FuzzRequestData(f *testing.F) {
	h := newHub(f, Options{
		Auth:          AuthOptions{Authenticator: fuzzAuth{}, Subscriptions: fuzzAuth{}, AllowAnonymous: true, Timeout: time.Hour},
		RPCTimeout:    time.Second,
		EngineTimeout: time.Second,
		Namespaces:    map[string]Namespace{"private": {Private: true}},
	})
	for _, s := range []struct {
		kind               uint8
		room, lastID, data string
	}{
		{0, "chat:f", "", `{"token":"x"}`},
		{0, "private:1", "", `{"token":"sub:private:1"}`},
		{0, "chat:f", "abc-3", `null`},
		{0, "chat:f", "abc-x", `[]`},
		{1, "chat:f", "abc-18446744073709551615", ``},
		{2, "chat:f", "", `{"since":"abc-1","limit":5}`},
		{2, "chat:f", "", `{"since":"abc-1","limit":-1}`},
		{2, "chat:f", "", `{"since":7,"limit":"x"}`},
		{2, "chat:f", "", `{"limit":1e99}`},
		{3, "chat:f", "", `{"counts_only":true}`},
		{3, "chat:f", "", `{"counts_only":"yes"}`},
		{4, "", "", `{"method":"history","params":{"room":"chat:f","limit":2}}`},
		{4, "", "", `{"method":"presence","params":[1]}`},
		{4, "", "", `{"method":5}`},
		{4, "", "", `"rpc"`},
		{5, "", "", `{"token":"good"}`},
		{5, "", "", `{"token":""}`},
		{5, "", "", ``},
		{6, "", "", `{"token":"good"}`},
		{7, "chat:f", "", `{}`},
		{8, "chat:f", "", `{"text":"hi"}`},
		{8, ":bad:", "", `1`},
	} {
		f.Add(s.kind, s.room, s.lastID, []byte(s.data), false)
		f.Add(s.kind, s.room, s.lastID, []byte(s.data), true)
	}
	f.Fuzz(func(t *testing.T, kind uint8, room, lastID string, data []byte, authed bool) {
		typ := fuzzRequestTypes[int(kind)%len(fuzzRequestTypes)]
		env := map[string]any{"type": typ, "id": "f1"}
		if room != "" {
			env["room"] = room
		}
		if lastID != "" {
			env["last_event_id"] = lastID
		}
		if len(data) > 0 && json.Valid(data) {
			env["data"] = json.RawMessage(data)
		}
		frame, err := json.Marshal(env)
		if err != nil {
			return // invalid UTF-8 cannot be a text frame
		}
		s := &fakeSink{}
		info := ConnInfo{}
		if authed {
			info.Credentials = &Credentials{UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}
		}
		c := h.Connect(s, info)
		defer c.Gone()
		c.HandleMessage(frame)
		answer := map[string]string{"subscribe": "subscribed", "sync": "subscribed", "history": "history_result",
			"presence": "presence_result", "rpc": "rpc_result", "refresh": "refreshed", "unsubscribe": "unsubscribed", "message": "ack",
			"auth": "connection_established"}[typ]
		// RPC calls answer from their own goroutine.
		answered := check(t, frame, s, answer)
		for i := 0; i < 200 && typ == "rpc" && !answered; i++ {
			time.Sleep(5 * time.Millisecond)
			answered = check(t, frame, s, answer)
		}
		closes := s.closeList()
		// The auth frame of a connection that must authenticate is
		// answered by connection_established or refused with 4001.
		refused := typ == "auth" && !authed && len(closes) == 1 && closes[0].Code == protocol.CloseUnauthorized
		if !answered && !refused {
			t.Fatalf("%s: no %s or error naming the request; got %d frames: %s", frame, answer, len(s.frameList()), s.dump(t))
		}
		if len(closes) > 0 && !refused {
			t.Fatalf("%s: connection closed with %d %q", frame, closes[0].Code, closes[0].Reason)
		}
	})
}

// check fails t on an answer that is not a JSON object or an error that
// does not name the request, and reports whether the request's answer (or
// its error) is among what s got.
func check(t *testing.T, frame []byte, s *fakeSink, answer string) bool {
	t.Helper()
	answered := false
	for _, fr := range s.frameList() {
		b := fr.JSON
		if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
			t.Fatalf("%s: answered %q, not a JSON object", frame, b)
		}
		var m struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			Data struct {
				Ref string `json:"ref"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &m)
		switch {
		case m.Type == answer && m.ID == "f1":
			answered = true
		case m.Type == protocol.TypeError && m.ID == "f1" && m.Data.Ref == "f1":
			answered = true
		case m.Type == protocol.TypeError && m.ID == "f1":
			t.Fatalf("%s: error without data.ref: %s", frame, b)
		}
		if bytes.Contains(b, []byte(`"code":"internal"`)) {
			t.Fatalf("%s: internal error from the memory engine: %s", frame, b)
		}
	}
	return answered
}
