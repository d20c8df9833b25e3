package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Client is one connection as the hub sees it. The transport calls
// HandleMessage for each text frame (from one goroutine) and Gone once.
type Client struct {
	hub         *Hub
	id          string
	userID      string
	anonymous   bool
	sink        Sink
	connectedAt time.Time

	heartbeat time.Duration
	jsonPing  bool // the transport sends JSON pings (announced in connection_established)
	remote    string
	transport string // announced in connection_established
	secret    string // an emulated session's secret (ConnectOptions.Session); "" otherwise
	// sessMu serializes DeliverToSession's calls of HandleMessage, which
	// must not run concurrently for one connection.
	sessMu sync.Mutex

	mu          sync.Mutex
	rooms       map[string]*member // nil until the first subscribe
	gone        bool
	errCount    int
	errWindow   time.Time
	pending     bool         // waiting for the auth frame
	creds       *Credentials // nil for anonymous connections
	authTimer   *time.Timer
	expiryTimer *time.Timer
	expiryGen   int
	refreshed   bool // the credentials came from a refresh
	violations  int
	rpcInFlight int
	announced   bool   // OnConnect ran, so OnDisconnect will
	bucket      bucket // touched only by HandleMessage (one goroutine)

	subExpiries map[string]*subExpiry // under mu: token subscriptions' expiries, by room
	joining     string                // under mu: the room of the subscribe in progress (see expireSubscription)
}

// ID returns the connection id.
func (c *Client) ID() string { return c.id }

// UserID returns the user id (generated for anonymous connections; "" until
// a connection that authenticates with a frame has done so).
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID
}

// Close asks the transport to close the connection with d.
func (c *Client) Close(d protocol.Disconnect) { c.sink.Close(d) }

// Gone tells the hub the connection has ended: it leaves every room
// (sending user_left) and is unregistered. Safe to call more than once.
func (c *Client) Gone() { c.GoneWith(0, "") }

// GoneWith is Gone for a transport that knows how the connection ended:
// OnDisconnect sees code and reason.
func (c *Client) GoneWith(code protocol.CloseCode, reason string) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	rooms := c.rooms
	c.rooms = nil
	for _, t := range []*time.Timer{c.authTimer, c.expiryTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.stopSubscriptionsLocked()
	announced := c.announced
	c.mu.Unlock()
	for name := range rooms {
		c.hub.leave(c, name)
	}
	c.hub.remove(c)
	if hook := c.hub.opts.Hooks.OnDisconnect; hook != nil && announced {
		ci := c.connectionInfo()
		ci.CloseCode, ci.CloseReason = code, reason
		hook(ci)
	}
}

func (c *Client) sendEnvelope(e *protocol.Envelope) {
	c.sink.Send(protocol.NewFrame(protocol.Encode(e)))
}

// sendError sends an `error` event; a connection that earns too many in a
// window is closed with 1008, so a broken or hostile client costs little.
func (c *Client) sendError(e *protocol.Error) {
	c.hub.stats.clientErrors.Add(1)
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeError, ID: e.Ref, Data: protocol.EncodeData(e)})
	now := time.Now()
	c.mu.Lock()
	if now.Sub(c.errWindow) > c.hub.opts.ErrorWindow {
		c.errWindow, c.errCount = now, 0
	}
	c.errCount++
	over := c.errCount > c.hub.opts.MaxErrors
	c.mu.Unlock()
	if over {
		c.sink.Close(protocol.NewDisconnect(protocol.ClosePolicyViolation, "too many invalid messages"))
	}
}

