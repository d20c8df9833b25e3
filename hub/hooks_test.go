package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	h := newHub(t, Options{Hooks: Hooks{
		OnConnect:    func(c ConnectionInfo) { record("connect " + c.UserID) },
		OnDisconnect: func(c ConnectionInfo) { record("disconnect " + c.UserID) },
		OnSubscribe: func(ctx context.Context, c ConnectionInfo, room string) error {
			switch room {
			case "vip:1":
				return errors.New("members only")
			case "closed:1":
				return protocol.Errorf(protocol.ErrRoomNotFound, "", "no such room")
			}
			record("subscribe " + room)
			return nil
		},
		OnPublish: func(ctx context.Context, c ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error) {
			switch string(data) {
			case `"spam"`:
				return nil, errors.New("no spam")
			case `"bad"`:
				return json.RawMessage(`{`), nil
			case `"shout"`:
				return json.RawMessage(`"SHOUT"`), nil
			}
			return nil, nil
		},
	}})
	c, s := connect(t, h, "ann")
	subscribe(t, c, s, "chat:1")

	send(c, `{"type":"subscribe","id":"v","room":"vip:1"}`)
	send(c, `{"type":"subscribe","id":"x","room":"closed:1"}`)
	send(c, `{"type":"message","id":"p1","room":"chat:1","data":"spam"}`)
	send(c, `{"type":"message","id":"p2","room":"chat:1","data":"bad"}`)
	send(c, `{"type":"message","id":"p3","room":"chat:1","data":"shout"}`)
	send(c, `{"type":"message","id":"p4","room":"chat:1","data":"plain"}`)

	errs := errorsOf(t, s)
	want := map[string]string{"v": protocol.ErrForbidden, "x": protocol.ErrRoomNotFound, "p1": protocol.ErrForbidden, "p2": protocol.ErrInternal}
	got := map[string]string{}
	for _, e := range errs {
		got[e.Ref] = e.Code
	}
	for ref, code := range want {
		if got[ref] != code {
			t.Errorf("request %s: error %q, want %q (all: %v)", ref, got[ref], code, got)
		}
	}
	var datas []string
	for _, m := range s.ofType(t, "message") {
		datas = append(datas, string(m.Data))
	}
	if len(datas) != 2 || datas[0] != `"SHOUT"` || datas[1] != `"plain"` {
		t.Errorf("delivered data = %v, want the hook's replacement then the original", datas)
	}
	if h.RoomSize("vip:1") != 0 {
		t.Error("refused subscribe joined the room")
	}
	c.Gone()
	c.Gone()
	mu.Lock()
	defer mu.Unlock()
	wantEvents := []string{"connect ann", "subscribe chat:1", "disconnect ann"}
	if len(events) != len(wantEvents) {
		t.Fatalf("hook calls = %v, want %v", events, wantEvents)
	}
	for i := range wantEvents {
		if events[i] != wantEvents[i] {
			t.Errorf("hook call %d = %q, want %q", i, events[i], wantEvents[i])
		}
	}
}

// TestWatchHooks: joins, leaves, occupancy and publications reach the
// watching hooks in the order they happened, once each; two hubs on one
// engine (two nodes) see one occupied and one vacated per period.
func TestWatchHooks(t *testing.T) {
	eng := memory.New(memory.Options{})
	var mu sync.Mutex
	var events []string
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	hooks := func(node string) Hooks {
		return Hooks{
			OnJoin:         func(room string, c ConnectionInfo) { record(node + " join " + room + " " + c.UserID) },
			OnLeave:        func(room string, c ConnectionInfo) { record(node + " leave " + room + " " + c.UserID) },
			OnRoomOccupied: func(room string, gen uint64) { record(fmt.Sprintf("%s occupied %s %d", node, room, gen)) },
			OnRoomVacated:  func(room string, gen uint64) { record(fmt.Sprintf("%s vacated %s %d", node, room, gen)) },
			OnPublished: func(p PublishedEvent) {
				record(node + " published " + p.Room + " " + p.EventID + " " + string(p.Data) + " by " + p.UserID)
			},
			OnDisconnect: func(c ConnectionInfo) {
				record(fmt.Sprintf("%s gone %s %d %s", node, c.UserID, c.CloseCode, c.CloseReason))
			},
		}
	}
	h1 := newHub(t, Options{Engine: eng, NodeID: "n1", Hooks: hooks("n1")})
	h2 := newHub(t, Options{Engine: eng, NodeID: "n2", Hooks: hooks("n2")})
	a, as := connect(t, h1, "ann")
	b, bs := connect(t, h2, "bob")
	subscribe(t, a, as, "chat:1")
	subscribe(t, b, bs, "chat:1")
	send(a, `{"type":"message","id":"m1","room":"chat:1","data":{"n":1}}`)
	send(a, `{"type":"message","id":"m1","room":"chat:1","data":{"n":1}}`) // a retry: no second event
	if _, err := h2.Publish(context.Background(), "chat:1", "", json.RawMessage(`"api"`), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	send(a, `{"type":"unsubscribe","id":"u","room":"chat:1"}`)
	b.GoneWith(protocol.CloseGoingAway, "tab closed")
	subscribe(t, a, as, "chat:1")
	a.Gone()
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"n1 occupied chat:1 1", "n1 join chat:1 ann", "n2 join chat:1 bob",
		`n1 published chat:1 ` + eventID(t, h1, "chat:1", 1) + ` {"n":1} by ann`,
		`n2 published chat:1 ` + eventID(t, h1, "chat:1", 2) + ` "api" by `,
		"n1 leave chat:1 ann", "n2 leave chat:1 bob", "n2 vacated chat:1 1", "n2 gone bob 1001 tab closed",
		"n1 occupied chat:1 2", "n1 join chat:1 ann", "n1 leave chat:1 ann", "n1 vacated chat:1 2", "n1 gone ann 0 ",
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("hook calls:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
}

// eventID returns the id of room's event at offset off.
func eventID(t *testing.T, h *Hub, room string, off uint64) string {
	t.Helper()
	res, err := h.Engine().History(context.Background(), room, engine.HistoryQuery{}, engine.HistoryPolicy{Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Latest
	p.Offset = off
	return p.EventID()
}
