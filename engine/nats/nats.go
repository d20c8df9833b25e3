// Package nats is the NATS engine: events carried between Switchboard nodes
// by NATS, room streams, history, idempotency keys and presence kept in
// JetStream, so that several nodes behind a load balancer serve the same
// rooms.
//
// Subjects, under Options.Prefix (P) and with room names encoded as one
// token (see token):
//
//	P.hist.ROOM            room stream events, stored in stream SWITCHBOARD_P
//	P.room.ROOM            live delivery: the stream republishes every stored
//	                       event here; ephemeral events are published here
//	P.control              node-to-node commands
//	P.idem.ROOM.KEY        idempotency records (stream SWITCHBOARD_P_IDEM)
//	P.pres.ROOM.USER.CONN  presence entries (stream SWITCHBOARD_P_PRESENCE)
//
// Offsets. JetStream numbers messages per stream, not per room, so each
// event carries its room offset and epoch, and the last message of a room's
// subject is the room's position. Publish appends offset N+1 with the
// header Nats-Expected-Last-Subject-Sequence set to the sequence of the
// message holding N: JetStream stores it only if nothing was appended to
// the room since, otherwise the publisher reads the new top and tries
// again. Offsets are therefore 1, 2, 3... per room whatever the number of
// nodes, and Publish returns only after the event is stored. Live delivery
// comes from the stream's RePublish, which sends stored messages in stream
// order, so every node sees a room's events in offset order, and nothing
// that was not stored is ever delivered.
//
// Epochs. A room's epoch is written in its messages (a marker message fixes
// it when History is asked about a room that has none). It changes only
// when the room's messages are gone: the stream was lost, or the room was
// idle for longer than Options.PositionTTL (the stream's MaxAge).
//
// Core-only mode (Options.CoreOnly) needs no JetStream: fan-out and control
// work across nodes, but offsets, idempotency keys and presence are kept
// per node, and History never vouches for a position (Complete is false for
// any Since), so clients cannot recover missed events. Recovery needs
// JetStream.
//
// A NATS server 2.9 or later with JetStream is required outside core-only
// mode.
package nats

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
)

// Options configure the NATS engine. The zero value connects to a local
// NATS server with JetStream.
//
// The nodes of one cluster must agree on Prefix, CoreOnly and the stream
// settings (PresenceTTL, PositionTTL, IdempotencyWindow, Replicas,
// MemoryStorage): each node brings the streams to its own settings when
// it starts, so the last node started wins.
type Options struct {
	// URL is the NATS server, or a comma-separated list of servers of one
	// cluster. Default "nats://127.0.0.1:4222".
	URL string
	// Prefix starts every subject and names the JetStream streams, so that
	// several Switchboard clusters can share one NATS. Letters, digits, '-'
	// and '_' only. Default "switchboard".
	Prefix string
	// CoreOnly uses core NATS only: no JetStream, so no history, recovery,
	// cluster-wide offsets, idempotency or presence (see the package doc).
	CoreOnly bool

	// PresenceTTL is how long a presence entry lives unless its node
	// refreshes it; the node refreshes its entries every PresenceTTL/3, so
	// the entries of a crashed node disappear within PresenceTTL. It is the
	// presence stream's MaxAge. Default 60 s; minimum 1 s.
	PresenceTTL time.Duration
	// PositionTTL is how long a room's messages are kept (the room stream's
	// MaxAge): a room idle for longer starts a new epoch, and clients
	// holding old positions are told their history is gone. History TTLs
	// longer than this are cut to it. Default 24 h.
	PositionTTL time.Duration
	// IdempotencyWindow is the longest an idempotency key is remembered
	// (the idempotency stream's MaxAge); PublishOptions.IdempotencyTTL
	// values above it are cut to it. Default 10 min.
	IdempotencyWindow time.Duration
	// Replicas is the JetStream replication factor of the streams. Default 1.
	Replicas int
	// MemoryStorage keeps room streams and idempotency records in memory
	// instead of files: faster, but a NATS restart loses them (new epochs).
	// Presence is always kept in memory.
	MemoryStorage bool

	// User and Password, or Token, or CredsFile (a NATS .creds file)
	// authenticate; empty means none.
	User      string
	Password  string
	Token     string
	CredsFile string
	// TLS turns on TLS, verifying the server against the system roots or
	// TLSCAFile (PEM). TLSCertFile and TLSKeyFile give a client certificate.
	TLS         bool
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// NodeID names this node in presence entries and in its NATS connection
	// name. Default: random.
	NodeID string
	// ConnectTimeout bounds how long Run waits for NATS. Default 10 s.
	ConnectTimeout time.Duration
	// OpTimeout bounds each NATS round trip whose caller's context has no
	// deadline. Default 5 s.
	OpTimeout time.Duration
}

