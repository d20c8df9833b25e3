// Package redis is the Redis engine: room streams, history, idempotency keys
// and presence kept in Redis, events carried between Switchboard nodes by
// Redis pub/sub, so that several nodes behind a load balancer serve the
// same rooms.
//
// One Lua script per event assigns the offset, appends to the room's
// history and PUBLISHes to the room's channel, so an acknowledged event is
// stored and delivered in stream order. Each node holds one pub/sub
// connection on which it subscribes to the rooms that have local members
// and to one control channel; when the connection breaks the engine
// reconnects with backoff, resubscribes everything, and fills any gap in a
// room's stream from history before delivering live events again; what
// history no longer holds is declared to the Handler (HandleGap).
//
// Delivery to the Handler runs on a few worker goroutines, each room always
// on the same one, so a room's events arrive in stream order and never
// concurrently. A Handler must not block, and must not call Subscribe or
// Unsubscribe from within a delivery.
//
// Publish returns an error whenever Redis did not confirm the script: the
// event is then not acknowledged, though it may have been stored. With an
// idempotency key a retry is safe, and Publish itself retries once after a
// connection error.
//
// Redis 7 or later is required (RESP3, sharded pub/sub in cluster mode).
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Options configure the Redis engine. The zero value connects to a local
// Redis on the default port.
type Options struct {
	// Addr is the Redis server, host:port. Default "127.0.0.1:6379".
	// Ignored when SentinelAddrs or ClusterAddrs are set.
	Addr string
	// Username and Password authenticate (AUTH); empty means none. Username
	// is for Redis 6 ACL users.
	Username string
	Password string
	// DB is the database number (SELECT). Default 0. Must be 0 with
	// ClusterAddrs, which has one database.
	DB int
	// TLS turns on TLS to Redis (and to the sentinels), verifying the
	// server certificate against the system roots, or against TLSCAFile
	// when set (a PEM file).
	TLS       bool
	TLSCAFile string
	// KeyPrefix starts every key and channel the engine uses, so several
	// Switchboard clusters can share one Redis. Default "switchboard:".
	// It must not contain '{' or '}': keys carry the room as a cluster
	// hash tag.
	KeyPrefix string
	// SentinelMasterSet and SentinelAddrs select Redis Sentinel: the engine
	// asks the sentinels at SentinelAddrs (host:port) for the master of
	// SentinelMasterSet and follows failovers. Both or neither.
	SentinelMasterSet string
	SentinelAddrs     []string
	// SentinelUsername and SentinelPassword authenticate to the sentinels,
	// which have credentials of their own; empty means none.
	SentinelUsername string
	SentinelPassword string
	// ClusterAddrs selects Redis Cluster: seed nodes, host:port. Rooms are
	// spread over the cluster's slots and use sharded pub/sub (SPUBLISH /
	// SSUBSCRIBE), so a room's traffic stays on the shard that holds it.
	ClusterAddrs []string
	// PresenceTTL is how long a presence entry lives unless its node
	// refreshes it; the node refreshes its entries every PresenceTTL/3, so
	// the entries of a crashed node disappear within PresenceTTL. Default
	// 60 s; minimum 1 s.
	PresenceTTL time.Duration
	// PositionTTL is how long a room's epoch and offset are kept after its
	// last publish or history read (at least as long as its history and
	// idempotency keys). When it lapses the room starts a new epoch, and
	// clients holding old positions are told their history is gone.
	// Default 24 h.
	PositionTTL time.Duration
	// NodeID names this node in presence entries. Default: random.
	NodeID string
	// ConnectTimeout bounds how long Run waits for Redis before giving up.
	// Default 10 s.
	ConnectTimeout time.Duration
}

// Defaults.
const (
	DefaultAddr           = "127.0.0.1:6379"
	DefaultKeyPrefix      = "switchboard:"
	DefaultPresenceTTL    = 60 * time.Second
	DefaultPositionTTL    = 24 * time.Hour
	DefaultConnectTimeout = 10 * time.Second
)

