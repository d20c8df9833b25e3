package transport_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// bpRoom is the room of the backpressure tests.
const bpRoom = "bp:1"

// A stalled client cannot answer pings: the slowest heartbeat keeps it from
// being closed with 4008 during a test (a first ping may come at once, so
// the pong timeout is what gives the grace).
const (
	quietHeartbeat   = 2 * time.Minute
	quietPongTimeout = time.Minute
)

// stalledMember joins bpRoom over a raw connection with a small receive
// buffer and then never reads again.
func stalledMember(t *testing.T, ts *testServer) *rawConn {
	t.Helper()
	rc, _ := rawDial(t, ts.addr, "/ws", nil, 4096)
	rc.nextText()
	rc.sendText(`{"type":"subscribe","id":"s","room":"` + bpRoom + `"}`)
	if _, e := rc.nextText(); e.Type != protocol.TypeSubscribed {
		t.Fatalf("stalled member: %s", encode(e))
	}
	return rc
}

// publishUntil publishes numbered ~1 KiB events to bpRoom from a WebSocket
// publisher (not a member) in batches of 100, checking after each batch
// that every publish was acknowledged and that member got the batch in
// order, until done reports true (then one more batch) or 20,000 events.
// It returns the number published.
func publishUntil(t *testing.T, ts *testServer, member *wsClient, done func() bool) int {
	t.Helper()
	pub := ts.dialWS(t)
	pad := bytesRepeat(1000)
	n, extra := 0, false
	for n < 20000 {
		for range 100 {
			pub.send(fmt.Sprintf(`{"type":"message","room":%q,"id":"p%d","data":{"n":%d,"pad":%q}}`, bpRoom, n, n, pad))
			n++
		}
		for range 100 {
			pub.expect(protocol.TypeAck) // the publish completed
		}
		for want := n - 100; want < n; want++ {
			e := member.expect("message")
			var d struct{ N int }
			if err := json.Unmarshal(e.Data, &d); err != nil || d.N != want {
				t.Fatalf("member got n=%d (%v), want %d", d.N, err, want)
			}
		}
		if extra {
			return n
		}
		extra = done()
	}
	t.Fatalf("condition not reached after %d events", n)
	return n
}