// Defaults.
const (
	DefaultURL               = "nats://127.0.0.1:4222"
	DefaultPrefix            = "switchboard"
	DefaultPresenceTTL       = 60 * time.Second
	DefaultPositionTTL       = 24 * time.Hour
	DefaultIdempotencyWindow = 10 * time.Minute
	DefaultConnectTimeout    = 10 * time.Second
	DefaultOpTimeout         = 5 * time.Second
)

const (
	// defaultIdempotencyTTL is the dedup window when PublishOptions leave
	// it 0 (as in the memory engine).
	defaultIdempotencyTTL = 2 * time.Minute
	// maxCASAttempts bounds how often one Publish rereads a room's top
	// because another publisher appended first.
	maxCASAttempts = 1000
	// resyncConcurrency bounds the gap fills running after a reconnect.
	resyncConcurrency = 8
	// janitorQueue bounds pending background chores (trims, consumer
	// deletes); when full, chores are dropped: the server cleans up
	// ephemeral consumers by itself, and the next trim of a room does the
	// work of a dropped one.
	janitorQueue = 1024
	// Reconnect wait between attempts (nats.go adds jitter).
	reconnectWait = 250 * time.Millisecond
	// stateIdle is how long an unused room publish state is cached.
	stateIdle = 2 * time.Minute
)

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Engine is the NATS engine. Create it with New; all methods are safe for
// concurrent use.
type Engine struct {
	opts Options

	histPrefix, roomPrefix, idemPrefix, presPrefix, controlSubj string
	histStream, idemStream, presStream                          string

	epochs *broker.Epochs

	conn    atomic.Pointer[connBox] // nil until Run connected
	handler engine.Handler

	roomsMu sync.Mutex
	rooms   map[string]*roomSub

	states   [numShards]stateShard // per-room publish state
	stateGen atomic.Uint64         // bumped to make every cached room top stale
	seed     maphash.Seed          // spreads rooms over state shards
	presence localPresence
	bans     kvBucket // bans.go
	occ      kvBucket // occupancy.go
	occRooms localRooms

	janitor chan func(context.Context)

	// After a reconnect the server may not have the streams (it lost its
	// data, or keeps them in memory), and a direct get from a stream that
	// does not exist is never answered: it waits out its whole deadline.
	// So the first read after each reconnect ensures the streams first
	// (see streamsAfterReconnect). ensuredFor is the connection's
	// reconnect count they were last ensured for; ensureSem lets one
	// caller at a time ensure them.
	ensuredFor atomic.Uint64
	ensureSem  chan struct{}

	runOnce   sync.Once
	ctx       context.Context // cancelled by Close or Run's ctx
	cancel    context.CancelFunc
	bgMu      sync.Mutex
	stopping  bool // Close has begun: no new background goroutines
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
}

// connBox holds what Run connected.
type connBox struct {
	nc      *natsgo.Conn
	discard string              // a reply subject nobody subscribes to
	js      jetstream.JetStream // nil in core-only mode
	hist    jetstream.Stream
	idem    jetstream.Stream
	pres    jetstream.Stream
}

var _ engine.Engine = (*Engine)(nil)

