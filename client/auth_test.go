package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

const testSecret = "0123456789abcdef0123456789abcdef" // HS256 needs 32+ bytes

func token(t *testing.T, sub string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(ttl).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authServer(t *testing.T) *testServer {
	return startServer(t, "", server.Config{Auth: server.AuthConfig{JWTSecret: testSecret}})
}

// tokenSource hands out the tokens of a list, then repeats the last.
type tokenSource struct {
	mu    sync.Mutex
	toks  []string
	calls int
}

func (s *tokenSource) get(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.calls, len(s.toks)-1)
	s.calls++
	return s.toks[i], nil
}

func (s *tokenSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestAuthToken(t *testing.T) {
	ts := authServer(t)
	ctx := ctxT(t)

	t.Run("header", func(t *testing.T) {
		c := connect(t, ts.url(), &Options{Token: token(t, "ada", time.Hour)})
		if c.UserID() != "ada" {
			t.Errorf("UserID %q, want the token's sub", c.UserID())
		}
	})
	t.Run("query", func(t *testing.T) {
		c := connect(t, ts.url(), &Options{Token: token(t, "bob", time.Hour), TokenInQuery: true})
		if c.UserID() != "bob" {
			t.Errorf("UserID %q, want the token's sub", c.UserID())
		}
	})
	t.Run("rejected without GetToken stops", func(t *testing.T) {
		c := New(ts.url(), fast(&Options{Token: "not-a-jwt"}))
		err := c.Connect(ctx)
		var he *HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Connect: %v, want a HandshakeError 401", err)
		}
	})
	t.Run("rejected then GetToken", func(t *testing.T) {
		src := &tokenSource{toks: []string{"not-a-jwt", token(t, "cy", time.Hour)}}
		c := connect(t, ts.url(), fast(&Options{GetToken: src.get}))
		if c.UserID() != "cy" || src.count() != 2 {
			t.Errorf("UserID %q after %d GetToken calls, want cy after 2", c.UserID(), src.count())
		}
	})
	t.Run("no token", func(t *testing.T) {
		// The server waits for an auth frame and, after its auth timeout,
		// closes with 4001, which stops the client.
		c := New(ts.url(), fast(nil))
		err := c.Connect(ctx)
		if closeCodeOf(err) != protocol.CloseUnauthorized {
			t.Fatalf("Connect: %v, want close 4001", err)
		}
	})
}

// TestSessionRefresh: on session_expiring the client gets a new token and
// sends `refresh`, so the server does not close the connection with 4000
// when the first token expires.
func TestSessionRefresh(t *testing.T) {
	ts := authServer(t)
	// The first token expires in 2 s, well inside the server's 30 s
	// warning lead, so session_expiring comes at once.
	exp := time.Now().Add(2 * time.Second)
	src := &tokenSource{toks: []string{token(t, "ada", 2*time.Second), token(t, "ada", time.Hour)}}
	var mu sync.Mutex
	var errs []error
	c := connect(t, ts.url(), fast(&Options{GetToken: src.get, OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}))
	deadline := time.Now().Add(10 * time.Second)
	for src.count() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("GetToken was not called for session_expiring")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Past the first token's expiry (JWT exp has 1 s resolution): without
	// the refresh the server would have closed with 4000 by now and the
	// client would be on its second connection.
	time.Sleep(time.Until(exp) + 1500*time.Millisecond)
	if _, opens, st := c.connInfo(); opens != 1 || st != StateOpen {
		t.Errorf("%d connections, state %s: want the first one still open", opens, st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 0 {
		t.Errorf("OnError: %v", errs)
	}
}

// TestSessionExpiringWithoutGetToken: the event goes to OnEvent.
func TestSessionExpiringWithoutGetToken(t *testing.T) {
	ts := authServer(t)
	rec := newRecorder()
	connect(t, ts.url(), &Options{Token: token(t, "ada", 10*time.Second), OnEvent: rec.handle})
	ev := rec.wait(t, "session_expiring", func(ev []Event) bool { return len(ev) > 0 })
	if ev[0].Type != protocol.TypeSessionExpiring {
		t.Errorf("OnEvent got %s, want session_expiring", ev[0].Type)
	}
}