func TestSlowConsumerDisconnect(t *testing.T) {
	t.Parallel()
	// Default queue bounds. The stalled write must not time out before the
	// queue overflows, however slow the machine: a 30 s write timeout.
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{WriteTimeout: 30 * time.Second, HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	member := ts.dialWS(t)
	member.subscribe(bpRoom)
	slow := stalledMember(t, ts)

	n := publishUntil(t, ts, member, func() bool { return h.Stats().SlowConsumerDisconnects > 0 })
	t.Logf("slow consumer disconnected after at most %d events", n)
	// The disconnected client gets no more events: no drops are counted.
	if st := h.Stats(); st.SlowConsumerDisconnects != 1 || st.QueueDrops != 0 {
		t.Errorf("SlowConsumerDisconnects %d QueueDrops %d, want 1 and 0", st.SlowConsumerDisconnects, st.QueueDrops)
	}
	// Reading again, the client finds the events that were already on
	// their way, in order, then disconnect 4005 and the close frame.
	msgs := slow.expectClose(int(protocol.CloseSlowConsumer))
	d := lastDisconnect(t, msgs, protocol.CloseSlowConsumer)
	if !d.Reconnect {
		t.Error("a slow consumer should be told to reconnect (and recover)")
	}
	last := -1
	for _, e := range msgs[:len(msgs)-1] {
		var v struct{ N int }
		if e.Type != "message" || json.Unmarshal(e.Data, &v) != nil || v.N <= last {
			t.Fatalf("slow client got %s after n=%d", encode(e), last)
		}
		last = v.N
	}
	slow.writeFrame(frame{fin: true, op: 0x8, masked: true, payload: []byte{0x0f, 0xa5}}) // 4005 back
	waitFor(t, "the slow consumer to leave the room", func() bool { return h.RoomSize(bpRoom) == 1 && h.Stats().Connections == 2 })
	if n := h.Stats().Closes["4005"]; n != 1 {
		t.Errorf("Closes %v, want one 4005", h.Stats().Closes)
	}
	member.roundTrip("member still fine")
}

func TestSlowConsumerDropOldest(t *testing.T) {
	t.Parallel()
	// The stalled write must outlast the test: a 30 s write timeout.
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{SlowConsumerPolicy: transport.PolicyDropOldest, WriteTimeout: 30 * time.Second, HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	member := ts.dialWS(t)
	member.subscribe(bpRoom)
	slow := stalledMember(t, ts)

	n := publishUntil(t, ts, member, func() bool { return h.Stats().QueueDrops > 0 })
	st := h.Stats()
	t.Logf("%d events published, %d dropped", n, st.QueueDrops)
	if st.SlowConsumerDisconnects != 0 || st.Closes["4005"] != 0 || h.RoomSize(bpRoom) != 2 {
		t.Fatalf("slow consumer disconnected under drop_oldest: %+v, room size %d", st, h.RoomSize(bpRoom))
	}
	// Reading again, the client gets a gapped but ordered stream that ends
	// with the newest event.
	last, got := -1, 0
	for last != n-1 {
		f, e := slow.nextText()
		if e.Type != "message" {
			t.Fatalf("slow client got %s (rsv %#x)", encode(e), f.rsv)
		}
		var d struct{ N int }
		if err := json.Unmarshal(e.Data, &d); err != nil || d.N <= last {
			t.Fatalf("slow client got n=%d after %d", d.N, last)
		}
		last = d.N
		got++
	}
	// Every missed event was a counted drop; a server ping (one per 25 s)
	// may have been dropped too.
	if missed, drops := uint64(n-got), h.Stats().QueueDrops; drops < missed || drops > missed+2 {
		t.Errorf("slow client got %d of %d events; QueueDrops says %d dropped", got, n, drops)
	}
	slow.sendText(`{"type":"ping","id":"after"}`)
	if _, e := slow.nextText(); e.Type != protocol.TypePong {
		t.Fatalf("after draining: %s", encode(e))
	}
}

// TestNoDataAfterCloseReply: when a client closes while events are queued
// for it and more keep coming, the server's close reply is still the last
// frame it sends (RFC 6455 5.5.1).
func TestNoDataAfterCloseReply(t *testing.T) {
	t.Parallel()
	// A queue big enough to hold more than the socket buffers do.
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{QueueMaxMessages: 20000, QueueMaxBytes: 32 << 20, HeartbeatInterval: quietHeartbeat, PongTimeout: quietPongTimeout}})
	h := ts.srv.Hub
	pad := json.RawMessage(fmt.Sprintf(`{"pad":%q}`, bytesRepeat(1000)))
	for try := range 3 {
		rc := stalledMember(t, ts)
		stop, published := make(chan struct{}), make(chan int, 1)
		go func() {
			n := 0
			defer func() { published <- n }()
			for ; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := h.Publish(t.Context(), bpRoom, "message", pad, hub.PublishOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		waitFor(t, "events to pile up", func() bool { return h.Stats().Publications >= uint64(3000*(try+1)) })
		rc.writeFrame(frame{fin: true, op: 0x8, masked: true, payload: []byte{0x03, 0xe8}})
		closed, frames := false, 0
		for {
			f, err := rc.readFrame()
			if err != nil {
				t.Logf("try %d: read ends: %v", try, err)
				break
			}
			if closed {
				t.Fatalf("try %d: frame op %#x after the close frame", try, f.op)
			}
			closed = f.op == 0x8
			frames++
		}
		close(stop)
		t.Logf("try %d: %d frames read, %d events published", try, frames, <-published)
		if !closed {
			t.Fatalf("try %d: no close frame", try)
		}
	}
}
