package transport_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// TestJoinNoticeRace: two connections subscribe to a room at once. The one
// that joins second must count the first exactly once: either in its
// `subscribed` members or through a user_joined notice, never both. (The
// hub once announced a join only after answering the joiner; it now
// announces under the room's lock.)
func TestJoinNoticeRace(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	late, trials := 0, 0
	for pair := range 5 {
		a, b := ts.dialWS(t), ts.dialWS(t)
		for i := range 120 {
			room := fmt.Sprintf("race:%d:%d", pair, i)
			a.send(fmt.Sprintf(`{"type":"subscribe","id":"a","room":%q}`, room))
			b.send(fmt.Sprintf(`{"type":"subscribe","id":"b","room":%q}`, room))
			trials++
			for _, c := range []*wsClient{a, b} {
				var sd protocol.SubscribedData
				subscribed := false
				c.drainUntilPong(func(e *protocol.Envelope) {
					switch e.Type {
					case protocol.TypeSubscribed:
						subscribed = true
						if err := json.Unmarshal(e.Data, &sd); err != nil {
							t.Fatal(err)
						}
					case protocol.TypeUserJoined:
						if subscribed && sd.Members == 2 {
							late++ // the other was already counted in members
						}
					}
				})
			}
		}
	}
	if late > 0 {
		t.Errorf("in %d of %d rooms, a member got the other's user_joined after a subscribed that already counted it", late, trials)
	}
}

// drainUntilPong sends a ping and passes every message before its pong to f.
func (c *wsClient) drainUntilPong(f func(*protocol.Envelope)) {
	c.t.Helper()
	c.send(`{"type":"ping","id":"drain"}`)
	for {
		e := c.next()
		if e.Type == protocol.TypePong && e.ID == "drain" {
			return
		}
		f(e)
	}
}
