package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// subToken grants sub room until exp (whole seconds, as JWT has them).
func subToken(t *testing.T, sub, room string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "room": room, "exp": exp.Unix()}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// subTokens hands out subscription tokens valid for the durations of a
// list (then the last again), and counts the calls.
type subTokens struct {
	t     *testing.T
	user  string
	ttls  []time.Duration
	mu    sync.Mutex
	rooms []string
}

func (s *subTokens) get(ctx context.Context, room string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl := s.ttls[min(len(s.rooms), len(s.ttls)-1)]
	s.rooms = append(s.rooms, room)
	return subToken(s.t, s.user, room, time.Now().Add(ttl)), nil
}

func (s *subTokens) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}

func waitCalls(t *testing.T, s *subTokens, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); s.calls() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("GetToken called %d times, want %d", s.calls(), n)
		}
	}
}

// privateServer runs a server with JWT auth, a private namespace "secret"
// and a 2 s expiry lead. The server accepts a token up to 5 s past exp and
// ends its subscription then.
func privateServer(t *testing.T) *testServer {
	return startServer(t, "", server.Config{
		Auth: server.AuthConfig{JWTSecret: testSecret, ExpiryLead: 2 * time.Second},
		Hub:  hub.Options{Namespaces: map[string]hub.Namespace{"secret": {Private: true}}},
	})
}

func TestSubscriptionTokenRefused(t *testing.T) {
	ts := privateServer(t)
	ctx := ctxT(t)
	c := connect(t, ts.url(), fast(&Options{Token: token(t, "ada", time.Hour)}))
	var se *ServerError
	if _, err := c.Subscribe(ctx, "secret:1", newRecorder().handle); !errors.As(err, &se) || se.Code != protocol.ErrForbidden {
		t.Errorf("no token: %v, want forbidden", err)
	}
	foreign := &subTokens{t: t, user: "bob", ttls: []time.Duration{time.Hour}}
	if _, err := c.SubscribeWith(ctx, "secret:1", newRecorder().handle, SubscribeOptions{GetToken: foreign.get}); !errors.As(err, &se) || se.Code != protocol.ErrForbidden {
		t.Errorf("another user's token: %v, want forbidden", err)
	}
	boom := errors.New("token backend down")
	_, err := c.SubscribeWith(ctx, "secret:1", newRecorder().handle, SubscribeOptions{GetToken: func(context.Context, string) (string, error) { return "", boom }})
	if !errors.Is(err, boom) {
		t.Errorf("failing GetToken: %v, want its error", err)
	}
	if c.State() != StateOpen {
		t.Errorf("state %v after refusals, want open", c.State())
	}
}

func TestSubscriptionTokenOnResubscribe(t *testing.T) {
	ts := privateServer(t)
	ctx := ctxT(t)
	c := connect(t, ts.url(), fast(&Options{Token: token(t, "ada", time.Hour)}))
	src := &subTokens{t: t, user: "ada", ttls: []time.Duration{time.Hour}}
	rec := newRecorder()
	if _, err := c.SubscribeWith(ctx, "secret:1", rec.handle, SubscribeOptions{GetToken: src.get}); err != nil {
		t.Fatal(err)
	}
	ts.publish("secret:1", 1)
	rec.wait(t, "the first event", func(ev []Event) bool { return len(messages(ev)) == 1 })
	ts.disconnect(c.ConnectionID(), protocol.CloseServiceRestart)
	waitCalls(t, src, 2) // the resubscribe after the reconnect got a new token
	for end := time.Now().Add(10 * time.Second); c.State() != StateOpen; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no reconnect")
		}
	}
	ts.publish("secret:1", 2)
	rec.wait(t, "the event after the resubscribe", func(ev []Event) bool { return len(messages(ev)) == 2 })
	if src.rooms[0] != "secret:1" || src.rooms[1] != "secret:1" {
		t.Errorf("GetToken rooms %v", src.rooms)
	}
}

func TestSubscriptionTokenRenewedBeforeExpiry(t *testing.T) {
	ts := privateServer(t)
	ctx := ctxT(t)
	errc := make(chan error, 4)
	c := connect(t, ts.url(), fast(&Options{Token: token(t, "ada", time.Hour), OnError: func(err error) { errc <- err }}))
	// -3.2 s: accepted within the 5 s leeway, so the grant ends 0.8-1.8 s
	// later (exp is whole seconds), inside the 2 s lead: subscription_expiring
	// comes at once. (-4 s left 0-1 s, and a token could expire before the
	// subscribe reached the server.)
	src := &subTokens{t: t, user: "ada", ttls: []time.Duration{-3200 * time.Millisecond, time.Hour}}
	rec := newRecorder()
	if _, err := c.SubscribeWith(ctx, "secret:1", rec.handle, SubscribeOptions{GetToken: src.get}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, src, 2)
	time.Sleep(1500 * time.Millisecond) // past the first token's end
	ts.publish("secret:1", "still here")
	rec.wait(t, "an event after the first token's end", func(ev []Event) bool { return len(messages(ev)) == 1 })
	if n := src.calls(); n != 2 {
		t.Errorf("GetToken called %d times, want 2 (subscribe, renewal)", n)
	}
	select {
	case err := <-errc:
		t.Errorf("OnError: %v", err)
	default:
	}
}

func TestSubscriptionTokenEndedByServer(t *testing.T) {
	ts := privateServer(t)
	ctx := ctxT(t)
	c := connect(t, ts.url(), fast(&Options{Token: token(t, "ada", time.Hour)}))
	// The renewal's token is inside the lead too: no second warning, the
	// server ends the subscription at its expiry, and the client subscribes
	// again with the third token.
	src := &subTokens{t: t, user: "ada", ttls: []time.Duration{-3200 * time.Millisecond, -3200 * time.Millisecond, time.Hour}}
	rec := newRecorder()
	if _, err := c.SubscribeWith(ctx, "secret:1", rec.handle, SubscribeOptions{GetToken: src.get}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, src, 3)
	time.Sleep(200 * time.Millisecond)
	ts.publish("secret:1", "back")
	rec.wait(t, "an event after the subscription was made again", func(ev []Event) bool { return len(messages(ev)) == 1 })
}

func TestSubscriptionTokenFailingGetTokenEnds(t *testing.T) {
	ts := privateServer(t)
	ctx := ctxT(t)
	errc := make(chan error, 4)
	c := connect(t, ts.url(), fast(&Options{Token: token(t, "ada", time.Hour), OnError: func(err error) { errc <- err }}))
	boom := errors.New("token backend down")
	var mu sync.Mutex
	calls := 0
	get := func(ctx context.Context, room string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 1 {
			return subToken(t, "ada", room, time.Now().Add(-3200*time.Millisecond)), nil
		}
		return "", boom
	}
	if _, err := c.SubscribeWith(ctx, "secret:1", newRecorder().handle, SubscribeOptions{GetToken: get}); err != nil {
		t.Fatal(err)
	}
	// The failed renewal is reported and leaves the subscription to the
	// server's end; the failed resubscribe after it ends the subscription.
	for i := 0; i < 2; i++ {
		select {
		case err := <-errc:
			if !errors.Is(err, boom) {
				t.Errorf("OnError %v, want GetToken's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d errors, want 2", i)
		}
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		gone := c.subs["secret:1"] == nil
		c.mu.Unlock()
		if gone {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the subscription is still there after GetToken failed")
		}
	}
}