// HandleMessage runs one client frame (JSON text) through the protocol.
func (c *Client) HandleMessage(data []byte) {
	h := c.hub
	h.stats.messagesIn.Add(1)
	if now := time.Now(); !c.bucket.take(len(data), now) {
		h.stats.throttled.Add(1)
		if c.bucket.abusive(now) {
			c.sink.Close(protocol.NewDisconnect(protocol.CloseBanned, "message rate limit exceeded persistently"))
			return
		}
		ref := peekRef(data)
		c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeError, ID: ref, Data: protocol.EncodeData(
			protocol.Errorf(protocol.ErrThrottled, ref, "over the message rate limit; slow down (message dropped)"))})
		return
	}
	env, err := protocol.Decode(data)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			pe = protocol.Errorf(protocol.ErrBadJSON, "", "%v", err)
		}
		c.sendError(pe)
		return
	}
	// Engine calls made for this message are bounded: a broker that hangs
	// must not hold the connection's read loop (and so its pongs) forever.
	ctx, cancel := h.engineContext()
	defer cancel()
	c.mu.Lock()
	pending := c.pending
	c.mu.Unlock()
	if pending && c.handlePending(ctx, env) {
		return
	}
	switch env.Type {
	case protocol.TypePing:
		c.sendEnvelope(&protocol.Envelope{Type: protocol.TypePong, ID: env.ID})
	case protocol.TypePong:
		// The answer to a JSON ping (or a client's unsolicited heartbeat):
		// reading the frame was the sign of life; nothing to answer, and
		// no error, so the seeds' clients are not pushed off with 1008.
	case protocol.TypeSubscribe:
		c.subscribe(ctx, env, false)
	case protocol.TypeSync:
		c.subscribe(ctx, env, true)
	case protocol.TypeUnsubscribe:
		c.unsubscribe(env)
	case protocol.TypeHistory:
		c.history(ctx, env)
	case protocol.TypePresence:
		c.presence(ctx, env)
	case protocol.TypeRefresh:
		c.refresh(ctx, env)
	case protocol.TypeAuth:
		c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "this connection is already authenticated; use refresh to renew its token"))
	case protocol.TypeRPC, protocol.TypeJSONRPC:
		c.rpcCall(env)
	default:
		if protocol.IsServerOnly(env.Type) {
			c.sendError(protocol.Errorf(protocol.ErrUnknownType, env.ID, "type %q is sent by the server only", env.Type))
			return
		}
		c.publish(ctx, env)
	}
}

