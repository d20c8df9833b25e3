package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

func TestConnectionEstablished(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	c := dial(t, ts.url("/ws"), nil, nil)
	e := c.expect(protocol.TypeConnectionEstablished)
	var d protocol.ConnectionEstablished
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.UserID, "anon-") || d.ConnectionID == "" {
		t.Errorf("user %q connection %q: want an anonymous user and a connection id", d.UserID, d.ConnectionID)
	}
	if d.HeartbeatInterval != 25000 {
		t.Errorf("heartbeat_interval_ms %d, want the default 25000", d.HeartbeatInterval)
	}
	if d.ProtocolVersion != protocol.Version || d.Node != ts.srv.Hub.NodeID() {
		t.Errorf("protocol_version %d node %q, want %d %q", d.ProtocolVersion, d.Node, protocol.Version, ts.srv.Hub.NodeID())
	}
	if skew := time.Since(time.UnixMilli(d.ServerTime)); skew < -time.Hour || skew > time.Hour {
		t.Errorf("server_time %d is not the current time", d.ServerTime)
	}
	// The ids are the hub's.
	c.subscribe("room:1")
	members, _ := ts.srv.Hub.RoomMembers("room:1")
	if len(members) != 1 || members[0].ConnectionID != d.ConnectionID || members[0].UserID != d.UserID {
		t.Errorf("room members %+v, want the announced connection", members)
	}
	c.send(`{"type":"ping","id":"p1"}`)
	if e := c.expect(protocol.TypePong); e.ID != "p1" {
		t.Errorf("pong id %q, want p1", e.ID)
	}
	c.send(`{"type":"ping"}`)
	if e := c.expect(protocol.TypePong); e.ID != "" {
		t.Errorf("pong id %q, want none", e.ID)
	}
}

// joinLeaveUser decodes a user_joined/user_left event.
func joinLeave(t *testing.T, e *protocol.Envelope) (user, conn string) {
	t.Helper()
	var d protocol.JoinLeaveData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	return e.UserID, d.ConnectionID
}

func established(t *testing.T, ts *testServer) (*wsClient, protocol.ConnectionEstablished) {
	t.Helper()
	c := dial(t, ts.url("/ws"), nil, nil)
	var d protocol.ConnectionEstablished
	if err := json.Unmarshal(c.expect(protocol.TypeConnectionEstablished).Data, &d); err != nil {
		t.Fatal(err)
	}
	return c, d
}

