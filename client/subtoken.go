package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

// SubscribeOptions are the options of SubscribeWith.
type SubscribeOptions struct {
	// GetToken returns a subscription token for room (private rooms). It
	// is called before every subscribe of the room: the first, each one
	// after a reconnect, and the renewal on subscription_expiring or after
	// the server ended the subscription at the token's expiry. It runs on
	// a goroutine of its own, bounded by Options.HandshakeTimeout except
	// for the first call, which gets SubscribeWith's ctx. An error on the
	// first call is SubscribeWith's; later, it ends the subscription and
	// goes to OnError. nil: no token.
	GetToken func(ctx context.Context, room string) (string, error)
}

// SubscribeWith is Subscribe with options.
func (c *Client) SubscribeWith(ctx context.Context, room string, handler func(Event), opts SubscribeOptions) (*Subscription, error) {
	if opts.GetToken == nil {
		return c.Subscribe(ctx, room, handler)
	}
	if e := protocol.ValidateRoom(room); e != nil {
		return nil, fmt.Errorf("client: subscribe: %w", e)
	}
	tok, err := opts.GetToken(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("client: subscribe %q: GetToken: %w", room, err)
	}
	return c.subscribe(ctx, room, handler, opts.GetToken, tok)
}

// subscribeFrame adds a subscription token to a subscribe's envelope.
func subscribeFrame(env *protocol.Envelope, token string) {
	if token != "" {
		env.Data, _ = json.Marshal(map[string]string{"token": token})
	}
}

// fetchTokenLocked starts getting a new token for s, to subscribe again
// (after a reconnect or the server's end of it) or to renew it (while it
// is active). At most one fetch runs per subscription.
func (c *Client) fetchTokenLocked(s *Subscription) {
	if s.fetching || s.req != nil || c.closed {
		return
	}
	s.fetching = true
	c.wg.Add(1)
	go c.tokenSubscribe(s)
}

// tokenSubscribe gets a token from s's GetToken and queues a subscribe with
// it, from the last event id seen.
func (c *Client) tokenSubscribe(s *Subscription) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.life, c.opts.HandshakeTimeout)
	defer cancel()
	tok, err := s.getToken(ctx, s.room)
	c.mu.Lock()
	defer c.mu.Unlock()
	s.fetching = false
	if c.closed || s.leaving || c.subs[s.room] != s {
		return
	}
	if err != nil {
		// Without a token the server would refuse; an active subscription
		// (a failed renewal) is left to the server's end at expiry.
		if !s.active {
			delete(c.subs, s.room)
		}
		c.reportLocked(fmt.Errorf("client: subscription to %q: GetToken: %w", s.room, err))
		return
	}
	r := c.newRequestLocked(kindSubscribe, s.room)
	r.sub, r.background, r.token = s, true, tok
	s.req = r
	c.pending[r.id] = r
	c.queue = append(c.queue, outItem{req: r})
	if c.cur != nil {
		c.cur.wakeWriter()
	}
}

// subscriptionEndedLocked handles the server's own `unsubscribed` (no id):
// the subscription token expired. With GetToken the client subscribes
// again with a new one; without, the subscription ends (OnError). It
// returns false if env is not about a subscription of the client.
func (c *Client) subscriptionEndedLocked(env *protocol.Envelope) bool {
	s := c.subs[env.Room]
	if env.ID != "" || s == nil || s.leaving {
		return false
	}
	var pe protocol.Error
	_ = json.Unmarshal(env.Data, &pe)
	s.active = false
	if s.getToken != nil {
		c.fetchTokenLocked(s)
		return true
	}
	delete(c.subs, env.Room)
	s.leaving = true
	c.reportLocked(fmt.Errorf("client: subscription to %q ended by the server: %w", env.Room, &ServerError{Code: pe.Code, Message: pe.Message}))
	return true
}
