package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

// busEngine is a memory engine whose control messages reach every engine
// of its bus, as a cluster's broker would: enough for the session
// request/reply, which only uses the control channel.
type busEngine struct {
	*memory.Engine
	bus          *engineBus
	down         atomic.Bool  // a node that is gone: it neither sends nor hears
	fail         atomic.Bool  // PublishControl fails
	publishDelay atomic.Int64 // nanoseconds each Publish takes
	sends        atomic.Int64 // session_send messages published
}

type engineBus struct {
	mu      sync.Mutex
	engines []*busEngine
}

func (b *engineBus) add() *busEngine {
	e := &busEngine{Engine: memory.New(memory.Options{}), bus: b}
	b.mu.Lock()
	b.engines = append(b.engines, e)
	b.mu.Unlock()
	return e
}

func (e *busEngine) PublishControl(ctx context.Context, data []byte) error {
	if e.fail.Load() || e.down.Load() {
		return errBroker
	}
	if strings.Contains(string(data), `"op":"session_send"`) {
		e.sends.Add(1)
	}
	e.bus.mu.Lock()
	all := append([]*busEngine(nil), e.bus.engines...)
	e.bus.mu.Unlock()
	for _, o := range all {
		if !o.down.Load() {
			_ = o.Engine.PublishControl(ctx, data)
		}
	}
	return nil
}

func (e *busEngine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	time.Sleep(time.Duration(e.publishDelay.Load()))
	return e.Engine.Publish(ctx, room, pub, opts)
}

// Not local: the hub must look for sessions on other nodes.
func (e *busEngine) Local() bool { return false }

// sessionConnect opens an emulated connection on h.
func sessionConnect(t *testing.T, h *Hub) (*Client, *fakeSink, string) {
	t.Helper()
	s := &fakeSink{}
	c := h.Connect(s, ConnectOptions{UserID: "u", Heartbeat: 25 * time.Second, Session: true, Transport: "http_stream"})
	ce := decodeData[protocol.ConnectionEstablished](t, s.one(t, protocol.TypeConnectionEstablished))
	if ce.Transport != "http_stream" || !strings.HasPrefix(ce.Session, c.ID()+".") {
		t.Fatalf("connection_established %+v", ce)
	}
	return c, s, ce.Session
}

func pings(n int) [][]byte { return paddedPings(n, 0) }

// paddedPings are pings p0..p(n-1) carrying pad bytes of data each.
func paddedPings(n, pad int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf(`{"type":"ping","id":"p%d","data":%q}`, i, strings.Repeat("x", pad)))
	}
	return out
}

// pongsInOrder checks that s got n pongs, p0 to p(n-1).
func pongsInOrder(t *testing.T, s *fakeSink, n int) {
	t.Helper()
	ps := s.ofType(t, protocol.TypePong)
	if len(ps) != n {
		t.Fatalf("%d pongs, want %d:%s", len(ps), n, s.dump(t))
	}
	for i, p := range ps {
		if p.ID != fmt.Sprintf("p%d", i) {
			t.Fatalf("pong %d is %q: out of order", i, p.ID)
		}
	}
}

func TestDeliverToSessionLocal(t *testing.T) {
	h := newHub(t, Options{})
	_, s, session := sessionConnect(t, h)
	if err := h.DeliverToSession(context.Background(), session, pings(MaxSessionFrames)); err != nil {
		t.Fatal(err)
	}
	pongsInOrder(t, s, MaxSessionFrames)
	if err := h.DeliverToSession(context.Background(), session, pings(MaxSessionFrames+1)); err == nil || errors.Is(err, ErrUnknownSession) {
		t.Errorf("%d frames: %v", MaxSessionFrames+1, err)
	}
	// A plain connection has no session; a wrong secret, a malformed
	// string or an unknown id is unknown, at once on a one-node engine.
	plain, _ := connect(t, h, "v")
	id, secret, _ := strings.Cut(session, ".")
	start := time.Now()
	for _, bad := range []string{plain.ID() + "." + secret, id + "." + strings.Repeat("A", len(secret)), "x", "", id, "0123456789abcdef." + secret} {
		if err := h.DeliverToSession(context.Background(), bad, pings(1)); !errors.Is(err, ErrUnknownSession) {
			t.Errorf("session %q: %v, want ErrUnknownSession", bad, err)
		}
	}
	if time.Since(start) > time.Second {
		t.Errorf("unknown sessions on a local engine took %s", time.Since(start))
	}
	pongsInOrder(t, s, MaxSessionFrames)
}

func TestSessionWithoutToken(t *testing.T) {
	auth := AuthOptions{Authenticator: expiryAuth{}}
	h := newHub(t, Options{Auth: auth})
	s := &fakeSink{}
	h.Connect(s, ConnectOptions{Session: true})
	if cl := s.closeList(); len(cl) != 1 || cl[0].Code != protocol.CloseUnauthorized {
		t.Errorf("closes %+v, want 4001 at once", cl)
	}
	auth.AllowAnonymous = true
	h = newHub(t, Options{Auth: auth})
	s = &fakeSink{}
	h.Connect(s, ConnectOptions{Session: true})
	if ce := decodeData[protocol.ConnectionEstablished](t, s.one(t, protocol.TypeConnectionEstablished)); !strings.HasPrefix(ce.UserID, "anon-") || ce.Session == "" {
		t.Errorf("connection_established %+v", ce)
	}
}

