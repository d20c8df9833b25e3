package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// testServer is a Switchboard node on loopback, drained when the test ends.
type testServer struct {
	t      *testing.T
	srv    *server.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startServer runs a node on addr ("" for a free port).
func startServer(t *testing.T, addr string, cfg server.Config) *testServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg.NoDemo = true
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // re-listening on a just-freed port can race its release
		ln, err = net.Listen("tcp", addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cancel()
		t.Fatalf("listen %s: %v", addr, err)
	}
	ts := &testServer{t: t, srv: srv, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) url() string { return "ws://" + ts.addr + "/ws" }

// stop drains the node and waits for Serve to return. Safe to call twice.
func (ts *testServer) stop() {
	ts.t.Helper()
	ts.once.Do(func() {
		ts.cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				ts.t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			ts.t.Errorf("Serve did not return within 15 s of cancel")
		}
	})
}

// disconnect closes one connection from the server side with code.
func (ts *testServer) disconnect(connID string, code protocol.CloseCode) {
	ts.t.Helper()
	if err := ts.srv.Hub.DisconnectConn(context.Background(), connID, protocol.NewDisconnect(code, "")); err != nil {
		ts.t.Fatalf("DisconnectConn: %v", err)
	}
}

// publish publishes from the server API.
func (ts *testServer) publish(room string, data any) string {
	ts.t.Helper()
	b, _ := json.Marshal(data)
	res, err := ts.srv.Hub.Publish(context.Background(), room, "message", b, hub.PublishOptions{})
	if err != nil {
		ts.t.Fatalf("Publish: %v", err)
	}
	return res.EventID
}

// fast makes reconnects quick; tests never assert on the delays.
func fast(o *Options) *Options {
	if o == nil {
		o = &Options{}
	}
	o.InitialDelay = 5 * time.Millisecond
	o.MaxDelay = 50 * time.Millisecond
	return o
}

// connect returns a connected client, closed when the test ends.
func connect(t *testing.T, url string, opts *Options) *Client {
	t.Helper()
	c := New(url, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("Done not closed 10 s after Close")
		}
	})
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder collects events and wakes waiters.
type recorder struct {
	mu     sync.Mutex
	events []Event
	signal chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) handle(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// wait waits until cond holds for the events so far, or fails the test.
func (r *recorder) wait(t *testing.T, what string, cond func([]Event) bool) []Event {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		if ev := r.snapshot(); cond(ev) {
			return ev
		}
		select {
		case <-r.signal:
		case <-deadline.C:
			ev := r.snapshot()
			t.Fatalf("timed out waiting for %s; have %d events, the last: %v", what, len(ev), ev[max(0, len(ev)-3):])
		}
	}
}

// messages keeps the "message" events (no join/leave notices).
func messages(ev []Event) []Event {
	var out []Event
	for _, e := range ev {
		if e.Type == "message" {
			out = append(out, e)
		}
	}
	return out
}

func countMessages(n int) func([]Event) bool {
	return func(ev []Event) bool { return len(messages(ev)) >= n }
}

// numbers decodes {"n": N} payloads.
func numbers(t *testing.T, ev []Event) []int {
	t.Helper()
	out := make([]int, 0, len(ev))
	for _, e := range messages(ev) {
		var v struct{ N int }
		if err := json.Unmarshal(e.Data, &v); err != nil {
			t.Fatalf("event data %s: %v", e.Data, err)
		}
		out = append(out, v.N)
	}
	return out
}

// checkSequence fails unless got is exactly from..to in order.
func checkSequence(t *testing.T, who string, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Errorf("%s: got %d events, want %d (%d..%d)", who, len(got), to-from+1, from, to)
	}
	for i, n := range got {
		if n != from+i {
			t.Errorf("%s: event %d is n=%d, want %d (sequence broken: duplicate, gap or reorder)", who, i, n, from+i)
			return
		}
	}
}

// stateLog records OnState calls.
type stateLog struct {
	mu     sync.Mutex
	states []State
	errs   []error
	signal chan struct{}
}

func newStateLog() *stateLog { return &stateLog{signal: make(chan struct{}, 1)} }

