package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Subscription is the client's membership of one room. It survives
// reconnects: after each one the client subscribes again with the id of
// the last event it saw in the room, the server replays what was missed,
// and the handler sees every event once, in order, as if nothing had
// happened; or, when the server could not replay everything, it gets an
// Event with RecoveryFailed set at the point of the gap.
type Subscription struct {
	c       *Client
	room    string
	handler func(Event)
	seq     uint64

	getToken func(ctx context.Context, room string) (string, error) // SubscribeOptions.GetToken

	// under c.mu
	req      *request // subscribe queued or in flight
	active   bool     // subscribed on the current connection: events flow
	leaving  bool     // Unsubscribe called, or Subscribe gave up
	last     protocol.StreamPosition
	haveLast bool
	fetching bool // a GetToken call is under way
}

// Room returns the room's name.
func (s *Subscription) Room() string { return s.room }

// Subscribe subscribes to room and returns once the server has confirmed.
// handler receives the room's events (and join/leave notices) one at a
// time, in stream order, on a goroutine of the client; it may call the
// client's methods. If ctx ends first, the subscription is given up (and
// undone on the server if it got there) and ctx's error returned. A
// *ServerError reports that the server refused (invalid_room,
// too_many_rooms, forbidden, ...). Subscribing twice to one room returns
// ErrAlreadySubscribed.
func (c *Client) Subscribe(ctx context.Context, room string, handler func(Event)) (*Subscription, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return nil, fmt.Errorf("client: subscribe: %w", e)
	}
	return c.subscribe(ctx, room, handler, nil, "")
}

func (c *Client) subscribe(ctx context.Context, room string, handler func(Event), getToken func(context.Context, string) (string, error), token string) (*Subscription, error) {
	if handler == nil {
		return nil, errors.New("client: subscribe: handler is nil")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old := c.subs[room]; old != nil && !old.leaving {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrAlreadySubscribed, room)
	}
	r := c.newRequestLocked(kindSubscribe, room)
	s := &Subscription{c: c, room: room, handler: handler, seq: r.seq, req: r, getToken: getToken}
	r.sub, r.token = s, token
	if err := c.enqueueLocked(outItem{req: r}); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.subs[room] = s
	cn := c.cur
	c.mu.Unlock()
	if cn != nil {
		cn.wakeWriter()
	}
	if _, err := c.wait(ctx, r, func() { c.abandonSubscribeLocked(s, r) }); err != nil {
		return nil, err
	}
	return s, nil
}

// abandonSubscribeLocked undoes a subscribe whose caller gave up.
func (c *Client) abandonSubscribeLocked(s *Subscription, r *request) {
	if c.subs[s.room] != s {
		return
	}
	if r.sentOn == nil { // never reached the server
		s.req = nil
		delete(c.subs, s.room)
		return
	}
	c.unsubscribeLocked(s)
}

// unsubscribeLocked marks s as leaving and queues an unsubscribe for it.
// The queue bound does not apply: leaving must not fail for lack of room.
// Events that still arrive for s are dropped until the server confirms.
func (c *Client) unsubscribeLocked(s *Subscription) *request {
	s.leaving, s.active = true, false
	u := c.newRequestLocked(kindUnsubscribe, s.room)
	u.sub, u.background = s, true
	u.frame = protocol.Encode(&protocol.Envelope{Type: protocol.TypeUnsubscribe, ID: u.id, Room: s.room})
	c.pending[u.id] = u
	c.queue = append(c.queue, outItem{req: u})
	if c.cur != nil {
		c.cur.wakeWriter()
	}
	return u
}

