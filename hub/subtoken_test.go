package hub

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// fakeSubTokens accepts tokens "ROOM:USER:MS": valid for MS milliseconds
// from when they are verified.
type fakeSubTokens struct{}

func (fakeSubTokens) VerifySubscription(ctx context.Context, token, room, userID string) error {
	_, err := fakeSubTokens{}.VerifySubscriptionExpiry(ctx, token, room, userID)
	return err
}

func (fakeSubTokens) VerifySubscriptionExpiry(_ context.Context, token, room, userID string) (time.Time, error) {
	i := strings.LastIndexByte(token, ':')
	if i < 0 || token[:i] != room+":"+userID {
		return time.Time{}, errors.New("token is for another room or user")
	}
	ms, err := time.ParseDuration(token[i+1:] + "ms")
	if err != nil {
		return time.Time{}, errors.New("token malformed")
	}
	return time.Now().Add(ms), nil
}

func subTokenHub(t *testing.T, lead time.Duration) *Hub {
	return newHub(t, Options{
		Auth:       AuthOptions{Subscriptions: fakeSubTokens{}, ExpiryLead: lead},
		Namespaces: map[string]Namespace{"secret": {Private: true}},
	})
}

// subscribedWithToken connects alice to a hub with the given expiry lead
// and subscribes her to secret:1 with a token valid for ms milliseconds.
func subscribedWithToken(t *testing.T, lead time.Duration, ms int) (*Hub, *Client, *fakeSink) {
	t.Helper()
	h := subTokenHub(t, lead)
	c, s := connect(t, h, "alice")
	send(c, `{"type":"subscribe","id":"s1","room":"secret:1","data":{"token":"secret:1:alice:%d"}}`, ms)
	s.one(t, protocol.TypeSubscribed)
	return h, c, s
}

// waitType waits (at most 5 s) until s has received n frames of type typ.
func waitType(t *testing.T, s *fakeSink, typ string, n int) []msg {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if got := s.ofType(t, typ); len(got) >= n {
			return got
		}
	}
	t.Fatalf("no %d %s frames within 5 s; got:%s", n, typ, s.dump(t))
	return nil
}