func (l *stateLog) record(s State, err error) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.errs = append(l.errs, err)
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// waitFor waits for the n-th time state s is entered (1-based) and returns
// the error it came with.
func (l *stateLog) waitFor(t *testing.T, s State, n int) error {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		seen := 0
		for i, st := range l.states {
			if st == s {
				seen++
				if seen == n {
					err := l.errs[i]
					l.mu.Unlock()
					return err
				}
			}
		}
		states := append([]State(nil), l.states...)
		l.mu.Unlock()
		select {
		case <-l.signal:
		case <-deadline.C:
			t.Fatalf("timed out waiting for state %s #%d; states so far: %v", s, n, states)
		}
	}
}

func closeCodeOf(err error) protocol.CloseCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// waitOpens waits until the client has opened n connections and is open.
func waitOpens(t *testing.T, c *Client, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, opens, st := c.connInfo()
		if opens >= n && st == StateOpen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client did not open connection #%d within 15 s (opens %d, state %s)", n, opens, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestConnectSubscribePublish(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	states := newStateLog()
	c := connect(t, ts.url(), &Options{OnState: states.record})
	ctx := ctxT(t)

	if c.State() != StateOpen {
		t.Fatalf("State after Connect = %s, want open", c.State())
	}
	if c.UserID() == "" || c.ConnectionID() == "" {
		t.Fatalf("UserID %q, ConnectionID %q: want both from connection_established", c.UserID(), c.ConnectionID())
	}
	if err := states.waitFor(t, StateOpen, 1); err != nil {
		t.Fatalf("OnState(open) err = %v", err)
	}

	rec := newRecorder()
	sub, err := c.Subscribe(ctx, "chat:1", rec.handle)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if sub.Room() != "chat:1" {
		t.Errorf("Room() = %q", sub.Room())
	}
	if _, err := c.Subscribe(ctx, "chat:1", rec.handle); !errors.Is(err, ErrAlreadySubscribed) {
		t.Errorf("second Subscribe: err = %v, want ErrAlreadySubscribed", err)
	}

	ack, err := c.Publish(ctx, "chat:1", "message", map[string]string{"text": "hello"})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, ok := protocol.ParseEventID(ack.EventID); !ok || ack.Duplicate {
		t.Fatalf("ack = %+v, want an event id and no duplicate", ack)
	}
	ev := messages(rec.wait(t, "the published event", countMessages(1)))[0]
	if ev.ID != ack.EventID || ev.Room != "chat:1" || ev.UserID != c.UserID() || string(ev.Data) != `{"text":"hello"}` || ev.TS == 0 {
		t.Errorf("event = %+v, want id %s from user %s with the published data", ev, ack.EventID, c.UserID())
	}

	page, err := c.History(ctx, "chat:1", "", 10)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(page.Events) != 1 || page.Events[0].ID != ack.EventID || page.Position != ack.EventID || !page.Complete {
		t.Errorf("history = %+v, want the one event", page)
	}

	pres, err := c.Presence(ctx, "chat:1", false)
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	if pres.Clients != 1 || pres.Users != 1 || len(pres.Members) != 1 || pres.Members[0].ConnectionID != c.ConnectionID() {
		t.Errorf("presence = %+v, want this connection alone", pres)
	}
	counts, err := c.Presence(ctx, "chat:1", true)
	if err != nil || counts.Clients != 1 || counts.Members != nil {
		t.Errorf("counts-only presence = %+v, %v", counts, err)
	}

	if err := sub.Unsubscribe(ctx); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := sub.Unsubscribe(ctx); err != nil {
		t.Errorf("second Unsubscribe: %v", err)
	}
	// After Unsubscribe the handler hears nothing; a marker on a second
	// subscription proves the later event was delivered to the client.
	marker := newRecorder()
	if _, err := c.Subscribe(ctx, "chat:2", marker.handle); err != nil {
		t.Fatalf("Subscribe chat:2: %v", err)
	}
	ts.publish("chat:1", map[string]int{"n": 2})
	ts.publish("chat:2", map[string]int{"n": 1})
	marker.wait(t, "the marker", countMessages(1))
	if n := len(messages(rec.snapshot())); n != 1 {
		t.Errorf("handler got %d messages, want 1: events after Unsubscribe were delivered", n)
	}
	// The room can be subscribed again.
	if _, err := c.Subscribe(ctx, "chat:1", rec.handle); err != nil {
		t.Fatalf("re-Subscribe: %v", err)
	}
}