// Unsubscribe leaves the room and waits for the server's confirmation.
// The handler gets no events after Unsubscribe is called. If ctx ends
// first, the unsubscribe still goes out; only the wait is cut short.
// Unsubscribing twice, or after the client closed, returns nil.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if c.closed || s.leaving || c.subs[s.room] != s {
		c.mu.Unlock()
		return nil
	}
	if r := s.req; r != nil && r.sentOn == nil {
		// A re-subscription waiting for the next connection: the server
		// does not have this subscription, so there is nothing to undo.
		delete(c.pending, r.id)
		s.req = nil
		s.leaving, s.active = true, false
		delete(c.subs, s.room)
		c.mu.Unlock()
		return nil
	}
	u := c.unsubscribeLocked(s)
	c.mu.Unlock()

	select {
	case res := <-u.reply:
		return res.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	u.abandoned = true // still sent; its reply is ignored
	c.mu.Unlock()
	select {
	case res := <-u.reply:
		return res.err
	default:
		return ctx.Err()
	}
}

// subscribedData is the data of `subscribed`.
type subscribedData struct {
	Members   int    `json:"members"`
	Position  string `json:"position"`
	Recovered *bool  `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

// subscribedLocked applies a `subscribed` answer to r's subscription.
func (c *Client) subscribedLocked(r *request, env *protocol.Envelope) {
	s := r.sub
	if s.req == r {
		s.req = nil
	}
	if r.abandoned || s.leaving || c.subs[s.room] != s {
		return
	}
	var d subscribedData
	_ = json.Unmarshal(env.Data, &d)
	pos, posOK := protocol.ParseEventID(d.Position)
	s.active = true
	switch {
	case r.lastEventID == "":
		// A first subscription: recover from here after a reconnect if no
		// event comes before it.
		if !s.haveLast && posOK {
			s.last, s.haveLast = pos, true
		}
	case d.Recovered != nil && !*d.Recovered:
		// The server could not replay what was missed: the stream goes on
		// from its current position, after a gap the app must hear of.
		s.last, s.haveLast = pos, posOK
		h := s.handler
		ev := Event{Type: protocol.TypeSubscribed, ID: d.Position, Room: s.room, RecoveryFailed: true}
		c.disp.push(func() { h(ev) })
	}
	// Recovered: the missed events follow this answer; nothing to do.
}

// routeLocked delivers a room event to its subscription, dropping what the
// subscription has already seen: events at or before its last position in
// the same epoch. The server sends each event once, so this only guards
// the seam between a replay and live events, where a bug or a future
// multi-node engine could overlap them.
func (c *Client) routeLocked(env *protocol.Envelope) {
	s := c.subs[env.Room]
	if env.Room == "" || s == nil {
		c.eventLocked(env)
		return
	}
	if !s.active || s.leaving {
		return
	}
	if env.Type == protocol.TypeStreamGap {
		c.gapLocked(s, env)
		return
	}
	if env.ID != "" {
		if p, ok := protocol.ParseEventID(env.ID); ok {
			if s.haveLast && p.Epoch == s.last.Epoch && p.Offset <= s.last.Offset {
				c.dupes++
				return
			}
			s.last, s.haveLast = p, true
		}
	}
	h, ev := s.handler, eventOf(env)
	c.disp.push(func() { h(ev) })
}

// streamGapData is the data of `stream_gap`.
type streamGapData struct {
	After  string `json:"after"`
	Until  string `json:"until"`
	Reason string `json:"reason"`
}

// gapLocked applies a `stream_gap` notice: events of the room could not be
// delivered on this live subscription. The position moves past them, so
// the events that follow are in order (and a reconnect recovers from
// there), and the handler gets a RecoveryFailed notice.
func (c *Client) gapLocked(s *Subscription, env *protocol.Envelope) {
	var d streamGapData
	_ = json.Unmarshal(env.Data, &d)
	ev := eventOf(env)
	ev.RecoveryFailed = true
	if p, ok := protocol.ParseEventID(d.Until); ok {
		ev.ID = d.Until
		if !s.haveLast || p.Epoch != s.last.Epoch || p.Offset > s.last.Offset {
			s.last, s.haveLast = p, true
		}
	}
	h := s.handler
	c.disp.push(func() { h(ev) })
}
