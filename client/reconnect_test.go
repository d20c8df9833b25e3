package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/protocol"
)

// TestCloseTableMatchesProtocol keeps the client's decisions in step with
// the protocol's close-code table: every code the server sends is listed,
// and the client reconnects exactly where the table says to (4000 is
// special: a token refresh, then a reconnect).
func TestCloseTableMatchesProtocol(t *testing.T) {
	listed := map[protocol.CloseCode]bool{}
	for _, row := range closeActions {
		if listed[row.code] {
			t.Errorf("code %d is listed twice", row.code)
		}
		listed[row.code] = true
	}
	for _, ci := range protocol.CloseCodes() {
		if !listed[ci.Code] {
			t.Errorf("code %d (%s) is missing from closeActions", ci.Code, ci.Name)
		}
		got := closeAction(ci.Code)
		if ci.Code == protocol.CloseSessionExpired {
			if got != actRefreshToken {
				t.Errorf("4000: %s, want refresh token", got)
			}
			continue
		}
		if (got == actReconnect) != ci.Reconnect {
			t.Errorf("code %d (%s): client will %s, protocol says reconnect=%v", ci.Code, ci.Name, got, ci.Reconnect)
		}
	}
	// The brief's explicit rows, and codes no table lists.
	for code, want := range map[protocol.CloseCode]action{
		1000: actStop, 1001: actStop, 1006: actReconnect, 1011: actReconnect, 1012: actReconnect,
		1013: actReconnect, 4005: actReconnect, 4008: actReconnect, 4000: actRefreshToken,
		4001: actStop, 4003: actStop, 4004: actStop, 4006: actStop,
		1005: actReconnect, 1014: actReconnect, 4999: actStop,
	} {
		if got := closeAction(code); got != want {
			t.Errorf("code %d: %s, want %s", code, got, want)
		}
	}
}

func TestFailureAction(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want action
	}{
		{&HandshakeError{StatusCode: 403}, actStop},
		{&HandshakeError{StatusCode: 404}, actStop},
		{&HandshakeError{StatusCode: 429}, actReconnect},
		{&HandshakeError{StatusCode: 408}, actReconnect},
		{&HandshakeError{StatusCode: 503}, actReconnect},
		{&CloseError{Code: 4001}, actStop},
		{&CloseError{Code: 1012}, actReconnect},
		{&CloseError{Code: 4000}, actRefreshToken},
		{errors.New("connection refused"), actReconnect},
		{ErrUnauthorized, actStop},
	} {
		if got := failureAction(tc.err); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestBackoffSchedule: the ceiling doubles from InitialDelay up to
// MaxDelay; full jitter spans [0, ceiling].
func TestBackoffSchedule(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest value randN may return
	zero := func(int64) int64 { return 0 }
	b := backoff{initial: 500 * time.Millisecond, max: 30 * time.Second, factor: 2, randN: top}
	want := []time.Duration{
		500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second,
	}
	for n, w := range want {
		if got := b.delay(n); got != w {
			t.Errorf("delay(%d) at the top of the jitter = %s, want %s", n, got, w)
		}
	}
	if got := b.delay(10000); got != 30*time.Second {
		t.Errorf("delay(10000) = %s, want the cap (no overflow)", got)
	}
	b.randN = zero
	for n := range want {
		if got := b.delay(n); got != 0 {
			t.Errorf("delay(%d) at the bottom of the jitter = %s, want 0", n, got)
		}
	}
	// Real randomness stays within [0, ceiling] and is not constant.
	r := rand.New(rand.NewPCG(1, 2))
	b.randN = r.Int64N
	for n := 0; n < 10; n++ {
		ceil := b.ceiling(n)
		distinct := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := b.delay(n)
			if d < 0 || d > ceil {
				t.Fatalf("delay(%d) = %s outside [0, %s]", n, d, ceil)
			}
			distinct[d] = true
		}
		if len(distinct) < 100 {
			t.Errorf("delay(%d): only %d distinct values in 200 draws", n, len(distinct))
		}
	}
	// Other factors.
	b = backoff{initial: 100 * time.Millisecond, max: time.Second, factor: 3, randN: top}
	for n, w := range []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second} {
		if got := b.delay(n); got != w {
			t.Errorf("factor 3: delay(%d) = %s, want %s", n, got, w)
		}
	}
}