func TestRoomLifecycle(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	h := ts.srv.Hub
	a, ida := established(t, ts)
	b, idb := established(t, ts)
	const room = "chat:1"

	var sd protocol.SubscribedData
	if err := json.Unmarshal(a.subscribe(room).Data, &sd); err != nil || sd.Members != 1 || sd.Position == "" {
		t.Fatalf("a subscribed: %+v %v", sd, err)
	}
	if err := json.Unmarshal(b.subscribe(room).Data, &sd); err != nil || sd.Members != 2 {
		t.Fatalf("b subscribed: %+v %v", sd, err)
	}
	j := a.expect(protocol.TypeUserJoined)
	if u, cid := joinLeave(t, j); j.Room != room || u != idb.UserID || cid != idb.ConnectionID {
		t.Fatalf("user_joined %s, want b's ids", encode(j))
	}
	if n := h.RoomSize(room); n != 2 {
		t.Fatalf("RoomSize %d, want 2", n)
	}

	// Publish: both members get the event once; the sender also gets an ack
	// with the same event id.
	b.send(`{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi"}}`)
	ev := a.expect("message")
	if ev.Room != room || ev.UserID != idb.UserID || string(ev.Data) != `{"text":"hi"}` || ev.TS == 0 {
		t.Fatalf("event %s", encode(ev))
	}
	if _, ok := protocol.ParseEventID(ev.ID); !ok {
		t.Fatalf("event id %q is not EPOCH-OFFSET", ev.ID)
	}
	var ack *protocol.Envelope
	for range 2 {
		e := b.next()
		switch e.Type {
		case "message":
			if e.ID != ev.ID {
				t.Errorf("echo id %q, want %q", e.ID, ev.ID)
			}
		case protocol.TypeAck:
			ack = e
		default:
			t.Fatalf("unexpected %s", encode(e))
		}
	}
	var ad protocol.AckData
	if ack == nil || ack.ID != "m1" || ack.Room != room || json.Unmarshal(ack.Data, &ad) != nil || ad.EventID != ev.ID || ad.Duplicate {
		t.Fatalf("ack %v", ack)
	}

	// A re-sent id is acknowledged again and not delivered twice.
	b.send(`{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi"}}`)
	dup := b.expect(protocol.TypeAck)
	if json.Unmarshal(dup.Data, &ad) != nil || ad.EventID != ev.ID || !ad.Duplicate {
		t.Fatalf("second ack %s, want duplicate of %s", encode(dup), ev.ID)
	}
	a.roundTrip("after-dup") // nothing was queued for a before its pong

	// Unsubscribe: a is told, b sees user_left, a gets no more events.
	a.send(`{"type":"unsubscribe","id":"u1","room":"chat:1"}`)
	if e := a.expect(protocol.TypeUnsubscribed); e.ID != "u1" || e.Room != room {
		t.Fatalf("unsubscribed %s", encode(e))
	}
	l := b.expect(protocol.TypeUserLeft)
	if u, cid := joinLeave(t, l); u != ida.UserID || cid != ida.ConnectionID {
		t.Fatalf("user_left %s, want a's ids", encode(l))
	}
	b.send(`{"type":"message","room":"chat:1","id":"m2"}`)
	b.expect("message")
	b.expect(protocol.TypeAck)
	a.roundTrip("after-unsub")
	a.send(`{"type":"unsubscribe","id":"u2","room":"chat:1"}`)
	a.expectError(protocol.ErrNotSubscribed, "u2")
	if n := h.RoomSize(room); n != 1 {
		t.Fatalf("RoomSize %d after unsubscribe, want 1", n)
	}

	// The last member leaving frees the room.
	b.send(`{"type":"unsubscribe","id":"u3","room":"chat:1"}`)
	b.expect(protocol.TypeUnsubscribed)
	if rooms := h.Rooms(); len(rooms) != 0 || h.Stats().Rooms != 0 || h.RoomSize(room) != 0 {
		t.Fatalf("rooms %v (Stats.Rooms %d) after everyone left", rooms, h.Stats().Rooms)
	}
}

