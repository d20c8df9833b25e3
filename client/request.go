package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

type reqKind uint8

const (
	kindPublish reqKind = iota
	kindSubscribe
	kindUnsubscribe
	kindHistory
	kindPresence
	kindRPC
	kindRefresh
)

// request is a message that waits for a reply with its id. It stays in
// Client.pending until answered, given up or the client closes; if its
// connection ends first it is sent again on the next one (the server
// deduplicates publishes by id).
type request struct {
	id    string
	kind  reqKind
	seq   uint64 // creation order: re-sends keep it
	room  string
	frame []byte        // nil for subscribes, built when sent
	sub   *Subscription // subscribe, unsubscribe
	// lastEventID is what the subscribe carried when it was last sent.
	lastEventID string
	sentOn      *wsConn // nil while queued
	// background: made by the client (a re-subscription), nobody waits.
	background bool
	// abandoned: its caller gave up after it was sent; the reply is
	// swallowed and it is not sent again.
	abandoned bool
	reply     chan result // buffered; receives exactly one result

	token string // a subscribe's subscription token
}

type result struct {
	env *protocol.Envelope
	err error
}

func (r *request) resolve(res result) {
	select {
	case r.reply <- res:
	default: // already resolved: cannot happen, removal from pending guards it
	}
}

// outItem is one queued message: a request or a raw frame from Send.
type outItem struct {
	req *request
	raw []byte
}

func (c *Client) newRequestLocked(kind reqKind, room string) *request {
	c.seq++
	return &request{id: newID(), kind: kind, seq: c.seq, room: room, reply: make(chan result, 1)}
}

// enqueueLocked queues r (or a raw frame) if the queue has room.
func (c *Client) enqueueLocked(it outItem) error {
	if c.closed {
		return ErrClosed
	}
	if len(c.queue) >= c.opts.QueueSize {
		return ErrQueueFull
	}
	c.queue = append(c.queue, it)
	if it.req != nil {
		c.pending[it.req.id] = it.req
	}
	return nil
}

// frameLocked returns r's wire form.
func (c *Client) frameLocked(r *request) []byte {
	if r.kind != kindSubscribe {
		return r.frame
	}
	env := protocol.Envelope{Type: protocol.TypeSubscribe, ID: r.id, Room: r.room}
	if s := r.sub; s.haveLast {
		env.LastEventID = s.last.EventID()
	}
	r.lastEventID = env.LastEventID
	subscribeFrame(&env, r.token)
	return protocol.Encode(&env)
}

// roundTrip queues a request and waits for its reply. If ctx ends first
// the request is given up: dropped if not yet sent, otherwise its reply
// is ignored when it comes.
func (c *Client) roundTrip(ctx context.Context, kind reqKind, room string, env *protocol.Envelope) (*protocol.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	r := c.newRequestLocked(kind, room)
	env.ID = r.id
	r.frame = protocol.Encode(env)
	if err := c.enqueueLocked(outItem{req: r}); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	cn := c.cur
	c.mu.Unlock()
	if cn != nil {
		cn.wakeWriter()
	}
	return c.wait(ctx, r, nil)
}

// wait waits for r's reply or ctx. onAbandon runs under c.mu when ctx
// ends first.
func (c *Client) wait(ctx context.Context, r *request, onAbandon func()) (*protocol.Envelope, error) {
	select {
	case res := <-r.reply:
		return res.env, res.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.pending[r.id] != r {
		c.mu.Unlock()
		res := <-r.reply // resolved meanwhile
		return res.env, res.err
	}
	if r.sentOn == nil {
		delete(c.pending, r.id) // the writer skips it
	} else {
		r.abandoned = true
	}
	if onAbandon != nil {
		onAbandon()
	}
	c.mu.Unlock()
	return nil, ctx.Err()
}

// Publish publishes an event of type typ ("" means "message") with data
// (marshalled with encoding/json; a json.RawMessage is sent as is) to
// room, and waits for the server's ack. The client needs no subscription
// to the room.
//
// Each publish carries a random id. If the connection ends before the ack
// arrives, the client sends the publish again, with the same id, after it
// reconnects, and keeps doing so until the ack comes or ctx ends; the
// server delivers an id once (within its 2-minute dedup window), so a
// publish is delivered at most once and, unless ctx ends first, exactly
// once. If ctx ends before the ack, the event may or may not have been
// published. A *ServerError reports that the server refused it. Options
// such as ExcludeSelf change this publish only.
func (c *Client) Publish(ctx context.Context, room, typ string, data any, opts ...PublishOption) (Ack, error) {
	var po publishOptions
	for _, o := range opts {
		o(&po)
	}
	if e := protocol.ValidateRoom(room); e != nil {
		return Ack{}, fmt.Errorf("client: publish: %w", e)
	}
	if typ == "" {
		typ = protocol.TypeMessage
	}
	if protocol.IsReserved(typ) {
		return Ack{}, fmt.Errorf("client: publish: event type %q is reserved by the protocol", typ)
	}
	var raw json.RawMessage
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return Ack{}, fmt.Errorf("client: publish: encode data: %w", err)
		}
		raw = b
	}
	env, err := c.roundTrip(ctx, kindPublish, room, &protocol.Envelope{Type: typ, Room: room, Data: raw, ExcludeSelf: po.excludeSelf})
	if err != nil {
		return Ack{}, err
	}
	var ack Ack
	if err := json.Unmarshal(env.Data, &ack); err != nil {
		return Ack{}, fmt.Errorf("client: publish: bad ack: %w", err)
	}
	return ack, nil
}