func TestTwoClientsExchangeInOrder(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	const n = 200
	a, b := connect(t, ts.url(), nil), connect(t, ts.url(), nil)
	ra, rb := newRecorder(), newRecorder()
	if _, err := a.Subscribe(ctx, "room", ra.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, "room", rb.handle); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		c    *Client
		name string
	}{{a, "a"}, {b, "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= n; i++ {
				if _, err := p.c.Publish(ctx, "room", "message", map[string]any{"from": p.name, "n": i}); err != nil {
					t.Errorf("%s: Publish %d: %v", p.name, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evA := messages(ra.wait(t, "all events at a", countMessages(2*n)))
	evB := messages(rb.wait(t, "all events at b", countMessages(2*n)))
	if len(evA) != 2*n || len(evB) != 2*n {
		t.Fatalf("a got %d, b got %d events, want %d each", len(evA), len(evB), 2*n)
	}
	// Both see the room's one order, and each sender's events in the order
	// they were sent.
	for i := range evA {
		if evA[i].ID != evB[i].ID {
			t.Fatalf("event %d: a has %s, b has %s: the clients disagree on the order", i, evA[i].ID, evB[i].ID)
		}
	}
	next := map[string]int{"a": 1, "b": 1}
	var prev uint64
	for _, e := range evA {
		p, _ := protocol.ParseEventID(e.ID)
		if p.Offset <= prev {
			t.Fatalf("offsets not increasing: %d after %d", p.Offset, prev)
		}
		prev = p.Offset
		var v struct {
			From string
			N    int
		}
		_ = json.Unmarshal(e.Data, &v)
		if v.N != next[v.From] {
			t.Fatalf("from %s: got n=%d, want %d", v.From, v.N, next[v.From])
		}
		next[v.From]++
	}
}

// TestRecoverAfterServerClose: the server closes the connection with a
// code that calls for a reconnect; events published meanwhile are
// replayed: exactly the missed ones, in order, recovered (no notice).
func TestRecoverAfterServerClose(t *testing.T) {
	for _, code := range []protocol.CloseCode{protocol.CloseServiceRestart, protocol.CloseSlowConsumer, protocol.CloseHeartbeatTimeout, protocol.CloseInternalError} {
		t.Run(strconv.Itoa(int(code)), func(t *testing.T) {
			ts := startServer(t, "", server.Config{})
			ctx := ctxT(t)
			states := newStateLog()
			gate := make(chan struct{})
			c := New(ts.url(), fast(&Options{OnState: states.record}))
			// Hold the reconnect until the test has published while the
			// client was away.
			c.sleep = func(ctx context.Context, d time.Duration) error {
				select {
				case <-gate:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rec := newRecorder()
			if _, err := c.Subscribe(ctx, "feed", rec.handle); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				ts.publish("feed", map[string]int{"n": i})
			}
			rec.wait(t, "events 1-3", countMessages(3))
			ts.disconnect(c.ConnectionID(), code)
			if got := closeCodeOf(states.waitFor(t, StateReconnecting, 1)); got != code {
				t.Fatalf("reconnecting after close code %d, want %d", got, code)
			}
			for i := 4; i <= 8; i++ {
				ts.publish("feed", map[string]int{"n": i})
			}
			close(gate)
			states.waitFor(t, StateOpen, 2)
			ts.publish("feed", map[string]int{"n": 9}) // live again
			ev := rec.wait(t, "events 1-9", countMessages(9))
			checkSequence(t, "client", numbers(t, ev), 1, 9)
			for _, e := range ev {
				if e.RecoveryFailed {
					t.Errorf("got a RecoveryFailed notice; the server still had every missed event")
				}
			}
		})
	}
}

// TestRecoverAfterConnectionCut: the connection dies without a close
// frame (1006).
func TestRecoverAfterConnectionCut(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	states := newStateLog()
	gate := make(chan struct{})
	c := New(ts.url(), fast(&Options{OnState: states.record}))
	c.sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := newRecorder()
	if _, err := c.Subscribe(ctx, "feed", rec.handle); err != nil {
		t.Fatal(err)
	}
	ts.publish("feed", map[string]int{"n": 1})
	rec.wait(t, "event 1", countMessages(1))
	c.killConn()
	if got := closeCodeOf(states.waitFor(t, StateReconnecting, 1)); got != 1006 {
		t.Fatalf("close code %d, want 1006", got)
	}
	for i := 2; i <= 4; i++ {
		ts.publish("feed", map[string]int{"n": i})
	}
	close(gate)
	checkSequence(t, "client", numbers(t, rec.wait(t, "events 1-4", countMessages(4))), 1, 4)
}

// TestReconnectToNewServer: the server stops (1012) and a new one with
// empty memory starts on the same address. The client reconnects and
// re-subscribes, but the room's stream is a new epoch: the handler gets a
// RecoveryFailed notice, then the new server's events.
func TestReconnectToNewServer(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	states := newStateLog()
	c := connect(t, ts.url(), fast(&Options{OnState: states.record}))
	rec := newRecorder()
	if _, err := c.Subscribe(ctx, "feed", rec.handle); err != nil {
		t.Fatal(err)
	}
	ts.publish("feed", map[string]int{"n": 1})
	rec.wait(t, "event 1", countMessages(1))

	ts.stop()
	if got := closeCodeOf(states.waitFor(t, StateReconnecting, 1)); got != protocol.CloseServiceRestart {
		t.Fatalf("close code %d, want 1012 from the drain", got)
	}
	ts2 := startServer(t, ts.addr, server.Config{})
	states.waitFor(t, StateOpen, 2)
	ev := rec.wait(t, "the RecoveryFailed notice", func(ev []Event) bool {
		return len(ev) > 0 && ev[len(ev)-1].RecoveryFailed
	})
	notice := ev[len(ev)-1]
	if notice.Type != protocol.TypeSubscribed || notice.Room != "feed" {
		t.Errorf("notice = %+v", notice)
	}
	id := ts2.publish("feed", map[string]int{"n": 2})
	ev = rec.wait(t, "event 2", countMessages(2))
	last := messages(ev)[1]
	if last.ID != id {
		t.Errorf("event after the notice has id %s, want %s", last.ID, id)
	}
	p1, _ := protocol.ParseEventID(messages(ev)[0].ID)
	p2, _ := protocol.ParseEventID(id)
	if p1.Epoch == p2.Epoch {
		t.Errorf("both servers used epoch %s; the test needs a new one", p1.Epoch)
	}
	checkSequence(t, "client", numbers(t, ev), 1, 2)
}

// TestPublishRetriedAcrossReconnect: the server takes a publish but its
// ack is lost with the connection; after the reconnect the client sends
// it again with the same id, and the event is delivered once.
func TestPublishRetriedAcrossReconnect(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	watcher := connect(t, ts.url(), nil)
	seen := newRecorder()
	if _, err := watcher.Subscribe(ctx, "room", seen.handle); err != nil {
		t.Fatal(err)
	}
	c := connect(t, ts.url(), fast(nil))
	c.deafen() // this connection hears nothing: the ack will not arrive

	type res struct {
		ack Ack
		err error
	}
	done := make(chan res, 1)
	go func() {
		ack, err := c.Publish(ctx, "room", "message", map[string]int{"n": 1})
		done <- res{ack, err}
	}()
	first := messages(seen.wait(t, "the event", countMessages(1)))[0]
	c.killConn()
	r := <-done
	if r.err != nil {
		t.Fatalf("Publish: %v", r.err)
	}
	if r.ack.EventID != first.ID || !r.ack.Duplicate {
		t.Errorf("ack = %+v, want event %s marked duplicate (the re-send was deduplicated)", r.ack, first.ID)
	}
	// A later event from the same client proves the watcher has seen
	// everything before it.
	if _, err := c.Publish(ctx, "room", "message", map[string]int{"n": 2}); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, "watcher", numbers(t, seen.wait(t, "event 2", countMessages(2))), 1, 2)
}

// TestCloseCodeDecisions runs the decision table against a real server
// for codes of each kind.
func TestCloseCodeDecisions(t *testing.T) {
	cases := []struct {
		code      protocol.CloseCode
		reconnect bool
	}{
		{protocol.CloseNormal, false},
		{protocol.CloseKicked, false},
		{protocol.CloseUnauthorized, false},
		{protocol.CloseForbidden, false},
		{protocol.CloseBanned, false},
		{protocol.ClosePolicyViolation, false},
		{protocol.CloseTryAgainLater, true},
		{protocol.CloseHeartbeatTimeout, true},
	}
	ts := startServer(t, "", server.Config{})
	for _, tc := range cases {
		t.Run(strconv.Itoa(int(tc.code)), func(t *testing.T) {
			states := newStateLog()
			var errs []error
			var mu sync.Mutex
			c := connect(t, ts.url(), fast(&Options{OnState: states.record, OnError: func(err error) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}}))
			ts.disconnect(c.ConnectionID(), tc.code)
			if tc.reconnect {
				if got := closeCodeOf(states.waitFor(t, StateReconnecting, 1)); got != tc.code {
					t.Fatalf("reconnecting with code %d, want %d", got, tc.code)
				}
				waitOpens(t, c, 2)
				return
			}
			err := states.waitFor(t, StateClosed, 1)
			if closeCodeOf(err) != tc.code {
				t.Fatalf("closed with %v, want close code %d", err, tc.code)
			}
			<-c.Done()
			if closeCodeOf(c.Err()) != tc.code {
				t.Errorf("Err() = %v, want code %d", c.Err(), tc.code)
			}
			if _, opens, _ := c.connInfo(); opens != 1 {
				t.Errorf("%d connections opened, want 1 (no reconnect)", opens)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) != 1 || closeCodeOf(errs[0]) != tc.code {
				t.Errorf("OnError got %v, want the close error once", errs)
			}
			if _, err := c.Publish(ctxT(t), "room", "", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Publish after stop: %v, want ErrClosed", err)
			}
		})
	}
}

// TestSessionExpiredRefreshesToken: close 4000 makes the client ask
// GetToken for a new token and reconnect with it.
func TestSessionExpiredRefreshesToken(t *testing.T) {
	for _, inQuery := range []bool{false, true} {
		t.Run(fmt.Sprintf("inQuery=%v", inQuery), func(t *testing.T) {
			ts := startServer(t, "", server.Config{})
			// A front handler records what each handshake carried.
			var mu sync.Mutex
			var auths []string
			front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				if inQuery {
					auths = append(auths, r.URL.Query().Get("token"))
				} else {
					auths = append(auths, r.Header.Get("Authorization"))
				}
				mu.Unlock()
				ts.srv.Handler().ServeHTTP(w, r)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = front.Serve(ln) }()
			defer front.Close()

			var calls int
			opts := fast(&Options{TokenInQuery: inQuery, GetToken: func(ctx context.Context) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				return "tok" + strconv.Itoa(calls), nil
			}})
			c := connect(t, "ws://"+ln.Addr().String()+"/ws", opts)
			ts.disconnect(c.ConnectionID(), protocol.CloseSessionExpired)
			waitOpens(t, c, 2)
			mu.Lock()
			defer mu.Unlock()
			want := []string{"Bearer tok1", "Bearer tok2"}
			if inQuery {
				want = []string{"tok1", "tok2"}
			}
			if calls != 2 || len(auths) != 2 || auths[0] != want[0] || auths[1] != want[1] {
				t.Errorf("GetToken called %d times; handshakes carried %q, want %q", calls, auths, want)
			}
		})
	}
}

