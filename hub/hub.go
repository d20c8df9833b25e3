// Package hub is Switchboard's core: it holds the connections of this node,
// groups them into rooms, runs the protocol of docs/protocol.md for each
// connection, and fans events out. It knows nothing of HTTP or WebSocket
// framing: a transport hands it a Sink per connection and the text of each
// frame; an engine (engine/memory, or a broker for a cluster) carries events
// between nodes and keeps room streams.
//
// Lock order: Hub.subLocks[i] -> roomShard.mu -> room.mu -> member.mu;
// Client.mu is never held while taking any of those. The engine may call
// the Handler methods while holding its own stream lock, so the hub never
// calls the engine while holding roomShard.mu, room.mu or member.mu.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Sink is what the hub needs from a transport connection.
type Sink interface {
	// Send queues f for the connection without blocking. It returns false
	// if the connection is closing or the frame was refused by the queue
	// policy (which then closes the connection as a slow consumer).
	Send(f *protocol.Frame) bool
	// Close sends a `disconnect` event and a close frame with d.Code after
	// what is already queued, then closes the connection. It may be called
	// more than once; the first call wins.
	Close(d protocol.Disconnect)
}

// ConnectOptions describe a new connection to Hub.Connect: what the
// transport learnt at the handshake. (ConnectionInfo is what hooks are
// told about a connection.)
type ConnectOptions struct {
	// Credentials are what the handshake authenticated. nil: the
	// connection authenticates with an `auth` frame if the hub has an
	// Authenticator, and is anonymous otherwise.
	Credentials *Credentials
	// UserID is shorthand for Credentials{UserID: UserID}.
	UserID string
	// RemoteAddr is the client's address, for logs.
	RemoteAddr string
	// Heartbeat is the server ping interval announced to the client.
	Heartbeat time.Duration
	// JSONPing says the transport also sends {"type":"ping"} text frames
	// with its heartbeats; connection_established announces it.
	JSONPing bool
	// Transport names the transport in connection_established
	// ("websocket", "sse", "http_stream"); empty leaves it out.
	Transport string
	// Session makes the connection an emulated one whose frames arrive
	// through DeliverToSession (HTTP POSTs, on any node): the hub draws a
	// secret and connection_established carries the session string.
	// Such a connection cannot authenticate with an `auth` frame: without
	// Credentials it is anonymous if the hub allows that, else it is
	// closed with 4001 at once.
	Session bool
}

