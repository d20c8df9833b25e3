package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

func TestConnectSendsConnectionEstablished(t *testing.T) {
	h := newHub(t, Options{NodeID: "node-a"})
	c, s := connect(t, h, "alice")
	ms := s.msgs(t)
	if len(ms) != 1 || ms[0].Type != protocol.TypeConnectionEstablished {
		t.Fatalf("first messages: %s", s.dump(t))
	}
	d := decodeData[ConnectionEstablished](t, ms[0])
	if d.UserID != "alice" || d.ConnectionID != c.ID() || d.Node != "node-a" ||
		d.ProtocolVersion != protocol.Version || d.HeartbeatInterval != 25000 || d.ServerTime <= 0 {
		t.Errorf("connection_established data = %+v", d)
	}
	if c.UserID() != "alice" || h.UserConnections("alice") != 1 || h.Stats().Connections != 1 {
		t.Errorf("registration: user %q, %d connections", c.UserID(), h.UserConnections("alice"))
	}

	anon, as := connect(t, h, "")
	d = decodeData[ConnectionEstablished](t, as.one(t, protocol.TypeConnectionEstablished))
	if !strings.HasPrefix(d.UserID, "anon-") || d.UserID != anon.UserID() {
		t.Errorf("anonymous user id %q (client says %q)", d.UserID, anon.UserID())
	}
	if anon.ID() == c.ID() {
		t.Error("two connections share an id")
	}
}

func TestPing(t *testing.T) {
	h := newHub(t, Options{})
	c, s := connect(t, h, "u")
	send(c, `{"type":"ping","id":"p1"}`)
	if p := s.one(t, protocol.TypePong); p.ID != "p1" {
		t.Errorf("pong id %q", p.ID)
	}
}