// New returns a NATS engine. It checks opts but does not connect: Run does.
func New(opts Options) (*Engine, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("nats: Prefix %q: use 1 to 64 letters, digits, '-' or '_'", opts.Prefix)
	}
	var err error
	if opts.PresenceTTL, err = broker.PresenceTTL("nats", opts.PresenceTTL, DefaultPresenceTTL); err != nil {
		return nil, err
	}
	if opts.PositionTTL == 0 {
		opts.PositionTTL = DefaultPositionTTL
	}
	if opts.IdempotencyWindow == 0 {
		opts.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.PositionTTL < 0 || opts.IdempotencyWindow < 0 || opts.ConnectTimeout < 0 || opts.OpTimeout < 0 {
		return nil, errors.New("nats: PositionTTL, IdempotencyWindow, ConnectTimeout and OpTimeout must not be negative")
	}
	if opts.Replicas < 0 || opts.Replicas > 5 {
		return nil, fmt.Errorf("nats: Replicas %d: JetStream allows 1 to 5", opts.Replicas)
	}
	if opts.Token != "" && (opts.User != "" || opts.Password != "") {
		return nil, errors.New("nats: choose Token or User/Password, not both")
	}
	if opts.Password != "" && opts.User == "" {
		return nil, errors.New("nats: Password needs User")
	}
	if (opts.TLSCAFile != "" || opts.TLSCertFile != "") && !opts.TLS {
		return nil, errors.New("nats: TLSCAFile and TLSCertFile need TLS")
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("nats: TLSCertFile and TLSKeyFile go together")
	}
	if opts.NodeID == "" {
		opts.NodeID = broker.RandomBase36(8)
	}
	p := opts.Prefix
	e := &Engine{
		opts:        opts,
		histPrefix:  p + ".hist.",
		roomPrefix:  p + ".room.",
		idemPrefix:  p + ".idem.",
		presPrefix:  p + ".pres.",
		controlSubj: p + ".control",
		histStream:  "SWITCHBOARD_" + p,
		idemStream:  "SWITCHBOARD_" + p + "_IDEM",
		presStream:  "SWITCHBOARD_" + p + "_PRESENCE",
		epochs:      broker.NewEpochs(),
		rooms:       make(map[string]*roomSub),
		janitor:     make(chan func(context.Context), janitorQueue),
		ensureSem:   make(chan struct{}, 1),
		seed:        maphash.MakeSeed(),
	}
	for i := range e.states {
		e.states[i].m = make(map[string]*pubState)
	}
	e.presence.rooms = make(map[string]map[string]*presenceEntry)
	e.occRooms.m = make(map[occKey]struct{})
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

func (e *Engine) histSubject(room string) string { return e.histPrefix + token(room) }
func (e *Engine) roomSubject(room string) string { return e.roomPrefix + token(room) }

// natsOptions builds nats.go's options from ours.
func (e *Engine) natsOptions() []natsgo.Option {
	o := e.opts
	nopts := []natsgo.Option{
		natsgo.Name("switchboard-" + o.NodeID),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(reconnectWait),
		// No buffering while disconnected: a publish then fails at once
		// instead of being sent later, after its caller was told it failed.
		natsgo.ReconnectBufSize(-1),
		natsgo.Timeout(min(o.ConnectTimeout, 2*time.Second)),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { e.onReconnect() }),
		// Errors (slow consumer drops) are repaired by gap fills; the
		// default handler would only print them.
		natsgo.ErrorHandler(func(*natsgo.Conn, *natsgo.Subscription, error) {}),
	}
	switch {
	case o.Token != "":
		nopts = append(nopts, natsgo.Token(o.Token))
	case o.User != "":
		nopts = append(nopts, natsgo.UserInfo(o.User, o.Password))
	}
	if o.CredsFile != "" {
		nopts = append(nopts, natsgo.UserCredentials(o.CredsFile))
	}
	if o.TLS {
		nopts = append(nopts, natsgo.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if o.TLSCAFile != "" {
			nopts = append(nopts, natsgo.RootCAs(o.TLSCAFile))
		}
		if o.TLSCertFile != "" {
			nopts = append(nopts, natsgo.ClientCert(o.TLSCertFile, o.TLSKeyFile))
		}
	}
	return nopts
}

// Run connects to NATS, makes sure the JetStream streams exist, subscribes
// to the control subject and starts delivering to h. It returns an error if
// NATS cannot be reached within Options.ConnectTimeout (or before ctx
// ends); after that, connection losses are retried in the background until
// ctx ends or Close. Delivery stops when ctx ends.
func (e *Engine) Run(ctx context.Context, h engine.Handler) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	started := false
	var err error
	e.runOnce.Do(func() {
		started = true
		err = e.run(ctx, h)
	})
	if !started {
		return errors.New("nats: Run called twice")
	}
	return err
}