func TestSubscriptionTokenExpiry(t *testing.T) {
	h := subTokenHub(t, 150*time.Millisecond)
	c, s := connect(t, h, "alice")
	send(c, `{"type":"subscribe","id":"s1","room":"secret:1","data":{"token":"secret:1:alice:400"}}`)
	d := decodeData[SubscribedData](t, s.one(t, protocol.TypeSubscribed))
	if d.ExpiresAt == 0 || time.Until(time.UnixMilli(d.ExpiresAt)) > 400*time.Millisecond {
		t.Fatalf("subscribed.expires_at = %d, want about 400 ms from now", d.ExpiresAt)
	}
	// ExpiryLead before: subscription_expiring with the same expires_at.
	w := waitType(t, s, protocol.TypeSubscriptionExpiring, 1)[0]
	if w.Room != "secret:1" || decodeData[SubscriptionExpiringData](t, w).ExpiresAt != d.ExpiresAt {
		t.Errorf("subscription_expiring = %+v, want room secret:1, expires_at %d", w, d.ExpiresAt)
	}
	if len(s.ofType(t, protocol.TypeUnsubscribed)) != 0 {
		t.Fatal("unsubscribed before the expiry")
	}
	// No renewal: at expiry the hub ends the subscription.
	u := waitType(t, s, protocol.TypeUnsubscribed, 1)[0]
	if e := decodeData[protocol.Error](t, u); u.Room != "secret:1" || u.ID != "" || e.Code != ErrSubscriptionExpired {
		t.Errorf("unsubscribed = %+v (%+v), want an unsolicited one for secret:1 with code %s", u, e, ErrSubscriptionExpired)
	}
	if n := h.RoomSize("secret:1"); n != 0 {
		t.Errorf("room size after expiry = %d, want 0", n)
	}
	// Events no longer reach it.
	before := len(s.ofType(t, "message"))
	if _, err := h.Publish(context.Background(), "secret:1", "message", []byte(`{}`), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if len(s.ofType(t, "message")) != before {
		t.Error("an expired subscription still gets events")
	}
}

func TestSubscriptionTokenRenewal(t *testing.T) {
	h := subTokenHub(t, 150*time.Millisecond)
	c, s := connect(t, h, "alice")
	send(c, `{"type":"subscribe","id":"s1","room":"secret:1","data":{"token":"secret:1:alice:300"}}`)
	first := decodeData[SubscribedData](t, s.one(t, protocol.TypeSubscribed))
	waitType(t, s, protocol.TypeSubscriptionExpiring, 1)
	// Renew with a longer token: the old expiry is void.
	send(c, `{"type":"subscribe","id":"s2","room":"secret:1","last_event_id":%q,"data":{"token":"secret:1:alice:60000"}}`, first.Position)
	subs := s.ofType(t, protocol.TypeSubscribed)
	if len(subs) != 2 {
		t.Fatalf("renewal not answered; got:%s", s.dump(t))
	}
	if d := decodeData[SubscribedData](t, subs[1]); time.Until(time.UnixMilli(d.ExpiresAt)) < 50*time.Second {
		t.Errorf("renewed expires_at = %d, want about a minute from now", d.ExpiresAt)
	}
	time.Sleep(400 * time.Millisecond) // past the first token's expiry
	if n := len(s.ofType(t, protocol.TypeUnsubscribed)); n != 0 {
		t.Fatalf("the renewed subscription was ended at the old token's expiry; got:%s", s.dump(t))
	}
	if n := h.RoomSize("secret:1"); n != 1 {
		t.Errorf("room size = %d, want 1", n)
	}
	if n := s.count(t, protocol.TypeUserJoined); n > 1 {
		t.Errorf("renewal announced the member again: %d user_joined", n)
	}
}

func TestSubscriptionTokenRefusedRenewalKeepsExpiry(t *testing.T) {
	_, c, s := subscribedWithToken(t, 100*time.Millisecond, 300)
	// A token of another user is refused and does not extend anything.
	send(c, `{"type":"subscribe","id":"s2","room":"secret:1","data":{"token":"secret:1:bob:60000"}}`)
	if errs := errorsOf(t, s); len(errs) != 1 || errs[0].Code != protocol.ErrForbidden || errs[0].Ref != "s2" {
		t.Fatalf("foreign token: errors %+v, want one forbidden for s2", errs)
	}
	waitType(t, s, protocol.TypeUnsubscribed, 1)
}

func TestSubscriptionTokenShortRenewalNotWarnedAgain(t *testing.T) {
	h := subTokenHub(t, time.Second)
	c, s := connect(t, h, "alice")
	send(c, `{"type":"subscribe","id":"s1","room":"secret:1","data":{"token":"secret:1:alice:300"}}`)
	waitType(t, s, protocol.TypeSubscriptionExpiring, 1) // inside the lead: at once
	// A renewal with a token that is inside the lead too gets no second
	// warning (that would be a renewal storm), only the end at expiry.
	send(c, `{"type":"subscribe","id":"s2","room":"secret:1","data":{"token":"secret:1:alice:300"}}`)
	waitType(t, s, protocol.TypeUnsubscribed, 1)
	if n := s.count(t, protocol.TypeSubscriptionExpiring); n != 1 {
		t.Errorf("%d subscription_expiring, want 1", n)
	}
}

func TestSubscriptionExpiryStopsWithConnection(t *testing.T) {
	_, c, s := subscribedWithToken(t, 50*time.Millisecond, 200)
	send(c, `{"type":"unsubscribe","id":"u1","room":"secret:1"}`)
	c.mu.Lock()
	n := len(c.subExpiries)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d expiries armed after unsubscribe, want 0", n)
	}
	send(c, `{"type":"subscribe","id":"s2","room":"secret:1","data":{"token":"secret:1:alice:200"}}`)
	c.Gone()
	c.mu.Lock()
	n = len(c.subExpiries)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d expiries armed after Gone, want 0", n)
	}
	time.Sleep(300 * time.Millisecond)
	if n := s.count(t, protocol.TypeUnsubscribed); n != 1 { // the answer to u1 only
		t.Errorf("%d unsubscribed, want 1 (the answer to u1)", n)
	}
}