func TestSubscribeUnsubscribe(t *testing.T) {
	h := newHub(t, Options{})
	a, as := connect(t, h, "a")
	b, bs := connect(t, h, "b")

	send(a, `{"type":"subscribe","id":"s1","room":"chat:1"}`)
	sub := as.one(t, protocol.TypeSubscribed)
	if sub.ID != "s1" || sub.Room != "chat:1" {
		t.Errorf("subscribed = %+v", sub)
	}
	d := decodeData[SubscribedData](t, sub)
	p, ok := protocol.ParseEventID(d.Position)
	if d.Members != 1 || !ok || p.Offset != 0 || d.Recovered != nil || d.Replayed != 0 {
		t.Errorf("subscribed data = %+v", d)
	}
	if d := subscribe(t, b, bs, "chat:1"); d.Members != 2 || d.Position != sub2pos(t, sub) {
		t.Errorf("second member: %+v", d)
	}
	if h.RoomSize("chat:1") != 2 {
		t.Errorf("RoomSize = %d", h.RoomSize("chat:1"))
	}
	// Subscribing again is answered and changes nothing.
	if d := subscribe(t, a, as, "chat:1"); d.Members != 2 {
		t.Errorf("re-subscribe: %+v", d)
	}

	send(a, `{"type":"unsubscribe","id":"u1","room":"chat:1"}`)
	un := as.one(t, protocol.TypeUnsubscribed)
	if un.ID != "u1" || un.Room != "chat:1" {
		t.Errorf("unsubscribed = %+v", un)
	}
	if h.RoomSize("chat:1") != 1 {
		t.Errorf("RoomSize after unsubscribe = %d", h.RoomSize("chat:1"))
	}
	send(a, `{"type":"unsubscribe","id":"u2","room":"chat:1"}`)
	if errs := errorsOf(t, as); len(errs) != 1 || errs[0].Code != protocol.ErrNotSubscribed || errs[0].Ref != "u2" {
		t.Errorf("second unsubscribe: %+v", errs)
	}
	// A member that left gets no more events.
	as.reset()
	if _, err := h.Publish(context.Background(), "chat:1", "message", json.RawMessage(`{}`), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := as.count(t, "message"); n != 0 {
		t.Errorf("unsubscribed connection got %d events", n)
	}
	if n := bs.count(t, "message"); n != 1 {
		t.Errorf("member got %d events, want 1", n)
	}
}

func sub2pos(t *testing.T, m msg) string {
	t.Helper()
	return decodeData[SubscribedData](t, m).Position
}

func TestPublishFanoutSharesOneFrame(t *testing.T) {
	h := newHub(t, Options{NoJoinLeave: true})
	type conn struct {
		c *Client
		s *fakeSink
	}
	var members []conn
	for i := range 4 {
		c, s := connect(t, h, fmt.Sprintf("u%d", i))
		subscribe(t, c, s, "chat:1")
		members = append(members, conn{c, s})
	}
	outsider, os := connect(t, h, "x")
	subscribe(t, outsider, os, "chat:2")

	sender := members[0]
	send(sender.c, `{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi \"there\""}}`)

	var frame *protocol.Frame
	var eventID string
	for i, m := range members {
		ev := m.s.one(t, "message")
		if frame == nil {
			frame, eventID = ev.frame, ev.ID
		} else if ev.frame != frame {
			t.Errorf("member %d got its own *Frame: the event must be encoded once for all recipients", i)
		}
		if ev.Room != "chat:1" || ev.UserID != "u0" || string(ev.Data) != `{"text":"hi \"there\""}` || ev.TS <= 0 {
			t.Errorf("member %d event = %+v", i, ev)
		}
	}
	if p, ok := protocol.ParseEventID(eventID); !ok || p.Offset != 1 {
		t.Errorf("event id %q, want EPOCH-1", eventID)
	}
	ack := sender.s.one(t, protocol.TypeAck)
	ad := decodeData[AckData](t, ack)
	if ack.ID != "m1" || ack.Room != "chat:1" || ad.EventID != eventID || ad.Duplicate {
		t.Errorf("ack = %+v %+v, want event id %s", ack, ad, eventID)
	}
	if n := os.count(t, "message"); n != 0 {
		t.Errorf("connection in another room got %d events", n)
	}
	// A publish without id is not acknowledged.
	send(sender.c, `{"type":"typing","room":"chat:1"}`)
	if n := sender.s.count(t, protocol.TypeAck); n != 1 {
		t.Errorf("%d acks after an id-less publish, want still 1", n)
	}
	if n := members[1].s.count(t, "typing"); n != 1 {
		t.Errorf("custom event type delivered %d times", n)
	}
}

func TestPublishToRefusingSink(t *testing.T) {
	h := newHub(t, Options{NoJoinLeave: true})
	a, as := connect(t, h, "a")
	b, bs := connect(t, h, "b")
	subscribe(t, a, as, "r")
	subscribe(t, b, bs, "r")
	as.setRefuse(true)
	before := h.Stats().MessagesOut
	if _, err := h.Publish(context.Background(), "r", "message", nil, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if bs.count(t, "message") != 1 {
		t.Error("a refusing member stopped delivery to the others")
	}
	if got := h.Stats().MessagesOut - before; got != 1 {
		t.Errorf("MessagesOut grew by %d, want 1 (the refused frame is not counted)", got)
	}
}

func TestNoEcho(t *testing.T) {
	h := newHub(t, Options{NoEcho: true, NoJoinLeave: true})
	a, as := connect(t, h, "a")
	b, bs := connect(t, h, "b")
	subscribe(t, a, as, "r")
	subscribe(t, b, bs, "r")
	send(a, `{"type":"message","room":"r","id":"m1","data":1}`)
	if n := as.count(t, "message"); n != 0 {
		t.Errorf("sender got its own event with NoEcho")
	}
	as.one(t, protocol.TypeAck)
	bs.one(t, "message")

	// With echo on (the default) the sender gets it too.
	h2 := newHub(t, Options{NoJoinLeave: true})
	c, cs := connect(t, h2, "c")
	subscribe(t, c, cs, "r")
	send(c, `{"type":"message","room":"r","data":1}`)
	cs.one(t, "message")
}

func TestJoinLeaveEvents(t *testing.T) {
	h := newHub(t, Options{})
	a, as := connect(t, h, "alice")
	b, bs := connect(t, h, "bob")
	subscribe(t, a, as, "r")
	subscribe(t, b, bs, "r")

	j := as.one(t, protocol.TypeUserJoined)
	if j.Room != "r" || j.UserID != "bob" || decodeData[JoinLeaveData](t, j).ConnectionID != b.ID() || j.TS <= 0 || j.ID != "" {
		t.Errorf("user_joined = %+v", j)
	}
	if n := bs.count(t, protocol.TypeUserJoined); n != 0 {
		t.Errorf("the joining connection got %d user_joined about itself:%s", n, bs.dump(t))
	}
	if n := as.count(t, protocol.TypeUserJoined); n != 1 {
		t.Errorf("alice got %d user_joined, want 1 (none about herself)", n)
	}

	send(b, `{"type":"unsubscribe","room":"r"}`)
	l := as.one(t, protocol.TypeUserLeft)
	if l.UserID != "bob" || decodeData[JoinLeaveData](t, l).ConnectionID != b.ID() {
		t.Errorf("user_left = %+v", l)
	}
	if n := bs.count(t, protocol.TypeUserLeft); n != 0 {
		t.Errorf("the leaving connection got user_left about itself")
	}

	subscribe(t, b, bs, "r")
	b.Gone()
	if n := as.count(t, protocol.TypeUserLeft); n != 2 {
		t.Errorf("after Gone alice has %d user_left, want 2", n)
	}

	// Off by option.
	h2 := newHub(t, Options{NoJoinLeave: true})
	c, cs := connect(t, h2, "c")
	d, ds := connect(t, h2, "d")
	subscribe(t, c, cs, "r")
	subscribe(t, d, ds, "r")
	d.Gone()
	if n := cs.count(t, protocol.TypeUserJoined) + cs.count(t, protocol.TypeUserLeft); n != 0 {
		t.Errorf("NoJoinLeave: got %d join/leave events", n)
	}
}

func TestMaxRoomsPerClient(t *testing.T) {
	h := newHub(t, Options{MaxRoomsPerClient: 2})
	c, s := connect(t, h, "u")
	subscribe(t, c, s, "r1")
	subscribe(t, c, s, "r2")
	send(c, `{"type":"subscribe","id":"x","room":"r3"}`)
	errs := errorsOf(t, s)
	if len(errs) != 1 || errs[0].Code != protocol.ErrTooManyRooms || errs[0].Ref != "x" {
		t.Fatalf("third room: %+v", errs)
	}
	if h.RoomSize("r3") != 0 {
		t.Error("refused subscription joined the room")
	}
	subscribe(t, c, s, "r1") // already a member: not a new room
	send(c, `{"type":"unsubscribe","room":"r2"}`)
	subscribe(t, c, s, "r3") // room freed by the unsubscribe
}

func TestClientErrors(t *testing.T) {
	h := newHub(t, Options{})
	tests := []struct {
		name  string
		frame string
		code  string
		ref   string
	}{
		{"not JSON", `hello`, protocol.ErrBadJSON, ""},
		{"not an object", `[1]`, protocol.ErrBadJSON, ""},
		{"too deep", `{"type":"x","data":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, protocol.ErrBadJSON, ""},
		{"wrong field type", `{"type":"subscribe","id":"w","room":5}`, protocol.ErrBadRequest, "w"},
		{"missing type", `{"id":"t"}`, protocol.ErrBadRequest, "t"},
		{"server-only type", `{"type":"subscribed","id":"so","room":"r"}`, protocol.ErrUnknownType, "so"},
		{"stream_gap from a client", `{"type":"stream_gap","id":"sg","room":"r","data":{}}`, protocol.ErrUnknownType, "sg"},
		{"auth when authenticated", `{"type":"auth","id":"au","data":{"token":"x"}}`, protocol.ErrBadRequest, "au"},
		{"publish without room", `{"type":"message","id":"m"}`, protocol.ErrBadRequest, "m"},
		{"publish to invalid room", `{"type":"message","id":"m2","room":"bad room"}`, protocol.ErrInvalidRoom, "m2"},
		{"subscribe without room", `{"type":"subscribe","id":"s0"}`, protocol.ErrInvalidRoom, "s0"},
		{"subscribe to invalid room", `{"type":"subscribe","id":"s1","room":":x"}`, protocol.ErrInvalidRoom, "s1"},
		{"subscribe with bad last_event_id", `{"type":"subscribe","id":"s2","room":"r","last_event_id":"nope"}`, protocol.ErrBadRequest, "s2"},
		{"sync without last_event_id", `{"type":"sync","id":"y1","room":"r"}`, protocol.ErrBadRequest, "y1"},
		{"sync without subscription", `{"type":"sync","id":"y2","room":"r","last_event_id":"abc-1"}`, protocol.ErrNotSubscribed, "y2"},
		{"unsubscribe invalid room", `{"type":"unsubscribe","id":"u1","room":"a b"}`, protocol.ErrInvalidRoom, "u1"},
		{"unsubscribe not subscribed", `{"type":"unsubscribe","id":"u2","room":"r"}`, protocol.ErrNotSubscribed, "u2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := connect(t, h, "u")
			c.HandleMessage([]byte(tt.frame))
			errs := errorsOf(t, s)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:%s", len(errs), s.dump(t))
			}
			if errs[0].Code != tt.code || errs[0].Ref != tt.ref || errs[0].Message == "" {
				t.Errorf("error = %+v, want code %q ref %q", errs[0], tt.code, tt.ref)
			}
			if len(s.closeList()) != 0 {
				t.Errorf("one bad message closed the connection")
			}
			if got := len(s.frameList()); got != 2 {
				t.Errorf("%d frames sent, want connection_established and the error", got)
			}
			c.Gone()
		})
	}
	if h.Stats().ClientErrors < uint64(len(tests)) {
		t.Errorf("ClientErrors = %d, want at least %d", h.Stats().ClientErrors, len(tests))
	}
}

func TestHistoryRequestWhenHistoryIsOff(t *testing.T) {
	h := newHub(t, Options{NoHistory: true})
	c, s := connect(t, h, "u")
	send(c, `{"type":"history","id":"h1","room":"r"}`)
	errs := errorsOf(t, s)
	if len(errs) != 1 || errs[0].Code != protocol.ErrNotImplemented || errs[0].Ref != "h1" {
		t.Fatalf("history with history off: %+v", errs)
	}
}

func TestTooManyErrorsCloses1008(t *testing.T) {
	h := newHub(t, Options{MaxErrors: 5})
	c, s := connect(t, h, "u")
	for i := 0; i < 5; i++ {
		send(c, `nope`)
	}
	if cl := s.closeList(); len(cl) != 0 {
		t.Fatalf("closed after %d errors (limit 5): %+v", 5, cl)
	}
	send(c, `nope`)
	cl := s.closeList()
	if len(cl) == 0 || cl[0].Code != protocol.ClosePolicyViolation || cl[0].Reconnect {
		t.Fatalf("after 6 errors: closes %+v, want 1008", cl)
	}
	if n := s.count(t, protocol.TypeError); n != 6 {
		t.Errorf("%d error events, want 6", n)
	}
}

func TestIdempotentClientPublish(t *testing.T) {
	for _, user := range []string{"alice", ""} {
		t.Run("user="+user, func(t *testing.T) {
			h := newHub(t, Options{NoJoinLeave: true})
			a, as := connect(t, h, user)
			b, bs := connect(t, h, "bob")
			subscribe(t, a, as, "r")
			subscribe(t, b, bs, "r")
			send(a, `{"type":"message","room":"r","id":"m1","data":{"n":1}}`)
			send(a, `{"type":"message","room":"r","id":"m1","data":{"n":1}}`)
			if n := bs.count(t, "message"); n != 1 {
				t.Fatalf("re-sent publish delivered %d times, want 1", n)
			}
			acks := as.ofType(t, protocol.TypeAck)
			if len(acks) != 2 {
				t.Fatalf("%d acks, want 2", len(acks))
			}
			first, second := decodeData[AckData](t, acks[0]), decodeData[AckData](t, acks[1])
			if first.Duplicate || !second.Duplicate || first.EventID != second.EventID || first.EventID == "" {
				t.Errorf("acks = %+v, %+v; want the same event id, the second marked duplicate", first, second)
			}
			if first.EventID != bs.one(t, "message").ID {
				t.Errorf("ack event id differs from the delivered event's")
			}
			// Another id is a new event.
			send(a, `{"type":"message","room":"r","id":"m2"}`)
			if n := bs.count(t, "message"); n != 2 {
				t.Errorf("a new id delivered %d events in total, want 2", n)
			}
		})
	}
}

// TestIdempotencyKeysArePerSender: two different senders that happen to use
// the same message id (ids like "1", "m1" are common) publish two events.
func TestIdempotencyKeysArePerSender(t *testing.T) {
	for _, tc := range []struct{ name, u1, u2 string }{
		{"two users", "alice", "bob"},
		{"two anonymous connections", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t, Options{NoJoinLeave: true})
			a, as := connect(t, h, tc.u1)
			b, bs := connect(t, h, tc.u2)
			w, ws := connect(t, h, "watcher")
			subscribe(t, a, as, "r")
			subscribe(t, b, bs, "r")
			subscribe(t, w, ws, "r")
			send(a, `{"type":"message","room":"r","id":"1","data":"from a"}`)
			send(b, `{"type":"message","room":"r","id":"1","data":"from b"}`)
			if n := ws.count(t, "message"); n != 2 {
				t.Errorf("watcher got %d events, want 2: a different sender's message was dropped as a duplicate", n)
			}
			if ack := decodeData[AckData](t, bs.one(t, protocol.TypeAck)); ack.Duplicate {
				t.Errorf("second sender acked as duplicate of the first: %+v", ack)
			}
		})
	}
}

func TestGone(t *testing.T) {
	h := newHub(t, Options{})
	a, as := connect(t, h, "a")
	b, bs := connect(t, h, "b")
	subscribe(t, a, as, "r1")
	subscribe(t, a, as, "r2")
	subscribe(t, b, bs, "r1")
	if got := len(h.Rooms()); got != 2 {
		t.Fatalf("Rooms() = %d, want 2", got)
	}
	a.Gone()
	if h.RoomSize("r1") != 1 || h.RoomSize("r2") != 0 {
		t.Errorf("after Gone: r1 %d members, r2 %d", h.RoomSize("r1"), h.RoomSize("r2"))
	}
	rooms := h.Rooms()
	if len(rooms) != 1 || rooms[0] != (RoomInfo{Name: "r1", Members: 1}) {
		t.Errorf("Rooms() = %+v, want only r1 (empty rooms are freed)", rooms)
	}
	if n := bs.count(t, protocol.TypeUserLeft); n != 1 {
		t.Errorf("b got %d user_left", n)
	}
	a.Gone() // idempotent
	if n := bs.count(t, protocol.TypeUserLeft); n != 1 {
		t.Errorf("second Gone sent user_left again")
	}
	if h.Stats().Connections != 1 || h.UserConnections("a") != 0 {
		t.Errorf("after Gone: %d connections, user a has %d", h.Stats().Connections, h.UserConnections("a"))
	}
	// A gone connection cannot join again.
	send(a, `{"type":"subscribe","room":"r3"}`)
	if h.RoomSize("r3") != 0 {
		t.Error("gone connection joined a room")
	}
	b.Gone()
	if rooms := h.Rooms(); len(rooms) != 0 {
		t.Errorf("Rooms() = %+v after everyone left, want none", rooms)
	}
	if st := h.Stats(); st.Connections != 0 || st.Rooms != 0 {
		t.Errorf("stats after everyone left: %d connections, %d rooms", st.Connections, st.Rooms)
	}
	// Presence follows membership.
	p, err := h.Presence(context.Background(), "r1", false)
	if err != nil || p.Clients != 0 {
		t.Errorf("presence after everyone left: %+v, %v", p, err)
	}
}

func TestPresenceFollowsMembership(t *testing.T) {
	h := newHub(t, Options{})
	a, as := connect(t, h, "a")
	b, bs := connect(t, h, "b")
	subscribe(t, a, as, "r")
	subscribe(t, b, bs, "r")
	p, err := h.Presence(context.Background(), "r", false)
	if err != nil || p.Clients != 2 || p.Users != 2 || len(p.Members) != 2 {
		t.Fatalf("presence = %+v, %v", p, err)
	}
	send(b, `{"type":"unsubscribe","room":"r"}`)
	p, _ = h.Presence(context.Background(), "r", true)
	if p.Clients != 1 || p.Users != 1 || p.Members != nil {
		t.Errorf("presence after unsubscribe = %+v", p)
	}
}

func TestServerPublish(t *testing.T) {
	h := newHub(t, Options{NoJoinLeave: true})
	c, s := connect(t, h, "u")
	subscribe(t, c, s, "news")
	ctx := context.Background()
	res, err := h.Publish(ctx, "news", "", json.RawMessage(`{"x":1}`), PublishOptions{IdempotencyKey: "k"})
	if err != nil || res.Recipients != 1 || res.Duplicate {
		t.Fatalf("Publish = %+v, %v", res, err)
	}
	ev := s.one(t, protocol.TypeMessage) // empty type means "message"
	if ev.ID != res.EventID || ev.UserID != "" {
		t.Errorf("event %+v, result %+v", ev, res)
	}
	again, err := h.Publish(ctx, "news", "", json.RawMessage(`{"x":1}`), PublishOptions{IdempotencyKey: "k"})
	if err != nil || !again.Duplicate || again.EventID != res.EventID {
		t.Errorf("repeated key: %+v, %v", again, err)
	}
	if n := s.count(t, protocol.TypeMessage); n != 1 {
		t.Errorf("duplicate delivered: %d events", n)
	}
	for _, tc := range []struct {
		room, typ, data, code string
	}{
		{"bad room", "message", `{}`, protocol.ErrInvalidRoom},
		{"news", "subscribe", `{}`, protocol.ErrBadRequest},
		{"news", "ack", `{}`, protocol.ErrBadRequest},
		{"news", "message", `{nope`, protocol.ErrBadJSON},
	} {
		_, err := h.Publish(ctx, tc.room, tc.typ, json.RawMessage(tc.data), PublishOptions{})
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != tc.code {
			t.Errorf("Publish(%q, %q, %s) = %v, want %s", tc.room, tc.typ, tc.data, err, tc.code)
		}
	}
}

func TestBroadcastAndUserSends(t *testing.T) {
	h := newHub(t, Options{})
	ctx := context.Background()
	u1a, s1a := connect(t, h, "u1")
	_, s1b := connect(t, h, "u1")
	_, s2 := connect(t, h, "u2")

	if err := h.Broadcast(ctx, "notice", json.RawMessage(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	var f *protocol.Frame
	for i, s := range []*fakeSink{s1a, s1b, s2} {
		m := s.one(t, "notice")
		if string(m.Data) != `{"v":1}` {
			t.Errorf("broadcast data %s", m.Data)
		}
		if i == 0 {
			f = m.frame
		} else if m.frame != f {
			t.Errorf("broadcast encoded per recipient")
		}
	}

	if err := h.SendToUser(ctx, "u1", "dm", json.RawMessage(`"hi"`)); err != nil {
		t.Fatal(err)
	}
	if s1a.count(t, "dm") != 1 || s1b.count(t, "dm") != 1 || s2.count(t, "dm") != 0 {
		t.Errorf("SendToUser reached %d, %d, %d connections", s1a.count(t, "dm"), s1b.count(t, "dm"), s2.count(t, "dm"))
	}
	if ok, err := h.SendToConn(u1a.ID(), "direct", nil); !ok || err != nil {
		t.Errorf("SendToConn = %v, %v", ok, err)
	}
	if s1a.count(t, "direct") != 1 || s1b.count(t, "direct") != 0 {
		t.Error("SendToConn reached the wrong connection")
	}
	if ok, _ := h.SendToConn("nope", "direct", nil); ok {
		t.Error("SendToConn found an unknown connection")
	}

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"broadcast reserved type", h.Broadcast(ctx, "pong", nil)},
		{"broadcast empty type", h.Broadcast(ctx, "", nil)},
		{"broadcast invalid data", h.Broadcast(ctx, "x", json.RawMessage(`{`))},
		{"send to empty user", h.SendToUser(ctx, "", "x", nil)},
		{"send reserved type", h.SendToUser(ctx, "u1", "error", nil)},
	} {
		var pe *protocol.Error
		if !errors.As(tc.err, &pe) {
			t.Errorf("%s: %v, want a *protocol.Error", tc.name, tc.err)
		}
	}

	kick := protocol.NewDisconnect(protocol.CloseKicked, "bye")
	if err := h.DisconnectUser(ctx, "u1", kick); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*fakeSink{s1a, s1b} {
		if cl := s.closeList(); len(cl) != 1 || cl[0] != kick {
			t.Errorf("DisconnectUser: closes %+v", cl)
		}
	}
	if len(s2.closeList()) != 0 {
		t.Error("DisconnectUser closed another user's connection")
	}

	c3, s3 := connect(t, h, "u3")
	_, s4 := connect(t, h, "u3")
	if err := h.DisconnectConn(ctx, c3.ID(), protocol.NewDisconnect(protocol.CloseKicked, "")); err != nil {
		t.Fatal(err)
	}
	if cl := s3.closeList(); len(cl) != 1 || cl[0].Code != protocol.CloseKicked || cl[0].Reason != "kicked" {
		t.Errorf("DisconnectConn: closes %+v", cl)
	}
	if len(s4.closeList()) != 0 {
		t.Error("DisconnectConn closed the user's other connection")
	}
}

func TestShutdown(t *testing.T) {
	h := newHub(t, Options{})
	var sinks []*fakeSink
	for i := range 5 {
		c, s := connect(t, h, fmt.Sprintf("u%d", i))
		subscribe(t, c, s, "r")
		s.mu.Lock()
		s.goneOnClose = true
		s.mu.Unlock()
		sinks = append(sinks, s)
	}
	d := protocol.NewDisconnect(protocol.CloseServiceRestart, "server restarting")
	if err := h.Shutdown(context.Background(), d); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, s := range sinks {
		if cl := s.closeList(); len(cl) != 1 || cl[0].Code != protocol.CloseServiceRestart || !cl[0].Reconnect {
			t.Errorf("sink %d closes: %+v, want one 1012", i, cl)
		}
	}
	if h.Stats().Connections != 0 || len(h.Rooms()) != 0 {
		t.Errorf("after Shutdown: %d connections, rooms %+v", h.Stats().Connections, h.Rooms())
	}
	if !h.Closing() || h.Ready(context.Background()) == nil {
		t.Error("hub still reports ready after Shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	h := newHub(t, Options{})
	_, s := connect(t, h, "stuck") // its transport never reports Gone
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Shutdown(ctx, protocol.NewDisconnect(protocol.CloseServiceRestart, ""))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a stuck connection = %v, want the context's error", err)
	}
	if len(s.closeList()) != 1 {
		t.Error("stuck connection was not asked to close")
	}
}

// TestConcurrentChurn runs subscribes, publishes, unsubscribes and Gone from
// many goroutines (for the race detector) and checks the hub ends empty.
func TestConcurrentChurn(t *testing.T) {
	h := newHub(t, Options{})
	const conns, rounds = 16, 50
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := connect(t, h, fmt.Sprintf("u%d", i%4))
			for r := range rounds {
				room := fmt.Sprintf("room:%d", (i+r)%5)
				send(c, `{"type":"subscribe","room":%q}`, room)
				send(c, `{"type":"message","room":%q,"id":"%d-%d","data":%d}`, room, i, r, r)
				if r%3 == 0 {
					send(c, `{"type":"unsubscribe","room":%q}`, room)
				}
			}
			c.Gone()
		}()
	}
	for range 20 { // server-side publishes meanwhile
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 5 {
				_, _ = h.Publish(context.Background(), fmt.Sprintf("room:%d", r), "message", nil, PublishOptions{})
			}
		}()
	}
	wg.Wait()
	if rooms := h.Rooms(); len(rooms) != 0 {
		t.Errorf("rooms left after every connection is gone: %+v", rooms)
	}
	if st := h.Stats(); st.Connections != 0 || st.Rooms != 0 {
		t.Errorf("stats: %d connections, %d rooms", st.Connections, st.Rooms)
	}
}
