// Command switchboard runs a Switchboard real-time messaging node.
//
//	switchboard serve [flags]   start a node (":8080", in-memory engine)
//	switchboard connect URL     talk the protocol from stdin
//	switchboard bench [flags]   load-test a node
//	switchboard config ...      check a configuration file or print its reference
//	switchboard version         print the version
//
// Every serve flag can also be set with an environment variable: the flag's
// name in upper case with '-' as '_', prefixed SWITCHBOARD_ (for example
// --heartbeat-interval and SWITCHBOARD_HEARTBEAT_INTERVAL). Flags win over
// the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	natsengine "github.com/switchboard-rt/switchboard/engine/nats"
	"github.com/switchboard-rt/switchboard/engine/redis"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/rpcproxy"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
	"github.com/switchboard-rt/switchboard/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "connect":
		return connect(args[1:], os.Stdin, stdout, stderr)
	case "bench":
		return bench(args[1:], stdout, stderr)
	case "config":
		return configCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		return versionCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: switchboard <command> [flags]

commands:
  serve     start a node (default :8080, WebSocket endpoint /ws, in-memory engine)
  connect   connect to a node and talk the protocol from stdin, like wscat ('switchboard connect -h')
  bench     load-test a node (its own, or --url): delivered messages/s, latency, loss ('switchboard bench -h')
  config    check a configuration file (config check FILE) or print its reference (config docs)
  version   print the version