const (
	// defaultIdempotencyTTL is the dedup window when PublishOptions leave
	// it 0 (the same as the memory engine).
	defaultIdempotencyTTL = 2 * time.Minute
	// subscribeBatch is how many channels one SUBSCRIBE carries when the
	// engine resubscribes after a reconnect: big enough to make a thousand
	// rooms a couple of round trips, small enough not to stall Redis.
	subscribeBatch = 500
	// workerQueue is each delivery worker's queue. When a worker falls this
	// far behind, the pub/sub reader waits, and Redis buffers for us (up to
	// its client-output-buffer-limit for pubsub, then it disconnects us and
	// we resubscribe and fill the gap from history).
	workerQueue = 1024
	// opTimeout bounds background Redis calls (gap fills, presence
	// refresh, resubscribe) that have no caller context.
	opTimeout = 10 * time.Second
	// Reconnect backoff: doubles from min to max, with jitter.
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

// Engine is the Redis engine. Create it with New; all methods are safe for
// concurrent use.
type Engine struct {
	opts      Options
	tlsConfig *tls.Config // nil without TLS
	cluster   bool
	pubCmd    string // "publish" or "spublish"

	controlChan string
	epochs      *broker.Epochs

	client  atomic.Pointer[clientBox] // nil until Run connected
	handler engine.Handler
	sub     subscriber

	roomsMu sync.RWMutex
	rooms   map[string]*roomSub // by channel

	workers []chan item
	control chan string
	seed    maphash.Seed // spreads rooms over workers

	presence localPresence
	occMu    sync.Mutex
	occupied map[string]string // room -> node, the rooms this engine's node has members in
	filled   atomic.Uint64     // events delivered from history to fill gaps

	runOnce   sync.Once
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
}

type clientBox struct{ c rueidis.Client }

var _ engine.Engine = (*Engine)(nil)

// New returns a Redis engine. It checks opts but does not connect: Run
// does.
func New(opts Options) (*Engine, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	var err error
	if opts.PresenceTTL, err = broker.PresenceTTL("redis", opts.PresenceTTL, DefaultPresenceTTL); err != nil {
		return nil, err
	}
	if opts.PositionTTL == 0 {
		opts.PositionTTL = DefaultPositionTTL
	}
	if opts.PositionTTL < 0 || opts.ConnectTimeout < 0 || opts.DB < 0 {
		return nil, errors.New("redis: PositionTTL, ConnectTimeout and DB must not be negative")
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if (opts.SentinelMasterSet == "") != (len(opts.SentinelAddrs) == 0) {
		return nil, errors.New("redis: SentinelMasterSet and SentinelAddrs go together")
	}
	if len(opts.SentinelAddrs) > 0 && len(opts.ClusterAddrs) > 0 {
		return nil, errors.New("redis: choose Sentinel or Cluster, not both")
	}
	if len(opts.ClusterAddrs) > 0 && opts.DB != 0 {
		return nil, errors.New("redis: Redis Cluster has only database 0")
	}
	if opts.TLSCAFile != "" && !opts.TLS {
		return nil, errors.New("redis: TLSCAFile needs TLS")
	}
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redis: KeyPrefix %q must not contain '{' or '}'", opts.KeyPrefix)
	}
	var tlsConfig *tls.Config
	if opts.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.TLSCAFile != "" {
			pem, err := os.ReadFile(opts.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("redis: read TLS CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis: TLS CA file %s holds no PEM certificate", opts.TLSCAFile)
			}
			tlsConfig.RootCAs = pool
		}
	}
	if opts.NodeID == "" {
		opts.NodeID = broker.RandomBase36(8)
	}
	e := &Engine{
		opts:        opts,
		tlsConfig:   tlsConfig,
		cluster:     len(opts.ClusterAddrs) > 0,
		pubCmd:      "publish",
		controlChan: opts.KeyPrefix + "control",
		epochs:      broker.NewEpochs(),
		rooms:       make(map[string]*roomSub),
		seed:        maphash.MakeSeed(),
	}
	if e.cluster {
		e.pubCmd = "spublish"
	}
	e.presence.rooms = make(map[string]map[string]presenceEntry)
	e.occupied = make(map[string]string)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// clientOption builds rueidis's options from ours.
func (e *Engine) clientOption() rueidis.ClientOption {
	o := e.opts
	co := rueidis.ClientOption{
		Username:  o.Username,
		Password:  o.Password,
		SelectDB:  o.DB,
		TLSConfig: e.tlsConfig,
		// Client-side caching is not used; without it Redis does not track
		// our keys.
		DisableCache: true,
		// Shows the node in CLIENT LIST.
		ClientName: clientName(o.NodeID),
	}
	switch {
	case len(o.SentinelAddrs) > 0:
		co.InitAddress = o.SentinelAddrs
		co.Sentinel = rueidis.SentinelOption{
			MasterSet: o.SentinelMasterSet,
			Username:  o.SentinelUsername,
			Password:  o.SentinelPassword,
			TLSConfig: e.tlsConfig,
		}
	case e.cluster:
		co.InitAddress = o.ClusterAddrs
		co.ShuffleInit = true
	default:
		co.InitAddress = []string{o.Addr}
		co.ForceSingleClient = true
	}
	return co
}

// Run connects to Redis, subscribes to the control channel and starts
// delivering to h. It returns an error if Redis cannot be reached within
// Options.ConnectTimeout (or before ctx ends); after that, connection
// losses are retried in the background until ctx ends or Close.
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
		return errors.New("redis: Run called twice")
	}
	return err
}

