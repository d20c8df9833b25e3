// Package server assembles a Switchboard node: engine, hub, WebSocket
// transport, health endpoints and the demo page behind one net/http
// server, with graceful drain on shutdown. cmd/switchboard is a thin shell
// around it; embedders who want only the WebSocket endpoint use hub and
// transport directly.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	natsengine "github.com/switchboard-rt/switchboard/engine/nats"
	"github.com/switchboard-rt/switchboard/engine/redis"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/backend"
	"github.com/switchboard-rt/switchboard/metrics"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/rpcproxy"
	"github.com/switchboard-rt/switchboard/transport"
	"github.com/switchboard-rt/switchboard/webhook"
)

// Config is a node's configuration. Zero values take the defaults
// documented here and on hub.Options and transport.Options: the zero
// Config is a working single node.
type Config struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string
	// WSPath is the WebSocket endpoint. Default "/ws".
	WSPath string
	// EchoPath, when set, mounts the RFC 6455 conformance echo endpoint.
	EchoPath string
	// Hub configures the hub as documented on hub.Options, defaults
	// included. New fills Engine, NodeID and Auth (all but MaxViolations)
	// from Engine, NodeID and Auth below, and refuses a Config that sets
	// them in Hub; RPCFallback comes from RPCProxyURL when that is set
	// (setting both is refused); a nil Logger is Logger. Hooks are the
	// embedder's: the subscribe and publish proxies and webhooks are added
	// after them. MaxReplayBytes and MaxReplayMessages default to half of
	// Transport's queue bounds, so that a replay fits the queue.
	// RPCTimeout also bounds an RPC proxy call.
	Hub hub.Options
	// Transport configures the WebSocket endpoint at WSPath (and /sse) as
	// documented on transport.Options, defaults included. New fills Hub,
	// and Authenticator, RequestAuthenticator and TokenCookie from Auth,
	// and refuses a Config that sets them here; a nil Logger is Logger;
	// the TrustedProxies below are added to TrustedProxies. MaxConnections
	// 0 means the process's open-file limit minus a reserve for listeners,
	// logs and outgoing connections.
	Transport transport.Options
	// DrainTimeout bounds graceful shutdown. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// NoDemo turns off the demo page at /.
	NoDemo bool
	// NoAdmin turns off the admin dashboard at /admin (it is protected by
	// APIKey, or answers this machine only without one).
	NoAdmin bool
	// APIKey protects the server API at /api/ (sent as "Authorization:
	// Bearer KEY"). Empty: the API answers loopback clients only, which
	// suits one machine; set a key for anything else. See docs/api.md.
	APIKey string
	// Auth configures authentication; the zero value is none (every
	// connection anonymous, allowed everything). See docs/security.md.
	Auth AuthConfig
	// TrustedProxies (CIDRs or IP addresses) may name the client in
	// X-Forwarded-For; they are parsed into Transport.TrustedProxies.
	TrustedProxies []string
	// RPCProxyURL forwards socket RPC calls without a registered handler
	// to this backend URL (rpcproxy); Hub.RPCTimeout bounds a call.
	RPCProxyURL string
	// SubscribeProxyURL and PublishProxyURL ask this backend URL before
	// every subscribe and every client publish, which it may allow, refuse
	// or (publishes) rewrite; ProxyTimeout bounds a call (default 3 s).
	// NamespaceProxies override them per namespace. See docs/api.md.
	SubscribeProxyURL string
	PublishProxyURL   string
	ProxyTimeout      time.Duration
	NamespaceProxies  map[string]NamespaceProxy
	// Webhook configures webhooks (docs/webhooks.md): off without URLs.
	// NodeID, Client and Logger are filled in by New.
	Webhook webhook.Options
	// TLSCertFile and TLSKeyFile make Serve answer TLS (wss://).
	TLSCertFile string
	TLSKeyFile  string
	// Engine overrides the engine (tests, embedders). Default: memory.
	Engine engine.Engine
	// NodeID names this node in stats, presence and logs. Default: random.
	NodeID string
	// EngineName selects the engine when Engine is nil: "memory" (the
	// default: one node), "redis" (a cluster sharing Redis, configured by
	// Redis) or "nats" (a cluster on NATS with JetStream, configured by
	// NATS).
	EngineName string
	// Redis configures the Redis engine (see engine/redis.Options).
	Redis redis.Options
	// NATS configures the NATS engine (see engine/nats.Options).
	NATS natsengine.Options
	// Logger receives logs. Default: discard.
	Logger *slog.Logger
}