// TestReconnectLoopUsesBackoff: failed attempts wait the schedule's
// delays, in order, and MaxAttempts ends the loop.
func TestReconnectLoopUsesBackoff(t *testing.T) {
	// A port with nothing listening: every dial is refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var states []State
	var stateErrs int
	c := New("ws://"+addr+"/ws", &Options{MaxAttempts: 5, OnState: func(s State, err error) {
		states = append(states, s) // callbacks run one at a time
		if err != nil {
			stateErrs++
		}
	}})
	c.backoff.randN = func(n int64) int64 { return n - 1 }
	var slept []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d) // only the Connect goroutine sleeps here
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Connect(ctx)
	var gu *errGaveUp
	if !errors.As(err, &gu) || gu.attempts != 5 {
		t.Fatalf("Connect: %v, want to give up after 5 attempts", err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	if len(slept) != len(want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Errorf("wait %d = %s, want %s", i, slept[i], want[i])
		}
	}
	<-c.Done()
	if !errors.As(c.Err(), &gu) {
		t.Errorf("Err() = %v", c.Err())
	}
	// 4 failed attempts reported before the 5th ends it with closed.
	if len(states) != 5 || states[4] != StateClosed || stateErrs != 5 {
		t.Errorf("states %v (%d with an error), want 4×connecting then closed, all with errors", states, stateErrs)
	}
}

// TestDisconnectAdvice: a `disconnect` event's reconnect field wins over
// the table for the code it came with; 4000 stays a token refresh.
func TestDisconnectAdvice(t *testing.T) {
	for _, tc := range []struct {
		code   protocol.CloseCode
		advice int8
		want   action
	}{
		{protocol.CloseServiceRestart, 0, actReconnect},
		{protocol.CloseServiceRestart, -1, actStop},
		{protocol.CloseKicked, 0, actStop},
		{protocol.CloseKicked, 1, actReconnect},
		{protocol.CloseSessionExpired, 1, actRefreshToken},
		{protocol.CloseSessionExpired, -1, actStop},
		{4999, 1, actReconnect},
	} {
		if got := decide(&CloseError{Code: tc.code, advice: tc.advice}); got != tc.want {
			t.Errorf("code %d advice %d: %s, want %s", tc.code, tc.advice, got, tc.want)
		}
	}
}

// fakeServer is a WebSocket server that is not Switchboard: it speaks a
// protocol version the client does not know.
type fakeServer struct {
	gws.BuiltinEventHandler
}

func TestProtocolVersionMismatch(t *testing.T) {
	up := gws.NewUpgrader(fakeServer{}, &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		_ = ws.WriteString(`{"type":"connection_established","data":{"user_id":"u","connection_id":"c","protocol_version":2}}`)
		go ws.ReadLoop()
	})}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	c := New("ws://"+ln.Addr().String()+"/ws", fast(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); !errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("Connect: %v, want ErrProtocolVersion", err)
	}
	if _, opens, _ := c.connInfo(); opens != 0 {
		t.Errorf("%d connections opened, want none", opens)
	}
}

// TestSilentServerIsDead: a server that announces a heartbeat interval and
// then sends nothing for twice that is treated as gone (1006), and the
// client reconnects.
func TestSilentServerIsDead(t *testing.T) {
	up := gws.NewUpgrader(fakeServer{}, &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		_ = ws.WriteString(`{"type":"connection_established","data":{"user_id":"u","connection_id":"c","protocol_version":1,"heartbeat_interval_ms":50}}`)
		go ws.ReadLoop() // and never a ping
	})}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	states := newStateLog()
	c := connect(t, "ws://"+ln.Addr().String()+"/ws", fast(&Options{OnState: states.record}))
	err = states.waitFor(t, StateReconnecting, 1)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1006 {
		t.Fatalf("reconnecting after %v, want 1006 for the silence", err)
	}
	waitOpens(t, c, 2)
}