// Options configure a Hub. Engine is required; the other zero values work:
// history of 100 events for 5 minutes per room, echo on, join/leave events
// on.
type Options struct {
	// Engine carries events and keeps streams. Required: the caller builds
	// it (server does, from its config; engine/memory for one node).
	Engine engine.Engine
	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger
	// NodeID names this node in connection_established and stats.
	// Default: a random id.
	NodeID string
	// MaxRoomsPerClient caps subscriptions per connection. Default 128.
	MaxRoomsPerClient int
	// History is the default history policy of every room.
	// Default: the last 100 events, kept 5 minutes.
	History engine.HistoryPolicy
	// NoHistory turns history (and so recovery) off for every room.
	NoHistory bool
	// NoPresence turns presence tracking off for every room.
	NoPresence bool
	// Namespaces override these settings per namespace: the part of a room
	// name before the first ':' ("chat" for "chat:lobby"; "" for rooms
	// without one).
	Namespaces map[string]Namespace
	// NoEcho stops a client's own publications coming back to it.
	NoEcho bool
	// NoJoinLeave turns off user_joined and user_left events.
	NoJoinLeave bool
	// JoinLeaveRate is how many user_joined/user_left announcements one
	// room sends at once per second (burst twice that); one connection
	// may cause 4 in a room at once and one more every 2 s. Beyond
	// either, announcements are held for JoinLeaveWindow and sent
	// together, a join and a leave of one connection cancelling out.
	// Defaults 20/s and 1 s; a negative JoinLeaveRate sends every
	// announcement at once.
	JoinLeaveRate   int
	JoinLeaveWindow time.Duration
	// MaxErrors is how many `error` events a connection may earn in
	// ErrorWindow before it is closed with 1008. Default 50 per 10 s.
	MaxErrors   int
	ErrorWindow time.Duration
	// DedupWindow is how long a client publish id is remembered so a
	// re-sent publish is not delivered twice. Default 2 minutes.
	DedupWindow time.Duration
	// Auth configures authentication; the zero value is none.
	Auth AuthOptions
	// Permissions are the default room permissions (see Permissions).
	Permissions Permissions
	// MaxConnectionsPerUser caps one user's connections on this node;
	// beyond it a new connection is closed with 4004. 0: no cap.
	MaxConnectionsPerUser int
	// MaxMessagesPerSecond and MaxBytesPerSecond limit what one connection
	// may send (token buckets with a burst of two seconds' worth). Over
	// the limit a message gets `error` throttled and is dropped; a
	// connection that keeps going is closed with 4004. 0 means no limit
	// (the switchboard binary sets DefaultMaxMessagesPerSecond and
	// DefaultMaxBytesPerSecond).
	MaxMessagesPerSecond int
	MaxBytesPerSecond    int
	// RPCTimeout bounds one RPC call. Default 10 s.
	RPCTimeout time.Duration
	// RPCFallback answers calls to methods without a handler (the
	// standalone server's RPC proxy). nil: such calls get "method not
	// found".
	RPCFallback RPCHandler
	// MaxRPCInFlight bounds the calls one connection may have running.
	// Default 16.
	MaxRPCInFlight int
	// Hooks let an embedding application watch and steer connections.
	Hooks Hooks
	// MaxReplayBytes and MaxReplayMessages bound what one recovery replays
	// and one history page holds, so that neither overflows the client's
	// outbound queue (set them below the transport's queue bounds).
	// Beyond them recovery answers recovered:false and history pages end
	// early with has_more. Defaults 512 KiB and 512 events.
	MaxReplayBytes    int
	MaxReplayMessages int
	// EngineTimeout bounds each engine call made for a client (publish,
	// subscribe, presence, join/leave notices). Default 5 s.
	EngineTimeout time.Duration
	// SessionTimeout is how long DeliverToSession waits for another node
	// to claim a session before it answers ErrUnknownSession (the session
	// ended, or its node is gone). Default 3 s.
	SessionTimeout time.Duration
}

// Namespace overrides the hub's room settings for one namespace.
type Namespace struct {
	// History replaces Options.History; a policy with Size 0 turns history
	// off. nil keeps the hub's policy.
	History *engine.HistoryPolicy
	// NoPresence turns presence off; NoJoinLeave turns join/leave events
	// off (they are also off where presence is).
	NoPresence  bool
	NoJoinLeave bool
	// Permissions override the hub's default permissions for this
	// namespace's rooms; empty fields keep them.
	Permissions Permissions
	// Private rooms need a subscription token (or a token listing the
	// room) to subscribe, whatever the Subscribe permission says.
	Private bool
}

// roomSettings are a room's effective settings.
type roomSettings struct {
	history   engine.HistoryPolicy
	presence  bool
	joinLeave bool
	perms     Permissions
	private   bool
}

// Defaults for Options.
const (
	DefaultMaxRoomsPerClient = 128
	DefaultHistorySize       = 100
	DefaultHistoryTTL        = 5 * time.Minute
	DefaultMaxErrors         = 50
	DefaultErrorWindow       = 10 * time.Second
	DefaultDedupWindow       = 2 * time.Minute
	// DefaultMaxMessagesPerSecond is what the switchboard binary allows one
	// connection: far above what a person types or a well-behaved app
	// sends, low enough that one connection cannot take a core.
	DefaultMaxMessagesPerSecond = 200
	DefaultMaxBytesPerSecond    = 1 << 20
	// Half of the transport's default queue bounds (1 MiB, 1024 messages).
	DefaultMaxReplayBytes    = 512 << 10
	DefaultMaxReplayMessages = 512
	DefaultEngineTimeout     = 5 * time.Second
	DefaultSessionTimeout    = 3 * time.Second
)

// numShards spreads rooms and connections over independent locks.
const numShards = 64

// numSubLocks serializes joins and leaves of one room (and so its engine
// subscribe/unsubscribe) without one lock for all rooms.
const numSubLocks = 256