// NamespaceProxy overrides the subscribe and publish proxy URLs for one
// namespace: "" keeps the server-wide URL, "off" asks no proxy.
type NamespaceProxy struct {
	Subscribe string
	Publish   string
}

// AuthConfig selects how connections authenticate.
type AuthConfig struct {
	// JWT verification (any key source enables it; see auth.JWTOptions).
	JWTSecret         string
	JWTPublicKeyFiles []string
	JWTJWKSFile       string
	JWTIssuer         string
	JWTAudience       string
	// ConnectProxyURL, instead of JWT, asks this backend URL about each
	// handshake's cookies and headers (auth.ConnectProxy).
	ConnectProxyURL     string
	ConnectProxyTimeout time.Duration
	// AllowAnonymous lets connections without credentials in as anonymous
	// users when JWT or the connect proxy is configured.
	AllowAnonymous bool
	// TokenCookie names the cookie that may carry the token.
	TokenCookie string
	// Timeout is the auth-frame deadline (default 5 s); ExpiryLead is how
	// long before expiry session_expiring is sent (default 30 s).
	Timeout    time.Duration
	ExpiryLead time.Duration
}

// Enabled reports whether any authentication is configured.
func (a AuthConfig) Enabled() bool {
	return a.JWTSecret != "" || len(a.JWTPublicKeyFiles) > 0 || a.JWTJWKSFile != "" || a.ConnectProxyURL != ""
}

// buildAuth returns opts (the hub's auth options, of which only
// MaxViolations is the embedder's) with the verifiers and settings a asks
// for.
func buildAuth(a AuthConfig, opts hub.AuthOptions) (hub.AuthOptions, *auth.ConnectProxy, error) {
	opts.AllowAnonymous, opts.Timeout, opts.ExpiryLead = a.AllowAnonymous, a.Timeout, a.ExpiryLead
	var proxy *auth.ConnectProxy
	if a.ConnectProxyURL != "" {
		u, err := url.Parse(a.ConnectProxyURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return opts, nil, fmt.Errorf("server: connect proxy URL %q is not an http(s) URL", a.ConnectProxyURL)
		}
		proxy = &auth.ConnectProxy{URL: a.ConnectProxyURL, Timeout: a.ConnectProxyTimeout}
	}
	if a.JWTSecret != "" || len(a.JWTPublicKeyFiles) > 0 || a.JWTJWKSFile != "" {
		j, err := auth.NewJWT(auth.JWTOptions{
			Secret: []byte(a.JWTSecret), PublicKeyFiles: a.JWTPublicKeyFiles, JWKSFile: a.JWTJWKSFile,
			Issuer: a.JWTIssuer, Audience: a.JWTAudience,
		})
		if err != nil {
			return opts, nil, fmt.Errorf("server: %w", err)
		}
		opts.Authenticator, opts.Subscriptions = j, j
	} else if proxy != nil {
		// Connections come in authenticated by the proxy; a pending one
		// (never, unless anonymous) has no token to verify.
		opts.Authenticator = refuseTokens{}
	}
	return opts, proxy, nil
}

// refuseTokens is the token verifier when only the connect proxy
// authenticates: auth frames cannot log anyone in.
type refuseTokens struct{}

func (refuseTokens) Authenticate(context.Context, string) (*hub.Credentials, error) {
	return nil, fmt.Errorf("this server authenticates with the connect proxy, not tokens")
}

// DefaultDrainTimeout is how long a graceful shutdown waits for clients to
// take their close frames before cutting them.
const DefaultDrainTimeout = 10 * time.Second

// fileReserve is what MaxConnections leaves of the open-file limit for the
// listener, log files and outgoing connections (engine, proxies).
const fileReserve = 64

func (c *Config) fill() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.WSPath == "" {
		c.WSPath = "/ws"
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Transport.MaxConnections == 0 {
		if lim, ok := openFileLimit(); ok && lim > fileReserve*2 {
			c.Transport.MaxConnections = int(lim) - fileReserve
		}
	}
	if c.Hub.Logger == nil {
		c.Hub.Logger = c.Logger
	}
	if c.Transport.Logger == nil {
		c.Transport.Logger = c.Logger
	}
}