func TestGetTokenUnauthorizedStops(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	c := New(ts.url(), fast(&Options{GetToken: func(ctx context.Context) (string, error) {
		return "", fmt.Errorf("user logged out: %w", ErrUnauthorized)
	}}))
	err := c.Connect(ctxT(t))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Connect: %v, want ErrUnauthorized", err)
	}
	<-c.Done()
	if c.State() != StateClosed {
		t.Errorf("state %s, want closed", c.State())
	}
}

func TestHandshakeRefusedIsPermanent(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	c := New("ws://"+ts.addr+"/no-such-path", fast(nil))
	err := c.Connect(ctxT(t))
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Fatalf("Connect: %v, want a HandshakeError with 404", err)
	}
	if !errors.As(c.Err(), &he) {
		t.Errorf("Err() = %v, want the handshake error", c.Err())
	}
	if err := New("ftp://x/", nil).Connect(ctxT(t)); err == nil {
		t.Errorf("Connect with an ftp URL succeeded")
	}
}

func TestServerErrors(t *testing.T) {
	ts := startServer(t, "", server.Config{Hub: hub.Options{MaxRoomsPerClient: 1, NoHistory: true}})
	ctx := ctxT(t)
	errc := make(chan error, 4)
	c := connect(t, ts.url(), &Options{OnError: func(err error) { errc <- err }})
	rec := newRecorder()
	if _, err := c.Subscribe(ctx, "a", rec.handle); err != nil {
		t.Fatal(err)
	}
	var se *ServerError
	_, err := c.Subscribe(ctx, "b", rec.handle)
	if !errors.As(err, &se) || se.Code != protocol.ErrTooManyRooms {
		t.Fatalf("second room: %v, want ServerError too_many_rooms", err)
	}
	// The refused subscription is gone: subscribing again gets the same
	// answer from the server rather than ErrAlreadySubscribed.
	if _, err := c.Subscribe(ctx, "b", rec.handle); !errors.As(err, &se) {
		t.Fatalf("again: %v, want ServerError", err)
	}
	if _, err := c.History(ctx, "a", "", 0); !errors.As(err, &se) || se.Code != protocol.ErrNotImplemented {
		t.Errorf("History with history off: %v, want ServerError not_implemented", err)
	}
	// An error about no request goes to OnError.
	if err := c.Send(ctx, json.RawMessage(`{"type":"ack"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.As(err, &se) || se.Code != protocol.ErrUnknownType {
			t.Errorf("OnError got %v, want ServerError unknown_type", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnError call")
	}
	var re *RPCError
	if _, err := c.RPC(ctx, "no_such_method", nil); !errors.As(err, &re) || re.Code != -32601 {
		t.Errorf("RPC of an unknown method: %v, want RPCError -32601", err)
	}
	// Local checks.
	for name, f := range map[string]func() error{
		"publish bad room":    func() error { _, err := c.Publish(ctx, "bad room", "", nil); return err },
		"publish reserved":    func() error { _, err := c.Publish(ctx, "a", "subscribe", nil); return err },
		"publish unencodable": func() error { _, err := c.Publish(ctx, "a", "", func() {}); return err },
		"subscribe nil":       func() error { _, err := c.Subscribe(ctx, "x", nil); return err },
		"subscribe bad room":  func() error { _, err := c.Subscribe(ctx, ":x", rec.handle); return err },
		"history bad limit":   func() error { _, err := c.History(ctx, "a", "", -1); return err },
		"presence bad room":   func() error { _, err := c.Presence(ctx, "", false); return err },
		"send not json":       func() error { return c.Send(ctx, json.RawMessage(`hello`)) },
		"send not object":     func() error { return c.Send(ctx, json.RawMessage(`[1]`)) },
		"connect twice":       func() error { return c.Connect(ctx) },
		"rpc no method":       func() error { _, err := c.RPC(ctx, "", nil); return err },
		"rpc unencodable":     func() error { _, err := c.RPC(ctx, "m", func() {}); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestSendRepliesGoToOnEvent: a raw request's reply reaches OnEvent, a
// raw JSON-RPC answer included.
func TestSendRepliesGoToOnEvent(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	rec := newRecorder()
	c := connect(t, ts.url(), &Options{OnEvent: rec.handle})
	if err := c.Send(ctxT(t), json.RawMessage(`{"type":"ping","id":"p1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctxT(t), json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"presence","params":{"room":"r"}}`)); err != nil {
		t.Fatal(err)
	}
	ev := rec.wait(t, "two answers", func(ev []Event) bool { return len(ev) >= 2 })
	if ev[0].Type != "pong" || ev[0].ID != "p1" {
		t.Errorf("OnEvent got %+v, want pong p1", ev[0])
	}
	var rpc struct {
		ID     int
		Result struct{ Clients int }
	}
	if ev[1].Type != protocol.TypeJSONRPC || json.Unmarshal(ev[1].Data, &rpc) != nil || rpc.ID != 7 {
		t.Errorf("OnEvent got %s %s, want the raw JSON-RPC answer with id 7", ev[1].Type, ev[1].Data)
	}
}

func TestRPC(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	c := connect(t, ts.url(), fast(nil))
	if _, err := c.Subscribe(ctx, "r", func(Event) {}); err != nil {
		t.Fatal(err)
	}
	res, err := c.RPC(ctx, "presence", map[string]any{"room": "r"})
	if err != nil {
		t.Fatalf("RPC presence: %v", err)
	}
	var info PresenceInfo
	if err := json.Unmarshal(res, &info); err != nil || info.Clients != 1 {
		t.Errorf("RPC presence = %s, want one client", res)
	}
	var re *RPCError
	if _, err := c.RPC(ctx, "presence", map[string]any{}); !errors.As(err, &re) || re.Code != -32602 {
		t.Errorf("RPC presence without a room: %v, want RPCError -32602", err)
	}
	// A call sent on a connection that then breaks is not repeated.
	c.deafen()
	errc := make(chan error, 1)
	go func() {
		_, err := c.RPC(ctx, "presence", map[string]any{"room": "r"})
		errc <- err
	}()
	// The call is on the wire once it is pending and no longer queued.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		sent := len(c.pending) == 1 && len(c.queue) == 0
		c.mu.Unlock()
		if sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the RPC was not sent")
		}
		time.Sleep(time.Millisecond)
	}
	c.killConn()
	if err := <-errc; !errors.Is(err, ErrConnectionLost) {
		t.Errorf("RPC across a lost connection: %v, want ErrConnectionLost", err)
	}
}

