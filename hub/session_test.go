package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// expiryAuth issues credentials for user "u" that expire after the
// duration the token names ("300ms").
type expiryAuth struct{}

func (expiryAuth) Authenticate(ctx context.Context, token string) (*Credentials, error) {
	d, err := time.ParseDuration(token)
	if err != nil {
		return nil, errors.New("bad token")
	}
	return &Credentials{UserID: "u", ExpiresAt: time.Now().Add(d)}, nil
}

// TestRefreshWithShortTokenIsNotWarnedAgain: a refresh whose token is
// already inside the expiry lead gets `refreshed` but no new
// session_expiring (which would only make the client refresh again at
// once); the connection closes with 4000 when that token expires.
func TestRefreshWithShortTokenIsNotWarnedAgain(t *testing.T) {
	h := newHub(t, Options{Auth: AuthOptions{Authenticator: expiryAuth{}, ExpiryLead: time.Second}})
	s := &fakeSink{}
	c := h.Connect(s, ConnectOptions{Credentials: &Credentials{UserID: "u", ExpiresAt: time.Now().Add(1200 * time.Millisecond)}})
	deadline := time.Now().Add(5 * time.Second)
	for s.count(t, protocol.TypeSessionExpiring) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.count(t, protocol.TypeSessionExpiring) != 1 {
		t.Fatal("no session_expiring before the first token's expiry")
	}
	send(c, `{"type":"refresh","id":"r","data":{"token":"400ms"}}`)
	if s.count(t, protocol.TypeRefreshed) != 1 {
		t.Fatalf("refresh not answered:%s", s.dump(t))
	}
	for len(s.closeList()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cl := s.closeList(); len(cl) != 1 || cl[0].Code != protocol.CloseSessionExpired {
		t.Fatalf("closes = %v, want one 4000", cl)
	}
	if n := s.count(t, protocol.TypeSessionExpiring); n != 1 {
		t.Errorf("%d session_expiring events, want 1 (none for the short refreshed token)", n)
	}
}