// Hub is the connection and room registry of one node. Create it with New,
// start it with Run. All methods are safe for concurrent use.
type Hub struct {
	opts     Options
	eng      engine.Engine
	log      *slog.Logger
	seed     maphash.Seed
	rooms    [numShards]roomShard
	conns    [numShards]connShard
	subLocks [numSubLocks]sync.Mutex
	stats    counters
	closing  atomic.Bool
	defaults roomSettings
	ns       map[string]roomSettings
	bansMu   sync.Mutex
	bans     map[string]time.Time // user -> banned until
	rpcMu    sync.RWMutex
	rpc      map[string]RPCHandler
	// localEngine is set for an engine.Local engine (memory), whose calls
	// need no timeout.
	localEngine bool
	jl          *joinLeaveLimiter
	sessions    sessionRouter
}

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]*room
}

type connShard struct {
	mu    sync.RWMutex
	byID  map[string]*Client
	users map[string]map[*Client]struct{}
}

// New returns a hub. It does not start the engine; call Run.
func New(opts Options) (*Hub, error) {
	if opts.Engine == nil {
		return nil, errors.New("hub: Options.Engine is required (engine/memory for one node)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NodeID == "" {
		opts.NodeID = randomID(4)
	}
	if opts.MaxRoomsPerClient <= 0 {
		opts.MaxRoomsPerClient = DefaultMaxRoomsPerClient
	}
	if opts.NoHistory {
		opts.History = engine.HistoryPolicy{}
	} else if opts.History == (engine.HistoryPolicy{}) {
		opts.History = engine.HistoryPolicy{Size: DefaultHistorySize, TTL: DefaultHistoryTTL}
	}
	if opts.History.Size < 0 || opts.History.TTL < 0 {
		return nil, fmt.Errorf("hub: history size and TTL must not be negative (got %d, %s)", opts.History.Size, opts.History.TTL)
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = DefaultMaxErrors
	}
	if opts.ErrorWindow <= 0 {
		opts.ErrorWindow = DefaultErrorWindow
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	h := &Hub{opts: opts, eng: opts.Engine, log: opts.Logger, seed: maphash.MakeSeed()}
	h.sessions.init()
	opts.Auth.fill()
	def := PermAnyone
	if opts.Auth.Authenticator != nil {
		def = PermAuthenticated
	}
	perms, err := opts.Permissions.resolve(def)
	if err != nil {
		return nil, fmt.Errorf("hub: default permissions: %w", err)
	}
	if opts.RPCTimeout <= 0 {
		opts.RPCTimeout = DefaultRPCTimeout
	}
	if opts.EngineTimeout <= 0 {
		opts.EngineTimeout = DefaultEngineTimeout
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	if opts.MaxReplayBytes <= 0 {
		opts.MaxReplayBytes = DefaultMaxReplayBytes
	}
	if opts.MaxReplayMessages <= 0 {
		opts.MaxReplayMessages = DefaultMaxReplayMessages
	}
	if opts.MaxRPCInFlight <= 0 {
		opts.MaxRPCInFlight = DefaultMaxRPCInFlight
	}
	if opts.JoinLeaveRate == 0 {
		opts.JoinLeaveRate = DefaultJoinLeaveRate
	}
	if opts.JoinLeaveWindow <= 0 {
		opts.JoinLeaveWindow = DefaultJoinLeaveWindow
	}
	h.opts = opts
	h.jl = newJoinLeaveLimiter(h, opts)
	if l, ok := opts.Engine.(engine.Local); ok {
		h.localEngine = l.Local()
	}
	h.bans = make(map[string]time.Time)
	h.rpc = make(map[string]RPCHandler)
	h.registerBuiltinRPC()
	h.defaults = roomSettings{history: opts.History, presence: !opts.NoPresence, joinLeave: !opts.NoPresence && !opts.NoJoinLeave, perms: perms}
	h.ns = make(map[string]roomSettings, len(opts.Namespaces))
	for name, n := range opts.Namespaces {
		if name != "" {
			if e := protocol.ValidateRoom(name); e != nil || strings.Contains(name, ":") {
				return nil, fmt.Errorf("hub: namespace %q is not a valid namespace name (a room-name prefix without ':')", name)
			}
		}
		rs := h.defaults
		if n.History != nil {
			if n.History.Size < 0 || n.History.TTL < 0 {
				return nil, fmt.Errorf("hub: namespace %q: history size and TTL must not be negative", name)
			}
			rs.history = *n.History
		}
		if n.NoPresence {
			rs.presence, rs.joinLeave = false, false
		}
		if n.NoJoinLeave {
			rs.joinLeave = false
		}
		p := n.Permissions
		for _, pair := range []struct{ f, d *Permission }{{&p.Subscribe, &perms.Subscribe}, {&p.Publish, &perms.Publish}, {&p.Presence, &perms.Presence}, {&p.History, &perms.History}} {
			if *pair.f == "" {
				*pair.f = *pair.d
			}
		}
		if rs.perms, err = p.resolve(def); err != nil {
			return nil, fmt.Errorf("hub: namespace %q: %w", name, err)
		}
		rs.private = n.Private
		h.ns[name] = rs
	}
	for i := range h.rooms {
		h.rooms[i].rooms = make(map[string]*room)
		h.conns[i].byID = make(map[string]*Client)
		h.conns[i].users = make(map[string]map[*Client]struct{})
	}
	return h, nil
}

// Run starts the engine; the hub delivers its events until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	if err := h.eng.Run(ctx, (*engineHandler)(h)); err != nil {
		return fmt.Errorf("hub: start engine: %w", err)
	}
	if ns, ok := h.eng.(engine.NodeStats); ok {
		go h.reportStats(ctx, ns)
	}
	return nil
}

// Engine returns the hub's engine.
func (h *Hub) Engine() engine.Engine { return h.eng }

// NodeID returns this node's id.
func (h *Hub) NodeID() string { return h.opts.NodeID }

// Ready reports whether the hub can serve: not shutting down and the
// engine reachable.
func (h *Hub) Ready(ctx context.Context) error {
	if h.closing.Load() {
		return errors.New("hub: shutting down")
	}
	return h.eng.Ready(ctx)
}

// engineContext bounds an engine call made on a client's behalf. A local
// engine (engine.Local, the memory engine) does no I/O and cannot hang, so it gets no timer: a
// single node's publish path stays free of one allocation set per message.
func (h *Hub) engineContext() (context.Context, context.CancelFunc) {
	if h.localEngine {
		return context.Background(), func() {}
	}
	return context.WithTimeout(context.Background(), h.opts.EngineTimeout)
}

// settings returns room's effective settings.
func (h *Hub) settings(room string) roomSettings {
	if rs, ok := h.ns[protocol.Namespace(room)]; ok {
		return rs
	}
	return h.defaults
}

// HistoryPolicy returns the history policy the hub applies to room (its
// namespace's, or the hub's default): what every Publish to it asks the
// engine to keep.
func (h *Hub) HistoryPolicy(room string) engine.HistoryPolicy { return h.settings(room).history }

// DefaultHistory returns the history policy of rooms outside any
// configured namespace.
func (h *Hub) DefaultHistory() engine.HistoryPolicy { return h.defaults.history }

func (h *Hub) hash(s string) uint64 { return maphash.String(h.seed, s) }

func (h *Hub) roomShard(name string) *roomShard { return &h.rooms[h.hash(name)%numShards] }

func (h *Hub) connShard(id string) *connShard { return &h.conns[h.hash(id)%numShards] }

// Connect registers a new connection and sends it connection_established.
// The transport must call Client.HandleMessage for each text frame and
// Client.Gone when the connection has ended, whoever ended it.
func (h *Hub) Connect(sink Sink, info ConnectOptions) *Client {
	c := &Client{
		hub:         h,
		id:          randomID(8),
		sink:        sink,
		connectedAt: time.Now(),
		heartbeat:   info.Heartbeat,
		jsonPing:    info.JSONPing,
		remote:      info.RemoteAddr,
		transport:   info.Transport,
	}
	if info.Session {
		c.secret = newSessionSecret()
	}
	c.bucket.init(h.opts.MaxMessagesPerSecond, h.opts.MaxBytesPerSecond, c.connectedAt)
	sh := h.connShard(c.id)
	sh.mu.Lock()
	sh.byID[c.id] = c
	sh.mu.Unlock()
	h.stats.connections.Add(1)
	h.stats.connectionsTotal.Add(1)

	creds := info.Credentials
	if creds == nil && info.UserID != "" {
		creds = &Credentials{UserID: info.UserID}
	}
	switch {
	case creds != nil:
		c.establish(creds, "")
	case h.opts.Auth.Authenticator == nil, info.Session && h.opts.Auth.AllowAnonymous:
		c.establish(nil, "")
	case info.Session:
		c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "no token: send it in the Authorization header, the cookie or the token query parameter"))
	default:
		// No token at the handshake: the first frame must be `auth`.
		c.mu.Lock()
		c.pending = true
		c.authTimer = time.AfterFunc(h.opts.Auth.Timeout, c.authDeadline)
		c.mu.Unlock()
	}
	return c
}