func (e *Engine) run(ctx context.Context, h engine.Handler) error {
	e.handler = h
	context.AfterFunc(ctx, e.cancel)
	deadline := time.Now().Add(e.opts.ConnectTimeout)
	nc, err := e.dial(deadline)
	if err != nil {
		e.cancel()
		return err
	}
	box := &connBox{nc: nc, discard: nc.NewInbox()}
	if !e.opts.CoreOnly {
		js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(e.opts.OpTimeout))
		if err != nil {
			nc.Close()
			e.cancel()
			return fmt.Errorf("nats: jetstream: %w", err)
		}
		box.js = js
		cctx, cancel := context.WithDeadline(e.ctx, deadline)
		box.hist, box.idem, box.pres, err = e.ensureStreams(cctx, js)
		cancel()
		if err != nil {
			nc.Close()
			e.cancel()
			return err
		}
	}
	if _, err := nc.Subscribe(e.controlSubj, e.onControl); err != nil {
		nc.Close()
		e.cancel()
		return fmt.Errorf("nats: subscribe to control: %w", err)
	}
	if err := nc.FlushTimeout(time.Until(deadline)); err != nil {
		nc.Close()
		e.cancel()
		return fmt.Errorf("nats: subscribe to control: %w", err)
	}
	e.conn.Store(box)
	e.background(e.janitorLoop)
	e.background(e.presenceLoop)
	e.background(e.sweepLoop)
	return nil
}

// dial connects, retrying with backoff until deadline.
func (e *Engine) dial(deadline time.Time) (*natsgo.Conn, error) {
	wait := 50 * time.Millisecond
	for {
		nc, err := natsgo.Connect(e.opts.URL, e.natsOptions()...)
		if err == nil {
			return nc, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("nats: connect to %s: %w", e.opts.URL, err)
		}
		if !broker.SleepCtx(e.ctx, wait) {
			return nil, fmt.Errorf("nats: connect to %s: %w (last error: %w)", e.opts.URL, e.ctx.Err(), err)
		}
		wait = min(2*wait, time.Second)
	}
}

// ensureStreams creates the streams, or updates them to this node's
// configuration. Run keeps the handles it returns; later calls (the server
// lost its data) only recreate the streams: handles stay valid, they name
// a stream.
func (e *Engine) ensureStreams(ctx context.Context, js jetstream.JetStream) (hist, idem, pres jetstream.Stream, err error) {
	storage := jetstream.FileStorage
	if e.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	hist, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              e.histStream,
		Description:       "Switchboard room streams",
		Subjects:          []string{e.histPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            e.opts.PositionTTL,
		MaxMsgsPerSubject: -1,
		Storage:           storage,
		Replicas:          e.opts.Replicas,
		AllowDirect:       true,
		// Every stored event goes out to the nodes, in stream order.
		RePublish: &jetstream.RePublish{Source: e.histPrefix + ">", Destination: e.roomPrefix + ">"},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats: stream %s: %w", e.histStream, err)
	}
	idem, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              e.idemStream,
		Description:       "Switchboard idempotency keys",
		Subjects:          []string{e.idemPrefix + ">"},
		MaxAge:            e.opts.IdempotencyWindow,
		MaxMsgsPerSubject: 1,
		Storage:           storage,
		Replicas:          e.opts.Replicas,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats: stream %s: %w", e.idemStream, err)
	}
	pres, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              e.presStream,
		Description:       "Switchboard presence",
		Subjects:          []string{e.presPrefix + ">"},
		MaxAge:            e.opts.PresenceTTL,
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.MemoryStorage,
		Replicas:          e.opts.Replicas,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats: stream %s: %w", e.presStream, err)
	}
	return hist, idem, pres, nil
}

// box returns the connection, or an error before Run connected or after
// Close.
func (e *Engine) box() (*connBox, error) {
	if e.closed.Load() {
		return nil, engine.ErrClosed
	}
	b := e.conn.Load()
	if b == nil {
		return nil, errors.New("nats: engine not running (call Run)")
	}
	return b, nil
}

// opCtx bounds ctx by OpTimeout when it has no deadline of its own.
func (e *Engine) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.opts.OpTimeout)
}

