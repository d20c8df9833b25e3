package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

// fakeSink is a Sink that records what the hub sends. It can refuse frames
// (as a full queue would) and, like a transport, can report the connection
// gone after Close.
type fakeSink struct {
	mu     sync.Mutex
	frames []*protocol.Frame
	closes []protocol.Disconnect
	refuse bool

	// goneOnClose makes Close end the connection (Client.Gone) from another
	// goroutine, as a transport's read loop would.
	goneOnClose bool
	client      *Client
}

func (s *fakeSink) Send(f *protocol.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse {
		return false
	}
	s.frames = append(s.frames, f)
	return true
}

func (s *fakeSink) Close(d protocol.Disconnect) {
	s.mu.Lock()
	s.closes = append(s.closes, d)
	c, gone := s.client, s.goneOnClose
	s.mu.Unlock()
	if gone && c != nil {
		go c.Gone() // never inside the hub's locks
	}
}

func (s *fakeSink) setRefuse(v bool) {
	s.mu.Lock()
	s.refuse = v
	s.mu.Unlock()
}

func (s *fakeSink) frameList() []*protocol.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*protocol.Frame(nil), s.frames...)
}

func (s *fakeSink) closeList() []protocol.Disconnect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocol.Disconnect(nil), s.closes...)
}

// msg is a server message as a client reads it.
type msg struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Room   string          `json:"room"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data"`
	TS     int64           `json:"ts"`

	frame *protocol.Frame
}

func (s *fakeSink) msgs(t *testing.T) []msg {
	t.Helper()
	var out []msg
	for _, f := range s.frameList() {
		var m msg
		if err := json.Unmarshal(f.JSON, &m); err != nil {
			t.Fatalf("hub sent invalid JSON %q: %v", f.JSON, err)
		}
		m.frame = f
		out = append(out, m)
	}
	return out
}

// ofType returns the messages of type typ.
func (s *fakeSink) ofType(t *testing.T, typ string) []msg {
	t.Helper()
	var out []msg
	for _, m := range s.msgs(t) {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// one returns the single message of type typ, failing otherwise.
func (s *fakeSink) one(t *testing.T, typ string) msg {
	t.Helper()
	ms := s.ofType(t, typ)
	if len(ms) != 1 {
		t.Fatalf("got %d %q messages, want 1; all: %s", len(ms), typ, s.dump(t))
	}
	return ms[0]
}

func (s *fakeSink) count(t *testing.T, typ string) int { t.Helper(); return len(s.ofType(t, typ)) }

func (s *fakeSink) dump(t *testing.T) string {
	t.Helper()
	out := ""
	for _, f := range s.frameList() {
		out += "\n  " + string(f.JSON)
	}
	return out
}

// reset forgets what was recorded so far.
func (s *fakeSink) reset() {
	s.mu.Lock()
	s.frames = nil
	s.mu.Unlock()
}

func decodeData[T any](t *testing.T, m msg) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s data %s: %v", m.Type, m.Data, err)
	}
	return v
}

// newHub returns a running hub, on a fresh memory engine unless opts
// names one.
func newHub(t testing.TB, opts Options) *Hub {
	t.Helper()
	if opts.Engine == nil {
		opts.Engine = memory.New(memory.Options{})
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.Run(ctx); err != nil {
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = h.Engine().Close()
	})
	return h
}

// connect opens a connection for user ("" = anonymous).
func connect(t testing.TB, h *Hub, user string) (*Client, *fakeSink) {
	t.Helper()
	s := &fakeSink{}
	c := h.Connect(s, ConnectOptions{UserID: user, Heartbeat: 25 * time.Second})
	s.mu.Lock()
	s.client = c
	s.mu.Unlock()
	return c, s
}

// send hands the client a frame built with fmt.Sprintf.
func send(c *Client, format string, args ...any) {
	c.HandleMessage([]byte(fmt.Sprintf(format, args...)))
}

// subscribe subscribes c to room and checks the answer.
func subscribe(t *testing.T, c *Client, s *fakeSink, room string) protocol.SubscribedData {
	t.Helper()
	before := s.count(t, protocol.TypeSubscribed)
	send(c, `{"type":"subscribe","id":"sub-%s","room":%q}`, room, room)
	subs := s.ofType(t, protocol.TypeSubscribed)
	if len(subs) != before+1 {
		t.Fatalf("subscribe to %q: no subscribed answer; got:%s", room, s.dump(t))
	}
	return decodeData[protocol.SubscribedData](t, subs[len(subs)-1])
}

// errorsOf returns the data of the error events s received.
func errorsOf(t *testing.T, s *fakeSink) []protocol.Error {
	t.Helper()
	var out []protocol.Error
	for _, m := range s.ofType(t, protocol.TypeError) {
		e := decodeData[protocol.Error](t, m)
		if m.ID != e.Ref {
			t.Errorf("error envelope id %q differs from data.ref %q", m.ID, e.Ref)
		}
		out = append(out, e)
	}
	return out
}