func (e *Engine) run(ctx context.Context, h engine.Handler) error {
	co := e.clientOption()
	e.handler = h
	// Stop when the caller's ctx ends as well as on Close.
	context.AfterFunc(ctx, e.cancel)

	deadline := time.Now().Add(e.opts.ConnectTimeout)
	c, err := dialWithRetry(e.ctx, co, deadline)
	if err != nil {
		e.cancel()
		return err
	}

	n := min(max(4, 2*runtime.GOMAXPROCS(0)), 32)
	e.workers = make([]chan item, n)
	for i := range e.workers {
		e.workers[i] = make(chan item, workerQueue)
		e.wg.Add(1)
		go e.worker(e.workers[i])
	}
	e.control = make(chan string, workerQueue)
	e.wg.Add(1)
	go e.controlWorker()
	if e.cluster {
		e.sub = newClusterSub(e)
	} else {
		e.sub = newConnSub(e)
	}
	// Published after sub and workers: whoever sees the client sees them.
	e.client.Store(&clientBox{c})
	ready := make(chan struct{})
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.sub.run(e.ctx, ready)
	}()
	go func() {
		defer e.wg.Done()
		e.presenceLoop(e.ctx)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ready:
		return nil
	case <-e.ctx.Done():
		return fmt.Errorf("redis: stopped before connecting: %w", context.Cause(e.ctx))
	case <-t.C:
		err := e.sub.status()
		e.Close()
		return fmt.Errorf("redis: pub/sub not connected within %s: %w", e.opts.ConnectTimeout, err)
	}
}

// dialWithRetry creates the rueidis client, which dials at creation,
// retrying with backoff until deadline.
func dialWithRetry(ctx context.Context, co rueidis.ClientOption, deadline time.Time) (rueidis.Client, error) {
	var b backoff
	for {
		c, err := rueidis.NewClient(co)
		if err == nil {
			return c, nil
		}
		d := b.next()
		if time.Now().Add(d).After(deadline) {
			return nil, fmt.Errorf("redis: connect to %v: %w", co.InitAddress, err)
		}
		if !broker.SleepCtx(ctx, d) {
			return nil, fmt.Errorf("redis: connect to %v: %w (last error: %w)", co.InitAddress, ctx.Err(), err)
		}
	}
}

// redis returns the command client, or an error before Run connected or
// after Close.
func (e *Engine) redis() (rueidis.Client, error) {
	if e.closed.Load() {
		return nil, engine.ErrClosed
	}
	b := e.client.Load()
	if b == nil {
		return nil, errors.New("redis: engine not running (call Run)")
	}
	return b.c, nil
}

func (e *Engine) key(room, suffix string) string {
	return e.opts.KeyPrefix + "{" + room + "}" + suffix
}

func (e *Engine) channel(room string) string { return e.opts.KeyPrefix + "{" + room + "}" }