Run 'switchboard serve -h' for the serve flags.
`)
}

func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi)
}

// serveFlags binds the serve flags to o and returns the set.
func serveFlags(o *options) *flag.FlagSet {
	cfg := &o.cfg
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address to listen on")
	fs.StringVar(&cfg.WSPath, "ws-path", "/ws", "WebSocket endpoint path")
	fs.StringVar(&cfg.EchoPath, "echo-path", "", "mount an RFC 6455 conformance echo endpoint at this path (off when empty)")
	fs.BoolVar(&cfg.Transport.Compression, "compression", false, "enable permessage-deflate on the WebSocket endpoint")
	fs.Var(listFlag{&cfg.Transport.AllowedOrigins}, "allowed-origins", "comma-separated browser origins allowed to connect (host patterns like *.example.com, or full origins); empty: same-origin only")
	fs.IntVar(&cfg.Transport.MaxConnections, "max-connections", 0, "maximum open WebSocket connections (503 beyond); 0: open-file limit minus a reserve")
	fs.IntVar(&cfg.Transport.MaxMessageSize, "max-message-size", transport.DefaultMaxMessageSize, "largest client message in bytes, after decompression (1009 beyond)")
	fs.DurationVar(&cfg.Transport.HeartbeatInterval, "heartbeat-interval", transport.DefaultHeartbeatInterval, "server ping interval (5s..120s)")
	fs.DurationVar(&cfg.Transport.PongTimeout, "pong-timeout", transport.DefaultPongTimeout, "time allowed for a pong before the connection is closed with 4008")
	fs.BoolVar(&cfg.Transport.JSONPing, "json-ping", false, "also send every connection a {\"type\":\"ping\"} text frame with each heartbeat, for browser code that answers {\"type\":\"pong\"}; one connection can ask with ?json_ping=1")
	fs.DurationVar(&cfg.Transport.WriteTimeout, "write-timeout", transport.DefaultWriteTimeout, "bound on one write to a client")
	fs.IntVar(&cfg.Transport.QueueMaxMessages, "queue-max-messages", transport.DefaultQueueMaxMessages, "per-connection outbound queue bound, in messages")
	fs.IntVar(&cfg.Transport.QueueMaxBytes, "queue-max-bytes", transport.DefaultQueueMaxBytes, "per-connection outbound queue bound, in bytes")
	fs.StringVar(&cfg.Transport.SlowConsumerPolicy, "slow-consumer-policy", transport.PolicyDisconnect, "when a queue is full: disconnect (close 4005) or drop_oldest")
	fs.DurationVar(&cfg.Transport.FlushWindow, "flush-window", 0, "hold a connection's first queued event up to this long so that events queued meanwhile share one write (fewer system calls, up to this much added latency; 0..1s); 0: write at once")
	fs.IntVar(&cfg.Hub.MaxRoomsPerClient, "max-rooms-per-connection", 128, "subscriptions allowed per connection")
	fs.BoolVar(&cfg.Hub.NoEcho, "no-echo", false, "do not send clients their own publications")
	fs.BoolVar(&cfg.Hub.NoJoinLeave, "no-join-leave", false, "do not send user_joined/user_left events")
	fs.IntVar(&cfg.Hub.JoinLeaveRate, "join-leave-rate", hub.DefaultJoinLeaveRate, "user_joined/user_left announcements one room sends at once per second (burst twice that); beyond it they are held and sent together after --join-leave-window; -1: no limit")
	fs.DurationVar(&cfg.Hub.JoinLeaveWindow, "join-leave-window", hub.DefaultJoinLeaveWindow, "how long user_joined/user_left announcements beyond --join-leave-rate are held before they go out together (a join and a leave of one connection meanwhile cancel out)")
	fs.IntVar(&o.historySize, "history-size", hub.DefaultHistorySize, "events kept per room for recovery; -1 turns history off")
	fs.DurationVar(&cfg.Hub.History.TTL, "history-ttl", hub.DefaultHistoryTTL, "how long room events are kept for recovery; 0: no time limit (events leave by --history-size only)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", server.DefaultDrainTimeout, "graceful shutdown deadline")
	fs.BoolVar(&cfg.NoDemo, "no-demo", false, "do not serve the demo page at /")
	fs.BoolVar(&cfg.NoAdmin, "no-admin", false, "do not serve the admin dashboard at /admin")
	fs.StringVar(&cfg.APIKey, "api-key", "", "key for the server API at /api/ (Authorization: Bearer KEY); empty: the API answers loopback clients only")
	fs.StringVar(&cfg.Auth.JWTSecret, "jwt-secret", "", "HS256 secret for connection tokens (32+ bytes); once set, connections need a valid token unless --allow-anonymous")
	fs.Var(listFlag{&cfg.Auth.JWTPublicKeyFiles}, "jwt-public-key", "PEM file with an RSA (RS256) or EC P-256 (ES256) public key; repeat or comma-separate for several")
	fs.StringVar(&cfg.Auth.JWTJWKSFile, "jwt-jwks-file", "", "JWKS file with RS256/ES256 public keys (picked by kid)")
	fs.StringVar(&cfg.Auth.JWTIssuer, "jwt-issuer", "", "required iss claim (checked when set)")
	fs.StringVar(&cfg.Auth.JWTAudience, "jwt-audience", "", "required aud claim (checked when set)")
	fs.StringVar(&cfg.Auth.ConnectProxyURL, "connect-proxy-url", "", "authenticate handshakes by POSTing their cookies and headers to this backend URL")
	fs.DurationVar(&cfg.Auth.ConnectProxyTimeout, "connect-proxy-timeout", 3*time.Second, "timeout of one connect-proxy call")
	fs.BoolVar(&cfg.Auth.AllowAnonymous, "allow-anonymous", false, "with auth configured, let connections without credentials in as anonymous users")
	fs.StringVar(&cfg.Auth.TokenCookie, "token-cookie", "switchboard_token", "cookie that may carry the connection token")
	fs.DurationVar(&cfg.Auth.Timeout, "auth-timeout", 5*time.Second, "how long a connection may take to send its auth frame (then close 4001)")
	fs.DurationVar(&cfg.Auth.ExpiryLead, "session-expiry-lead", 30*time.Second, "how long before a token expires the client gets session_expiring")
	fs.IntVar(&cfg.Hub.MaxConnectionsPerUser, "max-connections-per-user", 0, "connections one user may hold (4004 beyond); 0: no cap")
	fs.IntVar(&cfg.Hub.MaxMessagesPerSecond, "max-messages-per-second", hub.DefaultMaxMessagesPerSecond, "messages one connection may send per second (burst 2x; error throttled, then close 4004); 0: no limit")
	fs.IntVar(&cfg.Hub.MaxBytesPerSecond, "max-bytes-per-second", hub.DefaultMaxBytesPerSecond, "bytes one connection may send per second (burst 2x); 0: no limit")
	fs.Float64Var(&cfg.Transport.HandshakeRate, "handshake-rate", 20, "handshakes per second per client IP (burst --handshake-burst; 429 beyond); 0: no limit")
	fs.IntVar(&cfg.Transport.HandshakeBurst, "handshake-burst", 100, "handshake burst per client IP")
	fs.Var(listFlag{&cfg.TrustedProxies}, "trusted-proxies", "comma-separated proxy CIDRs whose X-Forwarded-For names the client")
	fs.StringVar(&cfg.NodeID, "node-id", "", "this node's name in stats, presence and logs (default: random)")
	fs.StringVar(&cfg.EngineName, "engine", "memory", "engine: memory (one node), redis (a cluster sharing Redis) or nats (a cluster on NATS JetStream)")
	fs.StringVar(&cfg.Redis.Addr, "redis-addr", redis.DefaultAddr, "Redis server host:port (engine redis)")
	fs.StringVar(&cfg.Redis.Username, "redis-username", "", "Redis ACL user")
	fs.StringVar(&cfg.Redis.Password, "redis-password", "", "Redis password")
	fs.IntVar(&cfg.Redis.DB, "redis-db", 0, "Redis database number")
	fs.BoolVar(&cfg.Redis.TLS, "redis-tls", false, "connect to Redis over TLS")
	fs.StringVar(&cfg.Redis.TLSCAFile, "redis-tls-ca", "", "PEM file of the CA that signed Redis's certificate (default: system roots)")
	fs.StringVar(&cfg.Redis.KeyPrefix, "redis-key-prefix", redis.DefaultKeyPrefix, "prefix of every Redis key and channel, so clusters can share a Redis")
	fs.StringVar(&cfg.Redis.SentinelMasterSet, "redis-sentinel-master", "", "Redis Sentinel master set name (with --redis-sentinel-addrs)")
	fs.Var(listFlag{&cfg.Redis.SentinelAddrs}, "redis-sentinel-addrs", "comma-separated Redis Sentinel addresses")
	fs.Var(listFlag{&cfg.Redis.ClusterAddrs}, "redis-cluster-addrs", "comma-separated Redis Cluster seed nodes (uses sharded pub/sub)")
	fs.DurationVar(&cfg.Redis.PresenceTTL, "redis-presence-ttl", redis.DefaultPresenceTTL, "how long a crashed node's presence entries survive")
	fs.StringVar(&cfg.NATS.URL, "nats-url", natsengine.DefaultURL, "NATS server URL(s), comma-separated (engine nats)")
	fs.StringVar(&cfg.NATS.Prefix, "nats-prefix", natsengine.DefaultPrefix, "prefix of subjects and stream names, so clusters can share a NATS")
	fs.BoolVar(&cfg.NATS.CoreOnly, "nats-core-only", false, "use core NATS only, without JetStream: fan-out across nodes but no shared history (no recovery across nodes)")
	fs.IntVar(&cfg.NATS.Replicas, "nats-replicas", 1, "JetStream replicas of Switchboard's streams")
	fs.BoolVar(&cfg.NATS.MemoryStorage, "nats-memory-storage", false, "keep JetStream streams in memory instead of files")
	fs.StringVar(&cfg.NATS.User, "nats-user", "", "NATS user")
	fs.StringVar(&cfg.NATS.Password, "nats-password", "", "NATS password")
	fs.StringVar(&cfg.NATS.Token, "nats-token", "", "NATS token")
	fs.StringVar(&cfg.NATS.CredsFile, "nats-creds", "", "NATS credentials file")
	fs.BoolVar(&cfg.NATS.TLS, "nats-tls", false, "connect to NATS over TLS")
	fs.StringVar(&cfg.NATS.TLSCAFile, "nats-tls-ca", "", "PEM file of the CA that signed NATS's certificate")
	fs.DurationVar(&cfg.NATS.PresenceTTL, "nats-presence-ttl", 60*time.Second, "how long a crashed node's presence entries survive (engine nats)")
	fs.StringVar(&cfg.RPCProxyURL, "rpc-proxy-url", "", "forward socket RPC calls to this backend URL (POST {user_id, connection_id, method, params})")
	fs.DurationVar(&cfg.Hub.RPCTimeout, "rpc-timeout", 10*time.Second, "time allowed for one RPC call")
	fs.StringVar(&cfg.SubscribeProxyURL, "subscribe-proxy-url", "", "ask this backend URL before every subscribe (POST {connection_id, user_id, room}; it may allow or refuse; see docs/api.md); per namespace: subscribe_proxy")
	fs.StringVar(&cfg.PublishProxyURL, "publish-proxy-url", "", "ask this backend URL before every client publish (POST {connection_id, user_id, room, type, data}; it may allow, refuse or rewrite data); per namespace: publish_proxy")
	fs.DurationVar(&cfg.ProxyTimeout, "proxy-timeout", rpcproxy.DefaultProxyTimeout, "time allowed for one subscribe or publish proxy call (then error unavailable)")
	fs.Var(listFlag{&cfg.Webhook.URLs}, "webhook-url", "comma-separated URLs that receive signed webhook events (docs/webhooks.md); empty: webhooks off")
	fs.Var(listFlag{&cfg.Webhook.Secrets}, "webhook-secret", "webhook signing secret; give two, comma-separated, while rotating (each signs); required with --webhook-url")
	fs.Var(listFlag{&cfg.Webhook.Events}, "webhook-events", "comma-separated webhook event types; empty: connection.opened, connection.closed, room.occupied, room.vacated, member.added, member.removed")
	fs.Var(listFlag{&cfg.Webhook.PublicationNamespaces}, "webhook-publications", "comma-separated namespaces whose publications are sent as webhook events (* for all rooms)")
	fs.DurationVar(&cfg.Webhook.Timeout, "webhook-timeout", webhook.DefaultTimeout, "time allowed for one webhook request")
	fs.IntVar(&cfg.Webhook.MaxAttempts, "webhook-max-attempts", webhook.DefaultMaxAttempts, "attempts per webhook batch before it is dropped")
	fs.DurationVar(&cfg.Webhook.MaxAge, "webhook-max-age", webhook.DefaultMaxAge, "a webhook batch whose oldest event is this old is dropped instead of retried")
	fs.IntVar(&cfg.Webhook.MaxBatch, "webhook-batch-size", webhook.DefaultMaxBatch, "most events in one webhook request")
	fs.DurationVar(&cfg.Webhook.MaxDelay, "webhook-batch-delay", webhook.DefaultMaxDelay, "how long a webhook event may wait for others to share its request")
	fs.IntVar(&cfg.Webhook.QueueSize, "webhook-queue-size", webhook.DefaultQueueSize, "webhook events queued per URL; beyond it events are dropped and counted")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (PEM): serve wss:// and https://")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug (also logs every client message), info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	return fs
}

// applyEnv sets every flag not given on the command line from its
// SWITCHBOARD_* variable. A bad value names the variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		key := envName(f.Name)
		if v := getenv(key); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// setup loads the configuration for command name and makes its logger.
// done is true when the command should exit with code (help, or an error
// already reported).
func setup(name string, args []string, stderr io.Writer) (cfg server.Config, logger *slog.Logger, code int, done bool) {
	o, err := loadConfig(name, args, os.Getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, nil, 0, true
		}
		fmt.Fprintf(stderr, "switchboard %s: %v\n", name, err)
		return cfg, nil, 2, true
	}
	cfg = o.cfg
	if logger, err = newLogger(stderr, o.logLevel, o.logFormat); err != nil {
		fmt.Fprintf(stderr, "switchboard %s: %v\n", name, err)
		return cfg, nil, 2, true
	}
	cfg.Logger = logger
	return cfg, logger, 0, false
}

func serve(args []string, stderr io.Writer) int {
	cfg, logger, code, done := setup("serve", args, stderr)
	if done {
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("cannot listen", "addr", cfg.Listen, "err", err)
		return 1
	}
	eff := srv.Config()
	hist := srv.Hub.DefaultHistory() // what rooms outside configured namespaces keep
	logger.Info("switchboard started",
		"version", versionString(), "node", eff.NodeID, "listen", ln.Addr().String(), "ws", eff.WSPath, "engine", eff.EngineName,
		"max_connections", eff.Transport.MaxConnections, "compression", eff.Transport.Compression, "echo", eff.EchoPath,
		"history_size", hist.Size, "history_ttl", hist.TTL.String())
	if demo, admin := browserURLs(ln.Addr(), eff); demo != "" || admin != "" {
		logger.Info("open in a browser", "demo", demo, "admin", admin)
	}
	if !eff.Auth.Enabled() {
		logger.Warn("no authentication configured: connections are anonymous and any connection may subscribe and publish to any room")
	} else if eff.Auth.AllowAnonymous {
		logger.Warn("anonymous connections are allowed besides authenticated ones")
	}
	switch {
	case eff.APIKey == "":
		logger.Warn("no API key configured (--api-key or SWITCHBOARD_API_KEY): the server API at /api/ answers loopback clients only")
	case len(eff.APIKey) < 16:
		logger.Warn("the API key is shorter than 16 characters: use a long random one (openssl rand -hex 32)")
	}
	go func() {
		<-ctx.Done()
		stop() // a second SIGINT/SIGTERM now kills the process at once
	}()
	if err := srv.Serve(ctx, ln); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return 1
	}
	logger.Info("switchboard stopped")
	return 0
}

// browserURLs returns the demo page's and the admin dashboard's URLs on
// addr ("" for one that is off). An address that listens on every
// interface is shown as localhost: that is where the operator's browser
// finds it.
func browserURLs(addr net.Addr, cfg server.Config) (demo, admin string) {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	base := scheme + "://" + net.JoinHostPort(host, port)
	if !cfg.NoDemo {
		demo = base + "/"
	}
	if !cfg.NoAdmin {
		admin = base + "/admin"
	}
	return demo, admin
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// listFlag is a repeatable, comma-separated string list flag.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.p = append(*l.p, s)
		}
	}
	return nil
}