// Two nodes on one bus: a delivery asked of B for a session on A.
func TestDeliverToSessionAcrossNodes(t *testing.T) {
	bus := &engineBus{}
	ea, eb := bus.add(), bus.add()
	a := newHub(t, Options{Engine: ea, NodeID: "a", SessionTimeout: 300 * time.Millisecond})
	b := newHub(t, Options{Engine: eb, NodeID: "b", SessionTimeout: 300 * time.Millisecond})
	c, s, session := sessionConnect(t, a)
	ctx := context.Background()

	if err := b.DeliverToSession(ctx, session, pings(10)); err != nil {
		t.Fatal(err)
	}
	pongsInOrder(t, s, 10)
	// 64 frames of 16 KiB: several requests (a broker caps a message),
	// still in order.
	s.reset()
	before := eb.sends.Load()
	if err := b.DeliverToSession(ctx, session, paddedPings(MaxSessionFrames, 16<<10)); err != nil {
		t.Fatal(err)
	}
	pongsInOrder(t, s, MaxSessionFrames)
	if n := eb.sends.Load() - before; n < 4 || n > 8 {
		t.Errorf("1 MiB of frames went as %d requests, want 4 or 5 of at most 256 KiB", n)
	}
	s.reset()

	// The owner says no at once to a wrong secret.
	id, secret, _ := strings.Cut(session, ".")
	start := time.Now()
	if err := b.DeliverToSession(ctx, id+"."+strings.Repeat("A", len(secret)), pings(1)); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("wrong secret: %v", err)
	}
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Errorf("wrong secret answered after %s, want the owner's answer before the timeout", d)
	}
	// Nobody owns this one: unknown after the timeout, not sooner, not
	// hanging.
	start = time.Now()
	if err := b.DeliverToSession(ctx, "0123456789abcdef."+secret, pings(1)); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("owned by nobody: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("owned by nobody: answered after %s, want about the 300ms timeout", d)
	}

	// Frames that take longer than the timeout: the owner says it is
	// working, and the asker waits for it.
	ea.publishDelay.Store(int64(700 * time.Millisecond))
	pub := []byte(`{"type":"publish","id":"slow","room":"r","data":{}}`)
	if err := b.DeliverToSession(ctx, session, [][]byte{pub}); err != nil {
		t.Errorf("slow frames: %v", err)
	}
	if acks := s.ofType(t, protocol.TypeAck); len(acks) != 1 || acks[0].ID != "slow" {
		t.Errorf("acks:%s", s.dump(t))
	}
	ea.publishDelay.Store(0)

	// The bounds: an owner running as many remote deliveries as it takes
	// says busy; an asker with as many requests waiting refuses at once.
	for range cap(a.sessions.running) {
		a.sessions.running <- struct{}{}
	}
	if err := b.DeliverToSession(ctx, session, pings(1)); !errors.Is(err, ErrSessionBusy) {
		t.Errorf("owner at its bound: %v", err)
	}
	for range cap(a.sessions.running) {
		<-a.sessions.running
	}
	b.sessions.mu.Lock()
	for i := range maxSessionPending {
		b.sessions.pending[fmt.Sprint("fake", i)] = make(chan sessionReply, 2)
	}
	b.sessions.mu.Unlock()
	if err := b.DeliverToSession(ctx, session, pings(1)); !errors.Is(err, ErrSessionBusy) {
		t.Errorf("asker at its bound: %v", err)
	}
	b.sessions.mu.Lock()
	clear(b.sessions.pending)
	b.sessions.mu.Unlock()

	// A broker failure is an error, not an unknown session.
	eb.fail.Store(true)
	if err := b.DeliverToSession(ctx, session, pings(1)); err == nil || errors.Is(err, ErrUnknownSession) || !errors.Is(err, errBroker) {
		t.Errorf("broker down: %v", err)
	}
	eb.fail.Store(false)

	// The session's node is gone: unknown after the timeout.
	ea.down.Store(true)
	start = time.Now()
	if err := b.DeliverToSession(ctx, session, pings(1)); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("node gone: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("node gone: answered after %s", d)
	}
	ea.down.Store(false)

	// The connection ended: unknown.
	c.Gone()
	if err := b.DeliverToSession(ctx, session, pings(1)); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("ended: %v", err)
	}
	// A context that ends first.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.DeliverToSession(cctx, session, pings(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller's deadline: %v", err)
	}
	b.sessions.mu.Lock()
	left := len(b.sessions.pending)
	b.sessions.mu.Unlock()
	if left != 0 {
		t.Errorf("%d pending requests left", left)
	}
}

// Garbage on the control channel (a peer of another version, a bug)
// neither panics nor reaches a connection.
func TestSessionControlGarbage(t *testing.T) {
	h := newHub(t, Options{})
	c, s, session := sessionConnect(t, h)
	id, secret, _ := strings.Cut(session, ".")
	eh := (*engineHandler)(h)
	for _, m := range []any{
		control{Op: "session_send", Conn: id, Secret: secret}, // no request id, no node
		control{Op: "session_send", Conn: id, Secret: "wrong", Req: "r", Node: "n", Frames: []json.RawMessage{json.RawMessage(`{"type":"ping"}`)}},
		control{Op: "session_reply", Node: h.NodeID(), Req: "nobody-waits", Status: "done"},
		control{Op: "session_reply"},
	} {
		b, _ := json.Marshal(m)
		eh.HandleControl(b)
	}
	time.Sleep(50 * time.Millisecond)
	if n := s.count(t, protocol.TypePong); n != 0 {
		t.Errorf("%d pongs from garbage", n)
	}
	_ = c
}