// History reads a page of room's history: the events after the event id
// since (all kept events up to limit when since is ""), oldest first. limit
// 0 means the server's default (100); the server caps it at 1,000. The
// request is sent again after a reconnect until ctx ends.
func (c *Client) History(ctx context.Context, room, since string, limit int) (HistoryPage, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return HistoryPage{}, fmt.Errorf("client: history: %w", e)
	}
	if limit < 0 {
		return HistoryPage{}, errors.New("client: history: limit must not be negative")
	}
	data, _ := json.Marshal(struct {
		Since string `json:"since,omitempty"`
		Limit int    `json:"limit,omitempty"`
	}{since, limit})
	env, err := c.roundTrip(ctx, kindHistory, room, &protocol.Envelope{Type: protocol.TypeHistory, Room: room, Data: data})
	if err != nil {
		return HistoryPage{}, err
	}
	var page HistoryPage
	if err := json.Unmarshal(env.Data, &page); err != nil {
		return HistoryPage{}, fmt.Errorf("client: history: bad history_result: %w", err)
	}
	return page, nil
}

// Presence returns who is in room across the cluster; with countsOnly the
// member list is left out. The request is sent again after a reconnect
// until ctx ends.
func (c *Client) Presence(ctx context.Context, room string, countsOnly bool) (PresenceInfo, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return PresenceInfo{}, fmt.Errorf("client: presence: %w", e)
	}
	var data json.RawMessage
	if countsOnly {
		data = json.RawMessage(`{"counts_only":true}`)
	}
	env, err := c.roundTrip(ctx, kindPresence, room, &protocol.Envelope{Type: protocol.TypePresence, Room: room, Data: data})
	if err != nil {
		return PresenceInfo{}, err
	}
	var info PresenceInfo
	if err := json.Unmarshal(env.Data, &info); err != nil {
		return PresenceInfo{}, fmt.Errorf("client: presence: bad presence_result: %w", err)
	}
	return info, nil
}

// Send queues one protocol message, unchanged, for anything the client has
// no method for. msg must be a JSON object. Send does not wait for the
// write or for a reply: replies, and events of rooms subscribed this way,
// go to Options.OnEvent (and `error` events to Options.OnError). The client
// keeps no state for such messages: a subscription made with Send is not
// restored after a reconnect, and a message sent on a connection that
// breaks is not sent again. ctx is only checked before queueing.
func (c *Client) Send(ctx context.Context, msg json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := bytes.TrimLeft(msg, " \t\r\n")
	if len(t) == 0 || t[0] != '{' || !json.Valid(msg) {
		return errors.New("client: send: the message must be a JSON object")
	}
	raw := append([]byte(nil), msg...)
	c.mu.Lock()
	err := c.enqueueLocked(outItem{raw: raw})
	cn := c.cur
	c.mu.Unlock()
	if err == nil && cn != nil {
		cn.wakeWriter()
	}
	return err
}

// RPC calls method on the server with params (marshalled with
// encoding/json; nil sends none) and returns the JSON result. The
// application answers its own methods (a handler in a program that embeds
// the hub, or the backend behind the server's RPC proxy); "history" and
// "presence" are built in. A JSON-RPC error answer is an *RPCError.
//
// A call made while the client is reconnecting is queued and sent when it
// is open. A call already sent when the connection ends is not sent again,
// since the method may not be safe to run twice: RPC returns
// ErrConnectionLost, and the method may or may not have run.
func (c *Client) RPC(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if method == "" {
		return nil, errors.New("client: rpc: method is empty")
	}
	call := struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params,omitempty"`
	}{Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("client: rpc %q: encode params: %w", method, err)
		}
		call.Params = b
	}
	data, _ := json.Marshal(call)
	env, err := c.roundTrip(ctx, kindRPC, "", &protocol.Envelope{Type: protocol.TypeRPC, Data: data})
	if err != nil {
		return nil, err
	}
	var res struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(env.Data, &res); err != nil {
		return nil, fmt.Errorf("client: rpc %q: bad rpc_result: %w", method, err)
	}
	if res.Error != nil {
		return nil, res.Error
	}
	if res.Result == nil {
		res.Result = json.RawMessage("null")
	}
	return res.Result, nil
}