// onReconnect runs after nats.go reconnected (it has already resubscribed
// the core subscriptions): cached room tops may be stale (the server may
// have lost its data), streams may need creating again, presence entries
// put back, and rooms filled with what was published meanwhile.
func (e *Engine) onReconnect() {
	if e.ctx.Err() != nil {
		return
	}
	e.invalidateStates()
	e.background(func() {
		if b := e.conn.Load(); b != nil && b.js != nil {
			ctx, cancel := context.WithTimeout(e.ctx, e.opts.OpTimeout)
			_ = e.streamsAfterReconnect(ctx, b)
			cancel()
		}
		e.refreshPresence()
		e.resyncAll()
	})
}

// streamsAfterReconnect makes sure the streams exist once per reconnect
// of b's connection, before anything reads them with a direct get (which
// a missing stream never answers). Publishes may run as soon as nats.go
// has reconnected, before the reconnect handler: the reconnect count,
// which nats.go raises before the connection is usable, tells them
// apart. Run ensured the streams for count 0.
func (e *Engine) streamsAfterReconnect(ctx context.Context, b *connBox) error {
	n := b.nc.Stats().Reconnects
	if e.ensuredFor.Load() == n {
		return nil
	}
	select {
	case e.ensureSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nats: streams after a reconnect: %w", ctx.Err())
	}
	defer func() { <-e.ensureSem }()
	if e.ensuredFor.Load() == n { // another caller did it meanwhile
		return nil
	}
	if _, _, _, err := e.ensureStreams(ctx, b.js); err != nil {
		return fmt.Errorf("nats: streams after a reconnect: %w", err)
	}
	e.ensuredFor.Store(n)
	return nil
}

// background runs f on a goroutine that Close waits for, unless Close has
// begun (nats.go callbacks may still fire while it closes).
func (e *Engine) background(f func()) {
	e.bgMu.Lock()
	defer e.bgMu.Unlock()
	if e.stopping {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

func (e *Engine) onControl(m *natsgo.Msg) {
	if e.ctx.Err() != nil {
		return
	}
	e.handler.HandleControl(m.Data)
}

// PublishControl implements engine.Engine: one core NATS message that every
// node, this one included, receives. A node disconnected at that moment
// misses it.
func (e *Engine) PublishControl(ctx context.Context, data []byte) error {
	b, err := e.box()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.nc.Publish(e.controlSubj, data); err != nil {
		return fmt.Errorf("nats: publish control: %w", err)
	}
	return nil
}

// Ready implements engine.Engine: connected, and JetStream answers.
func (e *Engine) Ready(ctx context.Context) error {
	b, err := e.box()
	if err != nil {
		return err
	}
	if st := b.nc.Status(); st != natsgo.CONNECTED {
		return fmt.Errorf("nats: connection %s", st)
	}
	if b.js != nil {
		ctx, cancel := e.opCtx(ctx)
		defer cancel()
		if _, err := b.js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("nats: jetstream: %w", err)
		}
	}
	return nil
}

// Close implements engine.Engine. It removes this node's presence entries
// (best effort, a few seconds at most), stops delivery and closes the
// connection. It may be called more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.removeAllPresence()
		e.closed.Store(true)
		e.bgMu.Lock()
		e.stopping = true
		e.bgMu.Unlock()
		e.cancel()
		if b := e.conn.Load(); b != nil {
			b.nc.Close()
		}
		e.wg.Wait()
	})
	return nil
}

// chore queues f for the janitor; dropped when the queue is full.
func (e *Engine) chore(f func(context.Context)) {
	select {
	case e.janitor <- f:
	default:
	}
}

func (e *Engine) janitorLoop() {
	for {
		select {
		case f := <-e.janitor:
			ctx, cancel := context.WithTimeout(e.ctx, e.opts.OpTimeout)
			f(ctx)
			cancel()
		case <-e.ctx.Done():
			return
		}
	}
}

// sweepLoop drops idle publish states.
func (e *Engine) sweepLoop() {
	t := time.NewTicker(stateIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.sweepStates(time.Now())
		}
	}
}

// newEpoch returns an epoch candidate unique to this call.
func (e *Engine) newEpoch() string { return e.epochs.Next() }

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// apiErrorCode returns the JetStream error code in err, or 0.
func apiErrorCode(err error) jetstream.ErrorCode {
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode
	}
	return 0
}

func isWrongLastSeq(err error) bool {
	return apiErrorCode(err) == jetstream.JSErrCodeStreamWrongLastSequence
}
