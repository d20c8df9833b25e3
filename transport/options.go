package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// Slow-consumer policies: what happens when a connection's queue is full.
const (
	// PolicyDisconnect closes the connection with 4005 (slow_consumer); the
	// client reconnects and recovers what it missed from history.
	PolicyDisconnect = "disconnect"
	// PolicyDropOldest drops the oldest queued messages to make room; the
	// client silently misses them. For feeds where only the latest matters.
	PolicyDropOldest = "drop_oldest"
)

// Options configure a WSHandler. Zero values take the documented defaults.
type Options struct {
	// Hub receives the connections. Required.
	Hub *hub.Hub
	// Logger gets one line per connect and disconnect, and one per refused
	// handshake (at most 10 a second, then a count). Default: discard.
	Logger *slog.Logger
	// AllowedOrigins lists the browser origins allowed to connect, as host
	// patterns ("app.example.com", "*.example.com", "localhost:3000") or
	// full origins ("https://app.example.com"). "*" allows every origin:
	// you probably want a list instead. Default (empty): same-origin only.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// MaxConnections caps open connections; at the cap the handshake gets
	// 503 with Retry-After. 0 means no cap (the server sets one from the
	// process's open-file limit).
	MaxConnections int
	// MaxMessageSize caps one client message in bytes, after
	// decompression; larger ones close the connection with 1009.
	// Default 65536.
	MaxMessageSize int
	// Compression enables permessage-deflate when a client offers it. Off by
	// default: it costs CPU and memory per connection for little gain on
	// small JSON. When on, the server uses server_no_context_takeover so
	// one compressed frame serves every recipient of a room event.
	Compression bool
	// CompressionThreshold is the smallest message compressed. Default 256.
	CompressionThreshold int
	// HeartbeatInterval is how often the server pings each connection.
	// Default 25 s; allowed 5 s to 120 s.
	HeartbeatInterval time.Duration
	// PongTimeout is how long a pong may take before the connection is
	// closed with 4008. Default 10 s; must be below HeartbeatInterval.
	PongTimeout time.Duration
	// JSONPing sends every connection a {"type":"ping"} text frame with
	// each heartbeat, for clients that cannot see WebSocket pings
	// (browsers) and answer {"type":"pong"} (see jsonping.go). Default off;
	// a connection can turn it on or off with the handshake query
	// parameter json_ping.
	JSONPing bool
	// WriteTimeout bounds one write to a connection. Default 10 s.
	WriteTimeout time.Duration
	// QueueMaxMessages and QueueMaxBytes bound each connection's outbound
	// queue. Defaults 1024 messages and 1 MiB.
	QueueMaxMessages int
	QueueMaxBytes    int
	// SlowConsumerPolicy is PolicyDisconnect (default) or PolicyDropOldest.
	SlowConsumerPolicy string
	// ReadBufferSize is each connection's read buffer; larger messages are
	// read into pooled buffers. Default 1024: idle connections stay small.
	ReadBufferSize int
	// FlushWindow, when positive, holds a connection's first queued frame
	// up to this long before it is written, so that frames queued
	// meanwhile go out in the same write: fewer system calls per message
	// for connections that get many messages per second, for up to this
	// much added latency. Default 0: a frame is written as soon as a flush
	// worker is free, and frames are only coalesced when they pile up on
	// their own. At most 1 s.
	FlushWindow time.Duration

	// Authenticator verifies a token brought by the handshake, looked for
	// in this order: the Authorization: Bearer header (server-to-server
	// clients), the TokenCookie cookie, the `token` query parameter
	// (proxies log URLs: prefer the others). A bad token gets 401 before
	// the upgrade. No token: the hub waits for an `auth` frame.
	Authenticator hub.Authenticator
	// TokenCookie names the cookie that may carry the token. Default
	// "switchboard_token".
	TokenCookie string
	// RequestAuthenticator, if set, authenticates the handshake instead of
	// a token (the connect proxy of auth.ConnectProxy): failure is 401.
	RequestAuthenticator interface {
		AuthenticateRequest(ctx context.Context, r *http.Request) (*hub.Credentials, error)
	}
	// HandshakeRate and HandshakeBurst limit handshakes per client IP (a
	// token bucket): beyond it, 429 with Retry-After. 0 means no limit (the
	// switchboard binary sets 20 per second with a burst of 100).
	HandshakeRate  float64
	HandshakeBurst int
	// TrustedProxies are the proxy addresses (CIDRs) whose
	// X-Forwarded-For header names the client. Without it, the client is
	// the TCP peer, and every client behind a proxy shares one IP.
	TrustedProxies []netip.Prefix
}

// Defaults for Options.
const (
	DefaultMaxMessageSize       = 64 << 10
	DefaultCompressionThreshold = 256
	DefaultHeartbeatInterval    = 25 * time.Second
	DefaultPongTimeout          = 10 * time.Second
	DefaultWriteTimeout         = 10 * time.Second
	DefaultQueueMaxMessages     = 1024
	DefaultQueueMaxBytes        = 1 << 20
	DefaultReadBufferSize       = 1024
)

func (o *Options) fill() error {
	if o.Hub == nil {
		return errors.New("transport: Options.Hub is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&o.CompressionThreshold, DefaultCompressionThreshold)
	setDefault(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&o.PongTimeout, DefaultPongTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.QueueMaxMessages, DefaultQueueMaxMessages)
	setDefault(&o.QueueMaxBytes, DefaultQueueMaxBytes)
	setDefault(&o.ReadBufferSize, DefaultReadBufferSize)
	if o.SlowConsumerPolicy == "" {
		o.SlowConsumerPolicy = PolicyDisconnect
	}
	if o.TokenCookie == "" {
		o.TokenCookie = "switchboard_token"
	}
	if o.HandshakeRate > 0 && o.HandshakeBurst <= 0 {
		o.HandshakeBurst = int(2*o.HandshakeRate) + 1
	}
	switch {
	case o.HeartbeatInterval < 5*time.Second || o.HeartbeatInterval > 120*time.Second:
		return fmt.Errorf("transport: heartbeat interval %s is outside 5s..120s", o.HeartbeatInterval)
	case o.PongTimeout >= o.HeartbeatInterval:
		return fmt.Errorf("transport: pong timeout %s must be shorter than the heartbeat interval %s", o.PongTimeout, o.HeartbeatInterval)
	case o.SlowConsumerPolicy != PolicyDisconnect && o.SlowConsumerPolicy != PolicyDropOldest:
		return fmt.Errorf("transport: slow consumer policy %q is not %q or %q", o.SlowConsumerPolicy, PolicyDisconnect, PolicyDropOldest)
	case o.MaxConnections < 0:
		return fmt.Errorf("transport: max connections %d is negative", o.MaxConnections)
	case o.FlushWindow < 0 || o.FlushWindow > time.Second:
		return fmt.Errorf("transport: flush window %s is outside 0..1s", o.FlushWindow)
	}
	for _, p := range o.AllowedOrigins {
		if p == "" {
			return errors.New("transport: an allowed origin is empty")
		}
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