// TestFanoutOrder: three members each publish 200 numbered events at the
// same time; every member gets all 600 exactly once, each publisher's in
// its order, and all members see the same total order.
func TestFanoutOrder(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}})
	const n, per = 3, 200
	clients := make([]*wsClient, n)
	users := map[string]int{}
	for i := range clients {
		var d protocol.ConnectionEstablished
		clients[i], d = established(t, ts)
		users[d.UserID] = i
		clients[i].subscribe("fan:1")
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				msg := fmt.Sprintf(`{"type":"message","room":"fan:1","id":"c%d-%d","data":{"n":%d}}`, i, k, k)
				if err := c.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Errorf("client %d write: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	orders := make([][]string, n)
	for i, c := range clients {
		next := make([]int, n) // next expected number per publisher
		acks := 0
		var last protocol.StreamPosition
		for len(orders[i]) < n*per || acks < per {
			e := c.next()
			switch e.Type {
			case protocol.TypeAck:
				acks++
				continue
			case "message":
			default:
				t.Fatalf("client %d: unexpected %s", i, encode(e))
			}
			from, ok := users[e.UserID]
			if !ok {
				t.Fatalf("client %d: event from unknown user %q", i, e.UserID)
			}
			var d struct{ N int }
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.N != next[from] {
				t.Fatalf("client %d: from %d got n=%d, want %d", i, from, d.N, next[from])
			}
			next[from]++
			pos, ok := protocol.ParseEventID(e.ID)
			if !ok || (last != protocol.StreamPosition{} && (pos.Epoch != last.Epoch || pos.Offset <= last.Offset)) {
				t.Fatalf("client %d: event id %q does not follow %v", i, e.ID, last)
			}
			last = pos
			orders[i] = append(orders[i], e.ID)
		}
		if len(orders[i]) != n*per || acks != per {
			t.Fatalf("client %d: %d events %d acks", i, len(orders[i]), acks)
		}
		c.roundTrip("end") // no extra copies after the last one
	}
	for i := 1; i < n; i++ {
		for k := range orders[0] {
			if orders[i][k] != orders[0][k] {
				t.Fatalf("client %d saw %s at %d, client 0 saw %s", i, orders[i][k], k, orders[0][k])
			}
		}
	}
}

func TestNoEcho(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Hub: hub.Options{NoEcho: true}})
	a, b := ts.dialWS(t), ts.dialWS(t)
	a.subscribe("r")
	b.subscribe("r")
	a.expect(protocol.TypeUserJoined)
	a.send(`{"type":"message","room":"r","id":"x","data":1}`)
	a.expect(protocol.TypeAck) // and no copy of its own event
	a.roundTrip("p")
	if e := b.expect("message"); string(e.Data) != "1" {
		t.Fatalf("b got %s", encode(e))
	}
	a.send(`{"type":"message","room":"r","data":2}`) // no id: no ack either
	b.expect("message")
	a.roundTrip("q")
}

