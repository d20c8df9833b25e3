package hub

import (
	"context"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// SubscriptionExpirer is an optional extension of a SubscriptionVerifier:
// it also says when the subscription token expires (zero: never). With it,
// the `subscribed` answer carries expires_at, the client gets
// subscription_expiring ExpiryLead before, and at expiry the hub ends the
// subscription unless the client subscribed again with a new token.
type SubscriptionExpirer interface {
	VerifySubscriptionExpiry(ctx context.Context, token, room, userID string) (time.Time, error)
}

// SubscriptionExpiringData is the data of subscription_expiring.
type SubscriptionExpiringData struct {
	ExpiresAt int64 `json:"expires_at"` // Unix ms
}

// ErrSubscriptionExpired is the code in the data of the `unsubscribed`
// event with which the hub ends a subscription whose token expired.
const ErrSubscriptionExpired = "subscription_expired"

// subscriptionRetry is how soon an expiry that found a subscribe of the
// same room in progress (a renewal, most likely) looks again.
const subscriptionRetry = 100 * time.Millisecond

// subExpiry is the armed expiry of one token subscription; a timer acts
// only while its subExpiry is the room's current one.
type subExpiry struct {
	timer *time.Timer
}

// verifySubscription checks a subscription token for room and returns when
// it expires, if the verifier tells.
func (c *Client) verifySubscription(ctx context.Context, token, room string) (time.Time, error) {
	v := c.hub.opts.Auth.Subscriptions
	if e, ok := v.(SubscriptionExpirer); ok {
		return e.VerifySubscriptionExpiry(ctx, token, room, c.userID)
	}
	return time.Time{}, v.VerifySubscription(ctx, token, room, c.userID)
}

// doneJoining ends the subscribe in progress (see Client.joining).
func (c *Client) doneJoining() {
	c.mu.Lock()
	c.joining = ""
	c.mu.Unlock()
}

// armSubscription replaces the expiry of c's subscription to room with
// one at exp (none for a zero exp): subscription_expiring ExpiryLead
// before, the end at exp. A renewal (the room was subscribed) whose token
// is already inside the lead gets no warning, only the end: warning again
// at once would only make the client renew with the same short token.
func (c *Client) armSubscription(room string, exp time.Time, renewal bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.subExpiries[room]; old != nil {
		old.timer.Stop()
		delete(c.subExpiries, room)
	}
	if exp.IsZero() || c.gone {
		return
	}
	if c.subExpiries == nil {
		c.subExpiries = make(map[string]*subExpiry, 1)
	}
	e := &subExpiry{}
	c.subExpiries[room] = e
	warnIn := time.Until(exp.Add(-c.hub.opts.Auth.ExpiryLead))
	if renewal && warnIn <= 0 {
		e.timer = time.AfterFunc(time.Until(exp), func() { c.expireSubscription(room, e) })
		return
	}
	e.timer = time.AfterFunc(max(warnIn, 0), func() {
		c.mu.Lock()
		current := c.subExpiries[room] == e && !c.gone
		if current {
			e.timer = time.AfterFunc(time.Until(exp), func() { c.expireSubscription(room, e) })
		}
		c.mu.Unlock()
		if current {
			c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeSubscriptionExpiring, Room: room,
				Data: protocol.EncodeData(SubscriptionExpiringData{ExpiresAt: exp.UnixMilli()})})
		}
	})
}

// expireSubscription ends c's subscription to room at its token's expiry:
// it leaves the room and sends `unsubscribed` with code
// subscription_expired.
func (c *Client) expireSubscription(room string, e *subExpiry) {
	c.mu.Lock()
	if c.gone || c.subExpiries[room] != e {
		c.mu.Unlock()
		return
	}
	if c.joining == room {
		// A subscribe of this room is under way: it re-arms the expiry if
		// it succeeds; if it does not, this one ends the subscription.
		e.timer = time.AfterFunc(subscriptionRetry, func() { c.expireSubscription(room, e) })
		c.mu.Unlock()
		return
	}
	delete(c.subExpiries, room)
	_, ok := c.rooms[room]
	delete(c.rooms, room)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.hub.leave(c, room)
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeUnsubscribed, Room: room,
		Data: protocol.EncodeData(protocol.Error{Code: ErrSubscriptionExpired, Message: "the subscription token expired: subscribe again with a new one"})})
}

// stopSubscriptionsLocked stops every subscription expiry (the connection
// is gone). Under c.mu.
func (c *Client) stopSubscriptionsLocked() {
	for _, e := range c.subExpiries {
		e.timer.Stop()
	}
	c.subExpiries = nil
}