// refreshSession answers session_expiring: a new token from GetToken, sent
// as `refresh`. The token also serves the next handshake.
func (c *Client) refreshSession() {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.life, c.opts.HandshakeTimeout)
	defer cancel()
	tok, err := c.opts.GetToken(ctx)
	if err != nil {
		c.mu.Lock()
		c.reportLocked(fmt.Errorf("client: session expiring, and no new token: %w", err))
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	data, _ := json.Marshal(map[string]string{"token": tok})
	_, err = c.roundTrip(ctx, kindRefresh, "", &protocol.Envelope{Type: protocol.TypeRefresh, Data: data})
	if err != nil && !errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrClosed) {
		c.mu.Lock()
		c.reportLocked(fmt.Errorf("client: refresh: %w", err))
		c.mu.Unlock()
	}
}

// handle processes one server message other than connection_established
// and disconnect.
func (c *Client) handle(cn *wsConn, env *protocol.Envelope) {
	switch env.Type {
	case protocol.TypeSubscribed, protocol.TypeUnsubscribed, protocol.TypeAck,
		protocol.TypeHistoryResult, protocol.TypePresenceResult, protocol.TypeRPCResult,
		protocol.TypeRefreshed:
		c.handleReply(cn, env)
	case protocol.TypeSessionExpiring:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.opts.GetToken == nil || c.closed {
			c.eventLocked(env)
			return
		}
		c.wg.Add(1)
		go c.refreshSession()
	case protocol.TypeSubscriptionExpiring:
		c.mu.Lock()
		if s := c.subs[env.Room]; s != nil && s.getToken != nil && s.active && !s.leaving {
			c.fetchTokenLocked(s)
		} else {
			c.eventLocked(env)
		}
		c.mu.Unlock()
	case protocol.TypePong:
		c.mu.Lock()
		if env.ID != "" && env.ID == cn.pingID {
			cn.pingOut, cn.missed = false, 0
		} else {
			c.eventLocked(env)
		}
		c.mu.Unlock()
	case protocol.TypeError:
		c.handleError(cn, env)
	case protocol.TypePing:
		// A JSON heartbeat (the server's json_ping option, for browsers):
		// this client answers the WebSocket pings beside it, which is all
		// the server needs, so it is not passed on.
	default:
		c.mu.Lock()
		c.routeLocked(env)
		c.mu.Unlock()
	}
}

// takeLocked removes and returns the request a reply on cn answers.
func (c *Client) takeLocked(cn *wsConn, id string) *request {
	r := c.pending[id]
	if r == nil || r.sentOn != cn {
		return nil
	}
	delete(c.pending, id)
	return r
}

func (c *Client) handleReply(cn *wsConn, env *protocol.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.takeLocked(cn, env.ID)
	if r == nil {
		if env.Type != protocol.TypeUnsubscribed || !c.subscriptionEndedLocked(env) {
			c.eventLocked(env) // a reply to a Send
		}
		return
	}
	switch r.kind {
	case kindSubscribe:
		c.subscribedLocked(r, env)
	case kindUnsubscribe:
		if s := r.sub; c.subs[s.room] == s {
			delete(c.subs, s.room)
		}
	}
	if !r.abandoned {
		r.resolve(result{env: env})
	}
}

func (c *Client) handleError(cn *wsConn, env *protocol.Envelope) {
	var pe protocol.Error
	_ = json.Unmarshal(env.Data, &pe)
	se := &ServerError{Code: pe.Code, Message: pe.Message}
	id := env.ID
	if id == "" {
		id = pe.Ref
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r *request
	if id != "" {
		r = c.takeLocked(cn, id)
	}
	if r == nil {
		c.reportLocked(se)
		return
	}
	switch r.kind {
	case kindSubscribe:
		s := r.sub
		if s.req == r {
			s.req = nil
		}
		if c.subs[s.room] == s && !s.leaving {
			delete(c.subs, s.room)
			if r.background {
				c.reportLocked(fmt.Errorf("client: subscription to %q lost: the server refused to restore it: %w", s.room, se))
			}
		}
	case kindUnsubscribe:
		// not_subscribed: the server has already forgotten it; fine.
		if s := r.sub; c.subs[s.room] == s {
			delete(c.subs, s.room)
		}
		if se.Code == protocol.ErrNotSubscribed {
			if !r.abandoned {
				r.resolve(result{})
			}
			return
		}
	}
	if !r.abandoned {
		r.resolve(result{err: se})
	}
}

// eventLocked hands a message the client does not consume to OnEvent.
func (c *Client) eventLocked(env *protocol.Envelope) {
	if f := c.opts.OnEvent; f != nil {
		ev := eventOf(env)
		c.disp.push(func() { f(ev) })
	}
}