// subscribe handles `subscribe` (and `sync`, which requires an existing
// subscription). With last_event_id it replays the missed events first:
// the member parks live events while history is read, then releases those
// after the replayed ones, so the client sees each event exactly once.
func (c *Client) subscribe(ctx context.Context, env *protocol.Envelope, sync bool) {
	h := c.hub
	if e := protocol.ValidateRoom(env.Room); e != nil {
		e.Ref = env.ID
		c.sendError(e)
		return
	}
	var since protocol.StreamPosition
	recover := env.LastEventID != ""
	if recover {
		p, ok := protocol.ParseEventID(env.LastEventID)
		if !ok {
			c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "last_event_id %q is not an event id (EPOCH-OFFSET)", env.LastEventID))
			return
		}
		since = p
	} else if sync {
		c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "sync needs last_event_id"))
		return
	}
	var subExp time.Time
	if !sync {
		var ok bool
		if subExp, ok = c.maySubscribe(ctx, env); !ok {
			return
		}
	}
	if hook := h.opts.Hooks.OnSubscribe; hook != nil && !sync {
		if err := hook(ctx, c.connectionInfo(), env.Room); err != nil {
			c.hookRefused(err, env.ID)
			return
		}
	}
	var appData json.RawMessage
	if hook := h.opts.Hooks.OnSubscribeData; hook != nil && !sync {
		d, err := hook(ctx, c.connectionInfo(), env.Room, env.Data)
		if err != nil {
			c.hookRefused(err, env.ID)
			return
		}
		if d != nil && !json.Valid(d) {
			c.sendError(protocol.Errorf(protocol.ErrInternal, env.ID, "the subscribe hook returned invalid JSON"))
			return
		}
		appData = d
	}
	defer c.doneJoining()
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.joining = env.Room
	_, already := c.rooms[env.Room]
	if sync && !already {
		c.mu.Unlock()
		c.sendError(protocol.Errorf(protocol.ErrNotSubscribed, env.ID, "sync for room %q, which this connection has not subscribed", env.Room))
		return
	}
	if !already && len(c.rooms) >= h.opts.MaxRoomsPerClient {
		c.mu.Unlock()
		c.sendError(protocol.Errorf(protocol.ErrTooManyRooms, env.ID, "a connection may be in at most %d rooms", h.opts.MaxRoomsPerClient))
		return
	}
	c.mu.Unlock()

	m, members, wasMember, err := h.join(ctx, c, env.Room, true)
	if err != nil {
		c.sendError(protocol.Errorf(protocol.ErrInternal, env.ID, "subscribe failed: %v", err))
		return
	}
	c.mu.Lock()
	if c.gone { // the connection ended while joining: undo
		c.mu.Unlock()
		h.leave(c, env.Room)
		return
	}
	if c.rooms == nil {
		c.rooms = make(map[string]*member, 1)
	}
	c.rooms[env.Room] = m
	c.mu.Unlock()

	q := engine.HistoryQuery{Since: since}
	if !recover {
		q.Limit = 1 // only Latest is needed; 0 would mean "no cap"
	}
	rs := h.settings(env.Room)
	hist, err := h.eng.History(ctx, env.Room, q, rs.history)
	if err != nil {
		h.stats.engineErrors.Add(1)
		m.release(protocol.StreamPosition{})
		if !wasMember { // undo the join: no half-made subscription
			c.mu.Lock()
			delete(c.rooms, env.Room)
			c.mu.Unlock()
			h.leave(c, env.Room)
		}
		c.sendError(protocol.Errorf(protocol.ErrInternal, env.ID, "subscribe failed, reading room history: %v", err))
		return
	}
	data := protocol.SubscribedData{Members: members, Position: hist.Latest.EventID(), Data: appData}
	last := hist.Latest
	var replay []*protocol.Frame
	if recover {
		ok := hist.Complete
		if ok {
			replay, ok = h.replayFrames(env.Room, hist.Publications)
		}
		data.Recovered = &ok
		data.Replayed = len(replay)
	}
	if !subExp.IsZero() {
		data.ExpiresAt = subExp.UnixMilli()
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeSubscribed, ID: env.ID, Room: env.Room, Data: protocol.EncodeData(data)})
	if !sync { // after the answer: subscription_expiring must not overtake it
		c.armSubscription(env.Room, subExp, wasMember)
	}
	if recover && *data.Recovered {
		for _, f := range replay {
			c.sink.Send(f)
		}
		h.stats.recovered.Add(1)
	} else if recover {
		h.stats.recoveryFailed.Add(1)
	}
	m.release(last)
}

func (c *Client) unsubscribe(env *protocol.Envelope) {
	if e := protocol.ValidateRoom(env.Room); e != nil {
		e.Ref = env.ID
		c.sendError(e)
		return
	}
	c.mu.Lock()
	_, ok := c.rooms[env.Room]
	delete(c.rooms, env.Room)
	c.mu.Unlock()
	c.armSubscription(env.Room, time.Time{}, false)
	if !ok {
		c.sendError(protocol.Errorf(protocol.ErrNotSubscribed, env.ID, "not subscribed to room %q", env.Room))
		return
	}
	c.hub.leave(c, env.Room)
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeUnsubscribed, ID: env.ID, Room: env.Room})
}

// minGlobalIDLen is the shortest publish id an anonymous connection may use
// for deduplication across reconnects (a UUID has 36 characters).
const minGlobalIDLen = 16

