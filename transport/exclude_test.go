package transport_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// TestPublishExcludeSelf: a publish with exclude_self reaches every other
// member and not the sender, which still gets its ack; the next plain
// publish reaches the sender again. exclude_self of the wrong type is a
// bad_request error and the connection stays.
func TestPublishExcludeSelf(t *testing.T) {
	t.Parallel()
	n := wstest.Start(t, server.Config{Hub: hub.Options{NoJoinLeave: true}})
	var cs []*wstest.Conn
	for range 3 {
		c := n.MustDial(t, "", nil)
		c.Expect("connection_established")
		c.Send(map[string]string{"type": "subscribe", "id": "s", "room": "chat:quiet"})
		c.Expect("subscribed")
		cs = append(cs, c)
	}
	sender := cs[0]
	sender.Send(map[string]any{"type": "typing", "id": "t1", "room": "chat:quiet", "data": map[string]int{"n": 1}, "exclude_self": true})
	ack := sender.Expect("ack")
	var a struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(ack.Data, &a); err != nil || ack.ID != "t1" || a.EventID == "" {
		t.Fatalf("ack %s", ack.Raw)
	}
	sender.Send(map[string]any{"type": "typing", "id": "t2", "room": "chat:quiet", "data": map[string]int{"n": 2}})
	// The sender's next room event is the second one: the first never came.
	if m := sender.Expect("typing"); string(m.Data) != `{"n":2}` {
		t.Fatalf("the sender got %s, want only its second event", m.Raw)
	}
	sender.Expect("ack")
	for i, c := range cs[1:] {
		first, second := c.Expect("typing"), c.Expect("typing")
		if first.ID != a.EventID || string(first.Data) != `{"n":1}` || string(second.Data) != `{"n":2}` {
			t.Errorf("member %d got %s then %s", i+1, first.Raw, second.Raw)
		}
	}

	sender.Send(map[string]any{"type": "typing", "id": "t3", "room": "chat:quiet", "exclude_self": "yes"})
	e := sender.Expect("error")
	if wstest.ErrorCode(e) != "bad_request" || e.ID != "t3" {
		t.Fatalf("exclude_self \"yes\": %s, want bad_request for t3", e.Raw)
	}
	sender.Send(map[string]string{"type": "ping", "id": "still"})
	sender.Expect("pong")
}