// TestCloseFreesRooms: however a connection ends, it leaves its rooms
// (members are told) and a room left empty is freed.
func TestCloseFreesRooms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		close func(t *testing.T, c *wsClient)
		code  string // Stats().Closes key
	}{
		{"client close 1000", func(t *testing.T, c *wsClient) {
			if err := c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			// The server answers the close handshake with 1000.
			if code, _ := c.expectClose(); code != 1000 {
				t.Fatalf("server answered close with %d", code)
			}
		}, "1000"},
		{"client close 4321", func(t *testing.T, c *wsClient) {
			if err := c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, ""), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			c.expectClose()
		}, "4321"},
		{"abrupt TCP close", func(t *testing.T, c *wsClient) { c.c.NetConn().Close() }, "1006"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, server.Config{})
			h := ts.srv.Hub
			stay := ts.dialWS(t)
			stay.subscribe("shared")
			c, id := established(t, ts)
			c.subscribe("shared")
			for i := range 3 {
				c.subscribe(fmt.Sprintf("own:%d", i))
			}
			stay.expect(protocol.TypeUserJoined)
			if h.Stats().Rooms != 4 {
				t.Fatalf("%d rooms, want 4", h.Stats().Rooms)
			}
			tt.close(t, c)
			l := stay.expect(protocol.TypeUserLeft)
			if u, cid := joinLeave(t, l); u != id.UserID || cid != id.ConnectionID || l.Room != "shared" {
				t.Fatalf("user_left %s", encode(l))
			}
			waitFor(t, "the connection to be gone", func() bool { return h.Stats().Connections == 1 && ts.srv.WS.Open() == 1 })
			if rooms := h.Rooms(); len(rooms) != 1 || rooms[0] != (hub.RoomInfo{Name: "shared", Members: 1}) || h.Stats().Rooms != 1 {
				t.Fatalf("rooms %v after the close, want only shared with 1 member", rooms)
			}
			if n := h.Stats().Closes[tt.code]; n != 1 {
				t.Errorf("Stats().Closes = %v, want one %s", h.Stats().Closes, tt.code)
			}
			stay.roundTrip("still here")
		})
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for the heartbeat wheel (~10 s)")
	}
	// 5 s is the shortest interval; a 1 s pong timeout keeps this test
	// near interval+timeout.
	ts := startServer(t, server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: time.Second}})
	h := ts.srv.Hub

	// A client that answers pings (gorilla's default handler) but sends
	// nothing else.
	pings := make(chan struct{}, 16)
	good, _, err := (&websocket.Dialer{}).Dial(ts.url("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	good.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return good.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	gc := startClient(t, good, nil)

	// A client that reads but never answers pings.
	silent, _, err := (&websocket.Dialer{}).Dial(ts.url("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	silentPings := make(chan struct{}, 16)
	silent.SetPingHandler(func(string) error { silentPings <- struct{}{}; return nil })
	sc := startClient(t, silent, nil)
	for _, c := range []*wsClient{gc, sc} {
		var d protocol.ConnectionEstablished
		if err := json.Unmarshal(c.expect(protocol.TypeConnectionEstablished).Data, &d); err != nil || d.HeartbeatInterval != 5000 {
			t.Fatalf("heartbeat_interval_ms %d, want 5000", d.HeartbeatInterval)
		}
	}
	// Subscribing is the last thing either client sends.
	gc.subscribe("hb:good")
	sc.subscribe("hb:silent")
	start := time.Now()

	// Bound: the first ping comes within one interval, the check one pong
	// timeout later, on the wheel's 1 s ticks; 5 s of slack for -race.
	d := sc.expectDisconnect(protocol.CloseHeartbeatTimeout)
	if !d.Reconnect {
		t.Error("heartbeat timeout should advise reconnecting")
	}
	if took := time.Since(start); took > 5*time.Second+time.Second+2*time.Second+5*time.Second {
		t.Errorf("closed after %s, want within interval+timeout (+slack)", took)
	}
	select {
	case <-silentPings:
	default:
		t.Error("the silent client was closed without being pinged")
	}
	waitFor(t, "the silent client's room to be freed", func() bool { return h.RoomSize("hb:silent") == 0 && h.Stats().Connections == 1 })
	if n := h.Stats().Closes["4008"]; n != 1 {
		t.Errorf("Closes[4008] = %d, want 1", n)
	}

	// The answering client was pinged and is still here after its check.
	select {
	case <-pings:
	case <-time.After(waitLimit):
		t.Fatal("the answering client got no ping")
	}
	time.Sleep(2 * time.Second) // past its pong deadline (1 s) on the 1 s wheel
	gc.roundTrip("alive")
	if h.RoomSize("hb:good") != 1 {
		t.Error("the answering client left its room")
	}
}

// TestBadMessages: each invalid message gets its documented answer; the
// connection stays open after error events, and a bystander in another
// room is never affected.
func TestBadMessages(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	h := ts.srv.Hub
	by := ts.dialWS(t)
	by.subscribe("by:1")
	big := `{"type":"message","room":"big:1","id":"big","data":{"s":"` + bytesRepeat(60<<10) + `"}}`
	tests := []struct {
		name string
		send string
		code string // error code, "" for no error (see want)
		ref  string
		want string // expected reply type when code is ""
	}{
		{name: "malformed JSON", send: `{"type":`, code: protocol.ErrBadJSON},
		{name: "array", send: `[1,2]`, code: protocol.ErrBadJSON},
		{name: "trailing garbage", send: `{"type":"ping"} x`, code: protocol.ErrBadJSON},
		{name: "empty", send: ``, code: protocol.ErrBadJSON},
		{name: "room as number", send: `{"type":"subscribe","id":"s1","room":5}`, code: protocol.ErrBadRequest, ref: "s1"},
		{name: "id as number", send: `{"type":"ping","id":7}`, code: protocol.ErrBadRequest},
		{name: "missing type", send: `{"id":"t1","room":"r"}`, code: protocol.ErrBadRequest, ref: "t1"},
		{name: "type with spaces", send: `{"type":"a b","id":"t2","room":"r"}`, code: protocol.ErrBadRequest, ref: "t2"},
		{name: "server-only type", send: `{"type":"ack","id":"a1"}`, code: protocol.ErrUnknownType, ref: "a1"},
		{name: "server-only type disconnect", send: `{"type":"disconnect","id":"a2","room":"r"}`, code: protocol.ErrUnknownType, ref: "a2"},
		{name: "publish without room", send: `{"type":"message","id":"m1","data":{}}`, code: protocol.ErrBadRequest, ref: "m1"},
		{name: "room empty", send: `{"type":"subscribe","id":"e1","room":""}`, code: protocol.ErrInvalidRoom, ref: "e1"},
		{name: "room with space", send: `{"type":"subscribe","id":"e2","room":"a b"}`, code: protocol.ErrInvalidRoom, ref: "e2"},
		{name: "room leading colon", send: `{"type":"subscribe","id":"e3","room":":x"}`, code: protocol.ErrInvalidRoom, ref: "e3"},
		{name: "room trailing colon", send: `{"type":"message","id":"e4","room":"x:"}`, code: protocol.ErrInvalidRoom, ref: "e4"},
		{name: "room non-ASCII", send: `{"type":"subscribe","id":"e5","room":"caf\u00e9"}`, code: protocol.ErrInvalidRoom, ref: "e5"},
		{name: "room too long", send: `{"type":"subscribe","id":"e6","room":"` + strings.Repeat("a", 201) + `"}`, code: protocol.ErrInvalidRoom, ref: "e6"},
		{name: "unsubscribe invalid room", send: `{"type":"unsubscribe","id":"e7","room":"a*b"}`, code: protocol.ErrInvalidRoom, ref: "e7"},
		{name: "nested 100 deep", send: `{"type":"message","room":"r","data":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, code: protocol.ErrBadJSON},
		{name: "sync without last_event_id", send: `{"type":"sync","id":"y1","room":"r"}`, code: protocol.ErrBadRequest, ref: "y1"},
		{name: "bad last_event_id", send: `{"type":"subscribe","id":"y2","room":"r","last_event_id":"nope"}`, code: protocol.ErrBadRequest, ref: "y2"},
		{name: "room of 200 bytes", send: `{"type":"message","id":"ok1","room":"` + strings.Repeat("a", 200) + `"}`, want: protocol.TypeAck},
		{name: "nested 30 deep", send: `{"type":"message","id":"ok2","room":"r","data":` + strings.Repeat("[", 30) + strings.Repeat("]", 30) + `}`, want: protocol.TypeAck},
		{name: "60 KiB valid JSON", send: big, want: protocol.TypeAck},
		{name: "exactly the 64 KiB limit", send: sized(64 << 10), want: protocol.TypeAck},
		{name: "unknown fields ignored", send: `{"type":"ping","id":"u","future":{"x":1}}`, want: protocol.TypePong},
	}
	c := ts.dialWS(t) // one connection for all: errors do not close it
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t, by.t = t, t
			c.send(tt.send)
			if tt.code != "" {
				c.expectError(tt.code, tt.ref)
			} else {
				c.expect(tt.want)
			}
			c.roundTrip(fmt.Sprintf("open-%d", i))
			checkBystander(t, h, by, i)
		})
	}
}

// checkBystander publishes to the bystander's room and requires it as the
// bystander's next message.
func checkBystander(t *testing.T, h *hub.Hub, by *wsClient, i int) {
	t.Helper()
	data := fmt.Sprintf(`{"i":%d}`, i)
	if _, err := h.Publish(context.Background(), "by:1", "check", json.RawMessage(data), hub.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := by.expect("check"); string(e.Data) != data {
		t.Fatalf("bystander got %s, want data %s", encode(e), data)
	}
}

// TestBadFrames: frames that break the WebSocket protocol or our limits
// close the connection with the RFC 6455 code; a bystander is unaffected.
func TestBadFrames(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	h := ts.srv.Hub
	by := ts.dialWS(t)
	by.subscribe("by:1")
	text := func(s string) frame { return frame{fin: true, op: 0x1, masked: true, payload: []byte(s)} }
	closeFrame := func(code uint16, reason string) frame {
		return frame{fin: true, op: 0x8, masked: true, payload: append([]byte{byte(code >> 8), byte(code)}, reason...)}
	}
	tests := []struct {
		name       string
		frames     []frame
		code       int
		disconnect bool // a disconnect event precedes the close frame
	}{
		{"binary frame", []frame{{fin: true, op: 0x2, masked: true, payload: []byte(`{"type":"ping"}`)}}, 1003, true},
		{"message one byte over the limit", []frame{text(sized(64<<10 + 1))}, 1009, false},
		{"fragments over the limit", []frame{
			{op: 0x1, masked: true, payload: []byte(`{"type":"message","room":"r","data":"` + bytesRepeat(40<<10))},
			{fin: true, op: 0x0, masked: true, payload: []byte(bytesRepeat(40<<10) + `"}`)},
		}, 1009, false},
		{"invalid UTF-8", []frame{text("{\"type\":\"message\",\"room\":\"r\",\"data\":\"\xff\xfe\"}")}, 1007, false},
		{"invalid UTF-8 across fragments", []frame{
			{op: 0x1, masked: true, payload: []byte("{\"type\":\"ping\",\"id\":\"\xe2")},
			{fin: true, op: 0x0, masked: true, payload: []byte("\x28\xa1\"}")},
		}, 1007, false},
		{"unmasked frame", []frame{{fin: true, op: 0x1, payload: []byte(`{"type":"ping"}`)}}, 1002, false},
		{"reserved data opcode 3", []frame{{fin: true, op: 0x3, masked: true}}, 1002, false},
		{"reserved control opcode B", []frame{{fin: true, op: 0xB, masked: true}}, 1002, false},
		{"RSV1 without extension", []frame{{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: []byte(`{"type":"ping"}`)}}, 1002, false},
		{"RSV2", []frame{{fin: true, rsv: 0x20, op: 0x1, masked: true, payload: []byte(`{"type":"ping"}`)}}, 1002, false},
		{"RSV3 on a ping", []frame{{fin: true, rsv: 0x10, op: 0x9, masked: true}}, 1002, false},
		{"fragmented ping", []frame{{op: 0x9, masked: true, payload: []byte("x")}}, 1002, false},
		{"control frame over 125 bytes", []frame{{fin: true, op: 0x9, masked: true, payload: make([]byte, 126)}}, 1002, false},
		{"continuation without a start", []frame{{fin: true, op: 0x0, masked: true, payload: []byte("x")}}, 1002, false},
		{"new message inside a fragmented one", []frame{
			{op: 0x1, masked: true, payload: []byte(`{"type":`)},
			text(`{"type":"ping"}`),
		}, 1002, false},
		{"close with reserved code 1005", []frame{closeFrame(1005, "")}, 1002, false},
		{"close with code 999", []frame{closeFrame(999, "")}, 1002, false},
		{"close with a 1-byte payload", []frame{{fin: true, op: 0x8, masked: true, payload: []byte{3}}}, 1002, false},
		{"close reason not UTF-8", []frame{closeFrame(1000, "\xff")}, 1007, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			by.t = t
			rc, _ := rawDial(t, ts.addr, "/ws", nil, 0)
			if _, e := rc.nextText(); e.Type != protocol.TypeConnectionEstablished {
				t.Fatalf("first message %s", encode(e))
			}
			for _, f := range tt.frames {
				if err := rc.write(encodeFrame(f)); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			msgs := rc.expectClose(tt.code)
			if tt.disconnect {
				lastDisconnect(t, msgs, protocol.CloseCode(tt.code))
			}
			waitFor(t, "the connection to be gone", func() bool { return h.Stats().Connections == 1 && ts.srv.WS.Open() == 1 })
			checkBystander(t, h, by, i)
		})
	}
}

// TestErrorFlood: a connection that keeps earning error events is closed
// with 1008 after more than 50 in 10 s.
func TestErrorFlood(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	h := ts.srv.Hub
	by := ts.dialWS(t)
	by.subscribe("by:1")

	t.Run("garbage", func(t *testing.T) {
		by.t = t
		c := ts.dialWS(t)
		go func() {
			for range 60 {
				if c.c.WriteMessage(websocket.TextMessage, []byte("garbage")) != nil {
					return // closed under us: expected after the 51st
				}
			}
		}()
		code, msgs := c.expectClose()
		if code != 1008 {
			t.Fatalf("close %d, want 1008", code)
		}
		lastDisconnect(t, msgs, protocol.ClosePolicyViolation)
		errs := 0
		for _, e := range msgs[:len(msgs)-1] {
			if e.Type != protocol.TypeError {
				t.Fatalf("unexpected %s", encode(e))
			}
			errs++
		}
		if errs != 51 {
			t.Errorf("%d error events before the close, want 51 (the limit is 50)", errs)
		}
		waitFor(t, "the connection to be gone", func() bool { return h.Stats().Connections == 1 })
		checkBystander(t, h, by, 0)
	})

	t.Run("subscribe flood", func(t *testing.T) {
		by.t = t
		c := ts.dialWS(t)
		go func() {
			for i := range 200 {
				msg := fmt.Sprintf(`{"type":"subscribe","id":"s%d","room":"flood:%d"}`, i, i)
				if c.c.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
					return
				}
			}
		}()
		code, msgs := c.expectClose()
		if code != 1008 {
			t.Fatalf("close %d, want 1008", code)
		}
		lastDisconnect(t, msgs, protocol.ClosePolicyViolation)
		subscribed, tooMany := 0, 0
		for _, e := range msgs[:len(msgs)-1] {
			switch e.Type {
			case protocol.TypeSubscribed:
				if tooMany > 0 {
					t.Fatalf("subscribed %s after too_many_rooms", e.Room)
				}
				subscribed++
			case protocol.TypeError:
				var pe protocol.Error
				if json.Unmarshal(e.Data, &pe) != nil || pe.Code != protocol.ErrTooManyRooms || pe.Ref != fmt.Sprintf("s%d", 128+tooMany) {
					t.Fatalf("error %s, want too_many_rooms for s%d", encode(e), 128+tooMany)
				}
				tooMany++
			default:
				t.Fatalf("unexpected %s", encode(e))
			}
		}
		if subscribed != 128 || tooMany != 51 {
			t.Errorf("%d subscribed, %d too_many_rooms; want 128 and 51", subscribed, tooMany)
		}
		waitFor(t, "the flood's 128 rooms to be freed", func() bool {
			return h.Stats().Connections == 1 && h.Stats().Rooms == 1 && len(h.Rooms()) == 1
		})
		checkBystander(t, h, by, 1)
	})
}

// sized returns a valid publish of exactly n bytes.
func sized(n int) string {
	const head, tail = `{"type":"message","room":"big:2","id":"sized","data":"`, `"}`
	return head + bytesRepeat(n-len(head)-len(tail)) + tail
}

// TestEmptyCloseFrame: a close frame without a status code is answered
// with one without a code too: the server never puts 1005 on the wire.
func TestEmptyCloseFrame(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	rc, _ := rawDial(t, ts.addr, "/ws", nil, 0)
	rc.nextText()
	rc.writeFrame(frame{fin: true, op: 0x8, masked: true})
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if f.op == 0x8 {
			if len(f.payload) != 0 {
				t.Fatalf("close payload %q, want none", f.payload)
			}
			break
		}
	}
	waitFor(t, "the connection to be gone", func() bool { return ts.srv.Hub.Stats().Connections == 0 })
	// Counted as 1005 ("no status received"), not as a code 0.
	if closes := ts.srv.Hub.Stats().Closes; closes["1005"] != 1 || len(closes) != 1 {
		t.Errorf("Closes %v, want one 1005", closes)
	}
}