// newEpoch returns an epoch candidate unique to this call.
func (e *Engine) newEpoch() string { return e.epochs.Next() }

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Publish implements engine.Engine. An error means the event may not have
// been stored; with an idempotency key, a retry is safe.
func (e *Engine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	c, err := e.redis()
	if err != nil {
		return engine.PublishResult{}, err
	}
	if pub.Ephemeral {
		// No script, so this node's clock: ephemeral events are never
		// compared with stored ones by time.
		pub.Time = time.Now().UnixMilli()
		pub.Position = protocol.StreamPosition{}
		cmd := c.B().Publish().Channel(e.channel(room)).Message(encodeEphemeral(pub)).Build()
		if e.cluster {
			cmd = c.B().Spublish().Channel(e.channel(room)).Message(encodeEphemeral(pub)).Build()
		}
		if err := c.Do(ctx, cmd).Error(); err != nil {
			return engine.PublishResult{}, fmt.Errorf("redis: publish ephemeral to %q: %w", room, err)
		}
		return engine.PublishResult{}, nil
	}

	idemTTL := opts.IdempotencyTTL
	if idemTTL <= 0 {
		idemTTL = defaultIdempotencyTTL
	}
	metaTTL := max(e.opts.PositionTTL, opts.History.TTL, idemTTL)
	keys := make([]string, 2, 3)
	keys[0], keys[1] = e.key(room, ":m"), e.key(room, ":h")
	if opts.IdempotencyKey != "" {
		keys = append(keys, e.key(room, ":i:"+opts.IdempotencyKey))
	}
	size := max(opts.History.Size, 0)
	args := []string{
		e.channel(room),
		string(appendBody(make([]byte, 0, 16+len(pub.Type)+len(pub.UserID)+len(pub.ClientID)+len(pub.Data)), pub)),
		e.newEpoch(),
		strconv.Itoa(size),
		ms(opts.History.TTL),
		ms(metaTTL),
		ms(idemTTL),
		e.pubCmd,
	}
	arr, err := publishScript.Exec(ctx, c, keys, args).ToArray()
	if err != nil && opts.IdempotencyKey != "" && retryable(ctx, err) {
		// A connection error leaves unknown whether the script ran; with
		// an idempotency key a second run cannot append twice. This covers
		// connections that died with a Redis restart and were not yet
		// found dead.
		arr, err = publishScript.Exec(ctx, c, keys, args).ToArray()
	}
	if err != nil {
		return engine.PublishResult{}, fmt.Errorf("redis: publish to %q: %w", room, err)
	}
	dup, _ := arr[0].AsInt64()
	if dup == 1 && len(arr) == 2 {
		s, _ := arr[1].ToString()
		pos, ok := parsePosition(s)
		if !ok {
			return engine.PublishResult{}, fmt.Errorf("redis: publish to %q: bad idempotency record %q", room, s)
		}
		return engine.PublishResult{Position: pos, Duplicate: true}, nil
	}
	if len(arr) != 4 {
		return engine.PublishResult{}, fmt.Errorf("redis: publish to %q: unexpected reply of %d elements", room, len(arr))
	}
	epoch, _ := arr[1].ToString()
	offS, _ := arr[2].ToString()
	tS, _ := arr[3].ToString()
	off, err1 := strconv.ParseUint(offS, 10, 64)
	t, err2 := strconv.ParseInt(tS, 10, 64)
	if err1 != nil || err2 != nil || epoch == "" {
		return engine.PublishResult{}, fmt.Errorf("redis: publish to %q: unexpected reply %q %q %q", room, epoch, offS, tS)
	}
	pub.Time = t
	pub.Position = protocol.StreamPosition{Offset: off, Epoch: epoch}
	return engine.PublishResult{Position: pub.Position}, nil
}

// retryable reports whether err is a connection failure worth one retry.
func retryable(ctx context.Context, err error) bool {
	_, isRedis := rueidis.IsRedisErr(err)
	return ctx.Err() == nil && !isRedis && !errors.Is(err, rueidis.ErrClosing)
}

// parsePosition parses "EPOCH OFFSET".
func parsePosition(s string) (protocol.StreamPosition, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			off, err := strconv.ParseUint(s[i+1:], 10, 64)
			if err != nil || i == 0 {
				return protocol.StreamPosition{}, false
			}
			return protocol.StreamPosition{Offset: off, Epoch: s[:i]}, true
		}
	}
	return protocol.StreamPosition{}, false
}