// TestQueueBound: sends made before the connection opens are queued up to
// QueueSize, then refused; the queue is flushed in order on open.
func TestQueueBound(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	rec := newRecorder()
	c := New(ts.url(), &Options{QueueSize: 3, OnEvent: rec.handle})
	defer c.Close()
	for i := 1; i <= 3; i++ {
		if err := c.Send(ctx, json.RawMessage(`{"type":"ping","id":"q`+strconv.Itoa(i)+`"}`)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := c.Send(ctx, json.RawMessage(`{"type":"ping","id":"q4"}`)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th send: %v, want ErrQueueFull", err)
	}
	if _, err := c.Publish(ctx, "room", "", nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("publish on a full queue: %v, want ErrQueueFull", err)
	}
	if _, err := c.Subscribe(ctx, "room", rec.handle); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("subscribe on a full queue: %v, want ErrQueueFull", err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	ev := rec.wait(t, "3 pongs", func(ev []Event) bool { return len(ev) >= 3 })
	for i, e := range ev {
		if e.Type != "pong" || e.ID != "q"+strconv.Itoa(i+1) {
			t.Errorf("event %d = %s %s, want pong q%d", i, e.Type, e.ID, i+1)
		}
	}
	// Once open the queue drains, so there is room again.
	if _, err := c.Publish(ctx, "room", "", nil); err != nil {
		t.Errorf("publish after open: %v", err)
	}
}

// TestClientHeartbeat: with PingInterval, a server that stops answering
// is given up after MaxMissedPongs and the client reconnects.
func TestClientHeartbeat(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	states := newStateLog()
	c := connect(t, ts.url(), fast(&Options{PingInterval: 20 * time.Millisecond, MaxMissedPongs: 2, OnState: states.record}))
	// Pongs come back while the server answers: no reconnect over a few
	// intervals. Then the connection goes deaf.
	c.deafen()
	err := states.waitFor(t, StateReconnecting, 1)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1006 {
		t.Fatalf("reconnect reason %v, want a 1006 for missed pongs", err)
	}
	waitOpens(t, c, 2)
}

func TestCompression(t *testing.T) {
	ts := startServer(t, "", server.Config{Transport: transport.Options{Compression: true}})
	ctx := ctxT(t)
	c := connect(t, ts.url(), &Options{Compression: true})
	rec := newRecorder()
	if _, err := c.Subscribe(ctx, "z", rec.handle); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 20000)
	for i := range big {
		big[i] = 'a' + byte(i%7)
	}
	if _, err := c.Publish(ctx, "z", "", string(big)); err != nil {
		t.Fatal(err)
	}
	ev := messages(rec.wait(t, "the event", countMessages(1)))[0]
	var s string
	if err := json.Unmarshal(ev.Data, &s); err != nil || s != string(big) {
		t.Errorf("payload came back changed (%d bytes, err %v)", len(s), err)
	}
}

// TestDedupeAtSeam feeds events straight into the router: events at or
// before the last position of the same epoch are dropped.
func TestDedupeAtSeam(t *testing.T) {
	c, s, rec, route := routerSub(t, protocol.StreamPosition{Epoch: "e", Offset: 5})
	for _, id := range []string{"e-4", "e-5", "e-6", "e-6", "e-7", "f-1", "f-1", "f-2", ""} {
		route(&protocol.Envelope{Type: "message", ID: id, Room: "r"})
	}
	ev := rec.wait(t, "5 events", func(ev []Event) bool { return len(ev) >= 5 })
	var got []string
	for _, e := range ev {
		got = append(got, e.ID)
	}
	want := []string{"e-6", "e-7", "f-1", "f-2", ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if c.dupes != 4 {
		t.Errorf("dropped %d, want 4", c.dupes)
	}
	// An inactive subscription (re-subscribing) gets nothing.
	c.mu.Lock()
	s.active = false
	c.mu.Unlock()
	route(&protocol.Envelope{Type: "message", ID: "f-3", Room: "r"})
	if n := len(rec.snapshot()); n != 5 {
		t.Errorf("inactive subscription got an event")
	}
}

// routerSub returns a client that is not connected with an active
// subscription to room "r" at last, its recorder, and a function that
// feeds an envelope into the client's router.
func routerSub(t *testing.T, last protocol.StreamPosition) (*Client, *Subscription, *recorder, func(*protocol.Envelope)) {
	c := New("ws://127.0.0.1:1/ws", nil)
	t.Cleanup(func() { c.Close() })
	rec := newRecorder()
	s := &Subscription{c: c, room: "r", handler: rec.handle, active: true, haveLast: true, last: last}
	c.subs["r"] = s
	return c, s, rec, func(env *protocol.Envelope) {
		c.mu.Lock()
		c.routeLocked(env)
		c.mu.Unlock()
	}
}

// TestStreamGapNotice feeds a stream_gap notice into the router: the
// handler gets a RecoveryFailed notice in stream order, and the position
// moves past the missing events (older ones are dropped, a reconnect
// recovers from there).
func TestStreamGapNotice(t *testing.T) {
	c, s, rec, route := routerSub(t, protocol.StreamPosition{Epoch: "a", Offset: 5})
	route(&protocol.Envelope{Type: "message", ID: "a-6", Room: "r"})
	route(&protocol.Envelope{Type: protocol.TypeStreamGap, Room: "r", Data: json.RawMessage(`{"after":"a-6","until":"b-200","reason":"stream_lost"}`), TS: 7})
	route(&protocol.Envelope{Type: "message", ID: "b-150", Room: "r"}) // covered by the gap: not news
	route(&protocol.Envelope{Type: "message", ID: "b-201", Room: "r"})
	route(&protocol.Envelope{Type: protocol.TypeStreamGap, Room: "r", Data: json.RawMessage(`{"after":"b-201","reason":"unavailable"}`)})
	route(&protocol.Envelope{Type: "message", ID: "b-230", Room: "r"})
	ev := rec.wait(t, "4 events and 2 notices", func(ev []Event) bool { return len(ev) >= 5 })
	var got []string
	for _, e := range ev {
		got = append(got, fmt.Sprintf("%s %s %v", e.Type, e.ID, e.RecoveryFailed))
	}
	want := []string{"message a-6 false", "stream_gap b-200 true", "message b-201 false", "stream_gap  true", "message b-230 false"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handler got %q, want %q", got, want)
	}
	if string(ev[1].Data) != `{"after":"a-6","until":"b-200","reason":"stream_lost"}` || ev[1].Room != "r" || ev[1].TS != 7 {
		t.Errorf("notice = %+v", ev[1])
	}
	c.mu.Lock()
	last := s.last
	c.mu.Unlock()
	if last != (protocol.StreamPosition{Epoch: "b", Offset: 230}) {
		t.Errorf("position after the notices: %v, want b-230 (sent as last_event_id on a reconnect)", last)
	}
}

func TestCloseBehaviour(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	states := newStateLog()
	c := New(ts.url(), &Options{OnState: states.record})
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	// A publish stuck waiting (deaf connection) is released by Close.
	c.deafen()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, "room", "", nil)
		errc <- err
	}()
	// Close from a callback must not deadlock.
	closed := make(chan struct{})
	c.disp.push(func() { _ = c.Close(); close(closed) })
	<-closed
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting Publish: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	<-c.Done()
	if c.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", c.Err())
	}
	if err := states.waitFor(t, StateClosed, 1); err != nil {
		t.Errorf("OnState(closed) err = %v", err)
	}
	if err := c.Connect(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
	// Close before Connect.
	c2 := New(ts.url(), nil)
	_ = c2.Close()
	<-c2.Done()
	if err := c2.Connect(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
}

// TestSubscribeGivenUp: a Subscribe whose ctx ends before the answer is
// undone, and the room can be subscribed again.
func TestSubscribeGivenUp(t *testing.T) {
	ts := startServer(t, "", server.Config{})
	ctx := ctxT(t)
	c := connect(t, ts.url(), nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Subscribe(cctx, "r", func(Event) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a cancelled ctx: %v", err)
	}
	rec := newRecorder()
	if _, err := c.Subscribe(ctx, "r", rec.handle); err != nil {
		t.Fatalf("Subscribe after giving up: %v", err)
	}
	ts.publish("r", map[string]int{"n": 1})
	checkSequence(t, "client", numbers(t, rec.wait(t, "event", countMessages(1))), 1, 1)
}
