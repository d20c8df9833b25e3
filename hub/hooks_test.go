package hub

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

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