// checkOwned refuses the Hub and Transport fields that New fills from the
// rest of Config, rather than quietly overwriting them.
func (c *Config) checkOwned() error {
	owned := func(field, use string) error {
		return fmt.Errorf("server: Config.%s is set by New: use Config.%s", field, use)
	}
	switch {
	case c.Hub.Engine != nil:
		return owned("Hub.Engine", "Engine")
	case c.Hub.NodeID != "":
		return owned("Hub.NodeID", "NodeID")
	case c.Hub.Auth.Authenticator != nil || c.Hub.Auth.Subscriptions != nil || c.Hub.Auth.AllowAnonymous ||
		c.Hub.Auth.Timeout != 0 || c.Hub.Auth.ExpiryLead != 0:
		return owned("Hub.Auth", "Auth")
	case c.Hub.RPCFallback != nil && c.RPCProxyURL != "":
		return errors.New("server: Config.Hub.RPCFallback and Config.RPCProxyURL are both set: give one")
	case c.Transport.Hub != nil:
		return owned("Transport.Hub", "Hub (New builds the hub)")
	case c.Transport.Authenticator != nil || c.Transport.RequestAuthenticator != nil:
		return owned("Transport.Authenticator", "Auth")
	case c.Transport.TokenCookie != "":
		return owned("Transport.TokenCookie", "Auth.TokenCookie")
	}
	return nil
}

// Server is one Switchboard node.
type Server struct {
	cfg Config
	Hub *hub.Hub
	WS  *transport.WSHandler
	SSE *transport.SSEHandler // GET /sse
	// Emulation serves GET /emulation/stream and POST /emulation/send.
	Emulation *transport.EmulationHandler
	// Webhooks is the webhook sender, nil without webhook URLs.
	Webhooks *webhook.Sender
	serving  atomic.Bool // Serve has started (and will close Webhooks)
	handler  http.Handler
	log      *slog.Logger
}