// remove unregisters c; called once from Client.Gone.
func (h *Hub) remove(c *Client) {
	sh := h.connShard(c.id)
	sh.mu.Lock()
	delete(sh.byID, c.id)
	sh.mu.Unlock()
	if c.userID != "" {
		h.removeUser(c)
	}
	h.stats.connections.Add(-1)
}

// Shutdown closes every connection with d (normally 1012) and waits until
// they are gone or ctx ends. New connections are refused by the transport
// once Ready reports the hub is closing.
func (h *Hub) Shutdown(ctx context.Context, d protocol.Disconnect) error {
	h.closing.Store(true)
	for _, c := range h.allClients() {
		c.sink.Close(d)
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.stats.connections.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("hub: %d connections still open at the drain deadline: %w", h.stats.connections.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Closing reports whether Shutdown has begun.
func (h *Hub) Closing() bool { return h.closing.Load() }

func (h *Hub) allClients() []*Client {
	var out []*Client
	for i := range h.conns {
		sh := &h.conns[i]
		sh.mu.RLock()
		for _, c := range sh.byID {
			out = append(out, c)
		}
		sh.mu.RUnlock()
	}
	return out
}

func randomID(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PublishResult is what Publish returns.
type PublishResult struct {
	// EventID is the event's id in the room stream ("EPOCH-OFFSET").
	EventID string `json:"event_id"`
	// Recipients is the number of connections on this node that were in
	// the room when the event was published.
	Recipients int `json:"recipients"`
	// Duplicate reports that the idempotency key was seen before and the
	// event was not published again; EventID is the first event's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// PublishOptions tune a server-side Publish.
type PublishOptions struct {
	// IdempotencyKey makes the publish idempotent within the dedup window.
	IdempotencyKey string
	// ExcludeConnection, when set, is a connection id that does not
	// receive the event (on whichever node it is): a backend relaying a
	// client's message leaves out the client that sent it, like the seeds'
	// broadcast(..., exclude=websocket).
	ExcludeConnection string
}

// Publish publishes an event of type typ with data to room from the server
// (no user). data must be valid JSON or empty.
func (h *Hub) Publish(ctx context.Context, room, typ string, data json.RawMessage, opts PublishOptions) (PublishResult, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return PublishResult{}, e
	}
	if typ == "" {
		typ = protocol.TypeMessage
	}
	if e := protocol.ValidateType(typ); e != nil {
		return PublishResult{}, e
	}
	if len(data) > 0 && !json.Valid(data) {
		return PublishResult{}, protocol.Errorf(protocol.ErrBadJSON, "", "data is not valid JSON")
	}
	key := ""
	if opts.IdempotencyKey != "" {
		key = "api:" + opts.IdempotencyKey
	}
	pub := &engine.Publication{Type: typ, Data: data}
	if opts.ExcludeConnection != "" {
		pub.ClientID, pub.ExcludeSender = opts.ExcludeConnection, true
	}
	return h.publish(ctx, room, pub, key)
}

func (h *Hub) publish(ctx context.Context, room string, pub *engine.Publication, idemKey string) (PublishResult, error) {
	res, err := h.eng.Publish(ctx, room, pub, engine.PublishOptions{
		History:        h.settings(room).history,
		IdempotencyKey: idemKey,
		IdempotencyTTL: h.opts.DedupWindow,
	})
	if err != nil {
		h.stats.engineErrors.Add(1)
		return PublishResult{}, fmt.Errorf("hub: publish to %q: %w", room, err)
	}
	if !res.Duplicate { // a retried publish is one event, counted once
		h.stats.publications.Add(1)
	}
	eventID := res.Position.EventID()
	if hook := h.opts.Hooks.OnPublished; hook != nil && !res.Duplicate {
		hook(PublishedEvent{Room: room, Type: pub.Type, EventID: eventID, Data: pub.Data, UserID: pub.UserID, ClientID: pub.ClientID})
	}
	return PublishResult{EventID: eventID, Recipients: h.RoomSize(room), Duplicate: res.Duplicate}, nil
}

// engineHandler receives the engine's deliveries.
type engineHandler Hub

func (eh *engineHandler) HandlePublication(room string, pub *engine.Publication) {
	h := (*Hub)(eh)
	r := h.lookupRoom(room)
	if r == nil {
		return
	}
	f := protocol.NewFrame(encodePublication(room, pub))
	skip := ""
	if h.opts.NoEcho || pub.Ephemeral || pub.ExcludeSender {
		// Join/leave notices are not sent to the connection they are about:
		// it has its own subscribed/unsubscribed answer.
		skip = pub.ClientID
	}
	start := time.Now()
	n := r.fanout(f, pub.Position, skip)
	h.stats.fanout.observe(time.Since(start))
	h.stats.messagesOut.Add(uint64(n))
}

// encodePublication encodes a room event once for all its recipients.
func encodePublication(room string, pub *engine.Publication) []byte {
	b := make([]byte, 0, 96+len(room)+len(pub.Type)+len(pub.UserID)+len(pub.Data))
	b = append(b, `{"type":`...)
	b = protocol.AppendString(b, pub.Type)
	if !pub.Ephemeral {
		b = append(b, `,"id":"`...)
		b = pub.Position.AppendEventID(b)
		b = append(b, '"')
	}
	b = append(b, `,"room":`...)
	b = protocol.AppendString(b, room)
	if pub.UserID != "" {
		b = append(b, `,"user_id":`...)
		b = protocol.AppendString(b, pub.UserID)
	}
	if len(pub.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, pub.Data...)
	}
	b = append(b, `,"ts":`...)
	b = appendInt(b, pub.Time)
	return append(b, '}')
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

func itoa(v int) string { return strconv.Itoa(v) }

// HandleGap tells the room's members that events are missing from what
// they receive: a stream_gap event, in stream order, so that they reload
// the room's state. A member whose subscription started at or after the
// gap's end missed nothing and is skipped.
func (eh *engineHandler) HandleGap(room string, gap engine.Gap) {
	h := (*Hub)(eh)
	d := gapData(gap)
	h.log.Warn("hub: events could not be delivered; members told to resync", "room", room,
		"after", d.After, "until", d.Until, "reason", d.Reason)
	r := h.lookupRoom(room)
	if r == nil {
		return
	}
	data, _ := json.Marshal(d) // strings only: cannot fail
	f := protocol.NewFrame(protocol.Encode(&protocol.Envelope{Type: protocol.TypeStreamGap, Room: room, Data: data, TS: time.Now().UnixMilli()}))
	n := r.fanoutGap(f, gap.Until)
	h.stats.messagesOut.Add(uint64(n))
}

func gapData(gap engine.Gap) protocol.StreamGapData {
	d := protocol.StreamGapData{Reason: gap.Reason}
	if gap.After.Epoch != "" {
		d.After = gap.After.EventID()
	}
	if gap.Until.Epoch != "" {
		d.Until = gap.Until.EventID()
	}
	return d
}

func (eh *engineHandler) HandleControl(data []byte) {
	h := (*Hub)(eh)
	var cmd control
	if err := json.Unmarshal(data, &cmd); err != nil {
		h.log.Error("hub: bad control message", "err", err)
		return
	}
	h.applyControl(&cmd)
}
