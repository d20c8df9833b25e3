package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

func connIDOf(m wstest.Msg) string {
	var d struct {
		ConnectionID string `json:"connection_id"`
	}
	_ = json.Unmarshal(m.Data, &d)
	return d.ConnectionID
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	status, _, b := httpCall(t, http.MethodPost, url, body, "")
	return status, b
}

// TestPublishExcludeConnection: a backend relaying a client's message names
// the client in exclude_connection (the seeds' exclude=websocket); the rest
// of the room gets the event, the named connection does not, and a later
// event reaches everyone again. The batch publish takes the same field.
func TestPublishExcludeConnection(t *testing.T) {
	n := wstest.Start(t, server.Config{Hub: hub.Options{NoJoinLeave: true}})
	var conns []*wstest.Conn
	var ids []string
	for range 3 {
		c := n.MustDial(t, "", nil)
		ids = append(ids, connIDOf(c.Expect("connection_established")))
		c.Send(map[string]string{"type": "subscribe", "id": "s", "room": "chat:relay"})
		c.Expect("subscribed")
		conns = append(conns, c)
	}
	api := "http://" + n.Addr + "/api"
	status, body := postJSON(t, api+"/broadcast/chat:relay", `{"type":"chat","data":{"n":1},"exclude_connection":"`+ids[0]+`"}`)
	if status != http.StatusOK || !strings.Contains(body, `"recipients":3`) {
		t.Fatalf("publish: %d %s", status, body)
	}
	status, body = postJSON(t, api+"/publish", `{"events":[{"room":"chat:relay","type":"chat","data":{"n":2},"exclude_connection":"`+ids[1]+`"},{"room":"chat:relay","type":"chat","data":{"n":3}}]}`)
	if status != http.StatusOK || !strings.Contains(body, `"failed":0`) {
		t.Fatalf("batch: %d %s", status, body)
	}
	want := [][]string{{`{"n":2}`, `{"n":3}`}, {`{"n":1}`, `{"n":3}`}, {`{"n":1}`, `{"n":2}`, `{"n":3}`}}
	for i, c := range conns {
		var got []string
		for len(got) < len(want[i]) {
			got = append(got, string(c.Expect("chat").Data))
		}
		if strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("connection %d got %v, want %v", i, got, want[i])
		}
	}

	for _, bad := range []string{
		`{"type":"chat","exclude_connection":"` + strings.Repeat("x", 65) + `"}`,
		`{"type":"chat","exclude_connection":7}`,
	} {
		status, body := postJSON(t, api+"/broadcast/chat:relay", bad)
		if status != http.StatusBadRequest || !strings.Contains(body, `"bad_request"`) || !strings.Contains(body, "exclude_connection") {
			t.Errorf("%s: %d %s, want 400 bad_request naming exclude_connection", bad, status, body)
		}
	}
}
