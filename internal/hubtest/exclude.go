package hubtest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
)

// RunExcludeAcrossNodes checks that leaving the sender out of one publish
// holds across nodes: the engine must carry Publication.ExcludeSender and
// ClientID to the other node, where a second connection of the sender sits
// beside another member. A socket publish with exclude_self skips only the
// sending connection; an API publish with ExcludeConnection skips the
// named connection on whichever node it is.
func RunExcludeAcrossNodes(t *testing.T, newEngine func(t *testing.T) engine.Engine) {
	a, b := newHub(t, newEngine), newHub(t, newEngine)
	sx, sx2, sy := &sink{}, &sink{}, &sink{}
	x := a.Connect(sx, hub.ConnectOptions{UserID: "xavier"})
	defer x.Gone()
	x2 := b.Connect(sx2, hub.ConnectOptions{UserID: "xavier"}) // the sender's other tab, on the other node
	defer x2.Gone()
	y := b.Connect(sy, hub.ConnectOptions{UserID: "yvonne"})
	defer y.Gone()
	for _, c := range []struct {
		c *hub.Client
		s *sink
	}{{x, sx}, {x2, sx2}, {y, sy}} {
		c.c.HandleMessage([]byte(`{"type":"subscribe","id":"s1","room":"chat:ex"}`))
		waitFor(t, 5*time.Second, "subscribed", func() bool { return len(c.s.ofType("subscribed")) == 1 })
	}

	x.HandleMessage([]byte(`{"type":"note","room":"chat:ex","id":"n1","data":{"n":1},"exclude_self":true}`))
	waitFor(t, 5*time.Second, "x's ack", func() bool { return len(sx.ofType("ack")) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.Publish(ctx, "chat:ex", "note", json.RawMessage(`{"n":2}`), hub.PublishOptions{ExcludeConnection: y.ID()})
	mustNoErr(t, err, "publish excluding y")
	_, err = a.Publish(ctx, "chat:ex", "note", json.RawMessage(`{"n":3}`), hub.PublishOptions{})
	mustNoErr(t, err, "plain publish")

	// The plain event is the last of one room's ordered stream: when it is
	// there, any event that was going to arrive before it has.
	for _, s := range []*sink{sx, sx2, sy} {
		waitFor(t, 5*time.Second, "the plain event", func() bool {
			n := s.ofType("note")
			return len(n) > 0 && string(n[len(n)-1].Data) == `{"n":3}`
		})
	}
	got := func(s *sink) string {
		out := ""
		for _, e := range s.ofType("note") {
			out += string(e.Data)
		}
		return out
	}
	for _, tt := range []struct {
		who  string
		s    *sink
		want string
	}{
		{"the sender", sx, `{"n":2}{"n":3}`},
		{"the sender's other connection", sx2, `{"n":1}{"n":2}{"n":3}`},
		{"the excluded connection", sy, `{"n":1}{"n":3}`},
	} {
		if g := got(tt.s); g != tt.want {
			t.Errorf("%s got %s, want %s", tt.who, g, tt.want)
		}
	}
}