// New builds a node from cfg; ctx bounds its background work.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.checkOwned(); err != nil {
		return nil, err
	}
	cfg.fill()
	if cfg.NodeID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.NodeID = hex.EncodeToString(b[:])
	}
	if cfg.Engine == nil {
		switch cfg.EngineName {
		case "", "memory":
			cfg.EngineName = "memory"
			cfg.Engine = memory.New(memory.Options{})
		case "redis":
			if cfg.Redis.NodeID == "" {
				cfg.Redis.NodeID = cfg.NodeID
			}
			e, err := redis.New(cfg.Redis)
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			cfg.Engine = e
		case "nats":
			if cfg.NATS.NodeID == "" {
				cfg.NATS.NodeID = cfg.NodeID
			}
			e, err := natsengine.New(cfg.NATS)
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			cfg.Engine = e
		default:
			return nil, fmt.Errorf("server: unknown engine %q (want memory, redis or nats)", cfg.EngineName)
		}
	} else if cfg.EngineName == "" {
		cfg.EngineName = fmt.Sprintf("%T", cfg.Engine)
	}
	authOpts, proxy, err := buildAuth(cfg.Auth, cfg.Hub.Auth)
	if err != nil {
		return nil, err
	}
	trusted := slices.Clone(cfg.Transport.TrustedProxies)
	for _, t := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, fmt.Errorf("server: trusted proxy %q is not a CIDR or an IP address", t)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		trusted = append(trusted, p)
	}
	// One HTTP client for every proxy: one pool of connections to the
	// backend.
	proxyClient := backend.NewClient()
	if proxy != nil && proxy.Client == nil {
		proxy.Client = proxyClient
	}
	rpcFallback := cfg.Hub.RPCFallback
	if cfg.RPCProxyURL != "" {
		if err := checkURL("RPC proxy", cfg.RPCProxyURL); err != nil {
			return nil, err
		}
		if rpcFallback, err = rpcproxy.New(rpcproxy.Options{URL: cfg.RPCProxyURL, Timeout: cfg.Hub.RPCTimeout, Client: proxyClient}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	hooks, err := proxyHooks(cfg, proxyClient)
	if err != nil {
		return nil, err
	}
	var hooksOut *webhook.Sender
	if len(cfg.Webhook.URLs) > 0 || len(cfg.Webhook.Secrets) > 0 {
		wo := cfg.Webhook
		wo.NodeID, wo.Logger = cfg.NodeID, cfg.Logger
		if wo.Client == nil {
			wo.Client = backend.NewClient()
		}
		if hooksOut, err = webhook.New(wo); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if _, ok := cfg.Engine.(engine.Occupancy); !ok && (hooksOut.Wants(webhook.RoomOccupied) || hooksOut.Wants(webhook.RoomVacated)) {
			cfg.Logger.Warn("webhooks: room.occupied and room.vacated are not sent with this engine (memory, redis and nats send them)", "engine", cfg.EngineName)
		}
		hooks = hooksOut.Hooks(hooks)
	}
	hopts := cfg.Hub
	hopts.NodeID, hopts.Engine, hopts.Auth = cfg.NodeID, cfg.Engine, authOpts
	hopts.RPCFallback, hopts.Hooks = rpcFallback, hooks
	// Replays and history pages must fit the outbound queue.
	if hopts.MaxReplayBytes == 0 {
		hopts.MaxReplayBytes = cfg.Transport.QueueMaxBytes / 2
	}
	if hopts.MaxReplayMessages == 0 {
		hopts.MaxReplayMessages = cfg.Transport.QueueMaxMessages / 2
	}
	h, err := hub.New(hopts)
	if err != nil {
		return nil, err
	}
	// Built before anything starts: a bad key fails New cleanly.
	var keys []string
	if cfg.APIKey != "" {
		keys = []string{cfg.APIKey}
	}
	apiHandler, err := api.New(api.Options{Hub: h, Keys: keys, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := h.Run(ctx); err != nil {
		return nil, err
	}
	if hooksOut != nil {
		// Not stopped by ctx: Serve's drain, which starts when ctx ends,
		// still sends the drained connections' events, then closes it. A
		// node that never served closes it when ctx ends.
		hooksOut.Run(context.WithoutCancel(ctx))
	}
	topts := cfg.Transport
	topts.Hub, topts.Authenticator, topts.TokenCookie = h, authOpts.Authenticator, cfg.Auth.TokenCookie
	topts.TrustedProxies = trusted
	if proxy != nil {
		topts.RequestAuthenticator = proxy
	}
	ws, err := transport.NewWSHandler(ctx, topts)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, Hub: h, WS: ws, SSE: transport.NewSSEHandler(ws, transport.SSEOptions{}), Webhooks: hooksOut, log: cfg.Logger}
	if hooksOut != nil {
		context.AfterFunc(ctx, func() {
			if !s.serving.Load() {
				expired, cancel := context.WithCancel(context.Background())
				cancel()
				_ = hooksOut.Close(expired)
			}
		})
	}
	mux := http.NewServeMux()
	mux.Handle(cfg.WSPath, ws)
	mux.Handle("/sse", s.SSE)
	s.Emulation = transport.NewEmulationHandler(s.SSE, transport.EmulationOptions{})
	mux.Handle("/emulation/stream", s.Emulation.Stream())
	mux.Handle("/emulation/send", s.Emulation.Send())
	if cfg.EchoPath != "" {
		mux.Handle(cfg.EchoPath, transport.EchoHandler(cfg.Logger))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if ws.Draining() { // the hub closes only after the drain
			writeError(w, http.StatusServiceUnavailable, "not_ready", "draining: the server is shutting down")
			return
		}
		if err := h.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("/api/", apiHandler)
	mux.Handle("/broadcast/", apiHandler) // the seeds' POST /broadcast/{room} (api/compat.go)
	var extra []prometheus.Collector
	if hooksOut != nil {
		extra = append(extra, hooksOut.Collector())
	}
	mux.Handle("GET /metrics", apiHandler.Protect(metrics.Handler(h, extra...)))
	if !cfg.NoDemo {
		mountDemo(mux, h, apiHandler, cfg.APIKey != "")
	}
	if !cfg.NoAdmin {
		mountAdmin(ctx, mux, h, ws, cfg.APIKey, cfg.Logger)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if route, ok := apiHandler.Suggest(r.URL.EscapedPath()); ok {
			writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path+"; the server API has "+route+" (docs/api.md)")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path+" (the WebSocket endpoint is "+cfg.WSPath+")")
	})
	s.handler = mux
	return s, nil
}

// Handler returns the node's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// MaxHeaderBytes is the most a request's line and headers may take (the
// handshake included): more is answered 431 by net/http, plain text.
const MaxHeaderBytes = 16 << 10

// httpHeaderSlop is what net/http reads beyond http.Server.MaxHeaderBytes
// before it answers 431 (4 KiB of "bufio slop"); it is taken off so that
// the limit is MaxHeaderBytes exactly. A test holds both edges.
const httpHeaderSlop = 4 << 10

// Serve serves on ln until ctx ends, then drains: new handshakes get 503,
// every client gets `disconnect` and close 1012 after what is queued, and
// Serve returns once all are gone or DrainTimeout passed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: s.handler,
		// A slow or silent client cannot pin a connection in the handshake.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes - httpHeaderSlop,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.serving.Store(true)
	errc := make(chan error, 1)
	go trimMemory(ctx)
	go func() {
		if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
			errc <- srv.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("draining", "connections", s.WS.Open(), "deadline", s.cfg.DrainTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	if err := s.WS.Shutdown(dctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.Hub.Shutdown(dctx, protocol.NewDisconnect(protocol.CloseServiceRestart, "server shutting down")); err != nil {
		errs = append(errs, err)
	}
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	if s.Webhooks != nil {
		// The drained connections' closed events are queued: give them the
		// rest of the drain deadline to go out.
		if err := s.Webhooks.Close(dctx); err != nil {
			errs = append(errs, err)
		}
	}
	_ = s.cfg.Engine.Close()
	return errors.Join(errs...)
}

// checkURL refuses a backend URL that is not http(s) with a host.
func checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server: %s URL %q is not an http(s) URL", what, raw)
	}
	return nil
}

// proxyHooks adds the subscribe and publish proxies to cfg.Hub.Hooks: each
// namespace asks its own URL (or the server-wide one), after the
// embedder's OnSubscribe or OnPublish, if any, allowed the request.
func proxyHooks(cfg Config, client *http.Client) (hub.Hooks, error) {
	hooks := cfg.Hub.Hooks
	opts := func(u string) rpcproxy.ProxyOptions {
		return rpcproxy.ProxyOptions{URL: u, Timeout: cfg.ProxyTimeout, Client: client}
	}
	subs := map[string]func(context.Context, hub.ConnectionInfo, string, json.RawMessage) (json.RawMessage, error){}
	pubs := map[string]func(context.Context, hub.ConnectionInfo, string, string, json.RawMessage) (json.RawMessage, error){}
	build := func(what, ns, u string) error {
		if u == "" || u == "off" {
			return nil
		}
		if err := checkURL(what+" proxy", u); err != nil {
			return err
		}
		var err error
		if what == "subscribe" {
			subs[ns], err = rpcproxy.NewSubscribe(opts(u))
		} else {
			pubs[ns], err = rpcproxy.NewPublish(opts(u))
		}
		return err
	}
	const all = "\x00all" // not a namespace name
	if err := build("subscribe", all, cfg.SubscribeProxyURL); err != nil {
		return hooks, err
	}
	if err := build("publish", all, cfg.PublishProxyURL); err != nil {
		return hooks, err
	}
	off := map[string]bool{}
	for ns, p := range cfg.NamespaceProxies {
		if err := build("subscribe", ns, p.Subscribe); err != nil {
			return hooks, fmt.Errorf("%w (namespace %q)", err, ns)
		}
		if err := build("publish", ns, p.Publish); err != nil {
			return hooks, fmt.Errorf("%w (namespace %q)", err, ns)
		}
		off["s"+ns], off["p"+ns] = p.Subscribe == "off", p.Publish == "off"
	}
	if len(subs) > 0 {
		if hooks.OnSubscribeData != nil {
			return hooks, errors.New("server: Hooks.OnSubscribeData is taken by the subscribe proxy: use OnSubscribe")
		}
		hooks.OnSubscribeData = func(ctx context.Context, c hub.ConnectionInfo, room string, data json.RawMessage) (json.RawMessage, error) {
			ns := protocol.Namespace(room)
			f, ok := subs[ns]
			if !ok && !off["s"+ns] {
				f = subs[all]
			}
			if f == nil {
				return nil, nil
			}
			return f(ctx, c, room, data)
		}
	}
	if len(pubs) > 0 {
		prev := hooks.OnPublish
		hooks.OnPublish = func(ctx context.Context, c hub.ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error) {
			var out json.RawMessage // nil: keep the data
			if prev != nil {
				d, err := prev(ctx, c, room, typ, data)
				if err != nil {
					return nil, err
				}
				if d != nil {
					data, out = d, d
				}
			}
			ns := protocol.Namespace(room)
			f, ok := pubs[ns]
			if !ok && !off["p"+ns] {
				f = pubs[all]
			}
			if f == nil {
				return out, nil
			}
			d, err := f(ctx, c, room, typ, data)
			if err != nil || d != nil {
				return d, err
			}
			return out, nil
		}
	}
	return hooks, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