// History implements engine.Engine. Events older than policy.TTL and
// beyond policy.Size are not returned even if Redis still holds them.
func (e *Engine) History(ctx context.Context, room string, q engine.HistoryQuery, policy engine.HistoryPolicy) (engine.HistoryResult, error) {
	return e.history(ctx, room, q, max(policy.Size, 0), policy.TTL)
}

// history reads room's stream; size -1 means no size bound (gap fills).
func (e *Engine) history(ctx context.Context, room string, q engine.HistoryQuery, size int, ttl time.Duration) (engine.HistoryResult, error) {
	c, err := e.redis()
	if err != nil {
		return engine.HistoryResult{}, err
	}
	metaTTL := max(e.opts.PositionTTL, ttl)
	args := []string{
		e.newEpoch(),
		strconv.FormatUint(q.Since.Offset, 10),
		q.Since.Epoch,
		strconv.Itoa(max(q.Limit, 0)),
		ms(ttl),
		strconv.Itoa(size),
		ms(metaTTL),
	}
	arr, err := historyScript.Exec(ctx, c, []string{e.key(room, ":m"), e.key(room, ":h")}, args).ToArray()
	if err != nil {
		return engine.HistoryResult{}, fmt.Errorf("redis: history of %q: %w", room, err)
	}
	if len(arr) < 3 {
		return engine.HistoryResult{}, fmt.Errorf("redis: history of %q: unexpected reply of %d elements", room, len(arr))
	}
	epoch, _ := arr[0].ToString()
	topS, _ := arr[1].ToString()
	top, err := strconv.ParseUint(topS, 10, 64)
	if err != nil {
		return engine.HistoryResult{}, fmt.Errorf("redis: history of %q: bad offset %q", room, topS)
	}
	complete, _ := arr[2].AsInt64()
	res := engine.HistoryResult{
		Latest:   protocol.StreamPosition{Offset: top, Epoch: epoch},
		Complete: complete == 1,
	}
	if len(arr) > 3 {
		res.Publications = make([]*engine.Publication, 0, len(arr)-3)
		for _, m := range arr[3:] {
			s, err := m.ToString()
			if err != nil {
				return engine.HistoryResult{}, fmt.Errorf("redis: history of %q: %w", room, err)
			}
			pub, err := decodePublication(s)
			if err != nil {
				return engine.HistoryResult{}, fmt.Errorf("redis: history of %q: %w", room, err)
			}
			res.Publications = append(res.Publications, pub)
		}
	}
	return res, nil
}

// PublishControl implements engine.Engine: one PUBLISH that every node,
// this one included, receives on the control channel. Commands sent while
// a node's pub/sub connection is down do not reach that node.
func (e *Engine) PublishControl(ctx context.Context, data []byte) error {
	c, err := e.redis()
	if err != nil {
		return err
	}
	cmd := c.B().Publish().Channel(e.controlChan).Message(string(data)).Build()
	if err := c.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("redis: publish control: %w", err)
	}
	return nil
}

// Ready implements engine.Engine: Redis answers PING and the pub/sub
// connection is up.
func (e *Engine) Ready(ctx context.Context) error {
	c, err := e.redis()
	if err != nil {
		return err
	}
	if err := e.sub.status(); err != nil {
		return fmt.Errorf("redis: pub/sub: %w", err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// Close implements engine.Engine. It removes this node's presence entries
// (best effort, bounded by a few seconds), stops delivery and closes the
// connections. It may be called more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.removeAllPresence()
		e.closed.Store(true)
		e.cancel()
		if b := e.client.Load(); b != nil {
			b.c.Close()
		}
		e.wg.Wait()
	})
	return nil
}

// backoff yields reconnect delays: doubling from backoffMin to backoffMax,
// each with up to 50% jitter so that nodes do not reconnect in step.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = backoffMin
	} else {
		b.d = min(2*b.d, backoffMax)
	}
	var r [1]byte
	_, _ = rand.Read(r[:])
	return b.d/2 + b.d*time.Duration(r[0])/512
}

func (b *backoff) reset() { b.d = 0 }

// clientName makes a CLIENT SETNAME value from the node id: Redis refuses
// names with spaces or control characters, and would fail the connection.
func clientName(node string) string {
	b := []byte("switchboard-" + node)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}