// publish handles an application event sent to a room.
func (c *Client) publish(ctx context.Context, env *protocol.Envelope) {
	if env.Room == "" {
		c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "an event of type %q needs a room", env.Type))
		return
	}
	if e := protocol.ValidateRoom(env.Room); e != nil {
		e.Ref = env.ID
		c.sendError(e)
		return
	}
	if !c.allowed(c.hub.settings(env.Room).perms.Publish, env.Room, false) {
		c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "not allowed to publish to room %q", env.Room))
		return
	}
	if hook := c.hub.opts.Hooks.OnPublish; hook != nil {
		data, err := hook(ctx, c.connectionInfo(), env.Room, env.Type, env.Data)
		if err != nil {
			c.hookRefused(err, env.ID)
			return
		}
		if data != nil {
			if !json.Valid(data) {
				c.sendError(protocol.Errorf(protocol.ErrInternal, env.ID, "the publish hook returned invalid JSON"))
				return
			}
			env.Data = data
		}
	}
	key := ""
	if env.ID != "" {
		// A re-sent publish (same id) is acknowledged again, not delivered
		// again. An anonymous user gets a new id per connection, so a retry
		// after a reconnect can only be matched by the message id itself:
		// ids of minGlobalIDLen or more (the SDKs send UUIDs) are treated
		// as unique across connections; shorter ones ("1", "2", ...) are
		// deduplicated within their connection only, so two clients
		// counting from 1 do not swallow each other's messages.
		switch {
		case c.anonymous && len(env.ID) >= minGlobalIDLen:
			key = "g:" + env.ID
		case c.anonymous:
			key = "c:" + c.id + ":" + env.ID
		default:
			key = "u:" + strconv.Itoa(len(c.userID)) + ":" + c.userID + ":" + env.ID
		}
	}
	res, err := c.hub.publish(ctx, env.Room, &engine.Publication{
		Type: env.Type, Data: env.Data, UserID: c.userID, ClientID: c.id, ExcludeSender: env.ExcludeSelf,
	}, key)
	if err != nil {
		c.sendError(protocol.Errorf(protocol.ErrInternal, env.ID, "publish not confirmed (retry with the same id): %v", err))
		return
	}
	if env.ID != "" {
		c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeAck, ID: env.ID, Room: env.Room,
			Data: protocol.EncodeData(protocol.AckData{EventID: res.EventID, Duplicate: res.Duplicate})})
	}
}

// maySubscribe applies the room's subscribe permission and, for private
// rooms, the subscription token; a refusal is a counted violation. It
// returns when the subscription token expires (zero: none, or never).
func (c *Client) maySubscribe(ctx context.Context, env *protocol.Envelope) (time.Time, bool) {
	h := c.hub
	rs := h.settings(env.Room)
	var sd protocol.SubscribeData
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, &sd); err != nil {
			c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "subscribe data must be {\"token\": string}: %v", err))
			return time.Time{}, false
		}
	}
	subToken := false
	var exp time.Time
	if sd.Token != "" {
		if h.opts.Auth.Subscriptions == nil {
			c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "subscription tokens are not accepted by this server"))
			return time.Time{}, false
		}
		var err error
		if exp, err = c.verifySubscription(ctx, sd.Token, env.Room); err != nil {
			c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "subscription token rejected: %v", err))
			return time.Time{}, false
		}
		subToken = true
	}
	if rs.private && !subToken && !c.allowed(PermToken, env.Room, false) {
		c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "room %q is private: subscribe with a subscription token", env.Room))
		return time.Time{}, false
	}
	if !c.allowed(rs.perms.Subscribe, env.Room, subToken) {
		c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "not allowed to subscribe to room %q", env.Room))
		return time.Time{}, false
	}
	return exp, true
}

// peekRef reads the request id of a frame that will not be decoded in
// full (it was throttled), so the error can name the request. Large
// frames are not parsed for it.
func peekRef(b []byte) string {
	if len(b) > 4096 {
		return ""
	}
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.ID) > protocol.MaxIDLen {
		return ""
	}
	return v.ID
}
