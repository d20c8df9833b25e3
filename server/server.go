// Package server assembles a Switchboard node: engine, hub, WebSocket
// transport, health endpoints and the demo page behind one net/http
// server, with graceful drain on shutdown. cmd/switchboard is a thin shell
// around it; embedders who want only the WebSocket endpoint use hub and
// transport directly.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// Config is a node's configuration. Zero values take the documented
// defaults (see Default).
type Config struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string
	// WSPath is the WebSocket endpoint. Default "/ws".
	WSPath string
	// EchoPath, when set, mounts the RFC 6455 conformance echo endpoint.
	EchoPath string
	// Compression enables permessage-deflate on WSPath. Default off.
	Compression bool
	// AllowedOrigins: see transport.Options. Default: same-origin.
	AllowedOrigins []string
	// MaxConnections caps open WebSocket connections (503 beyond). 0 means
	// the process's open-file limit minus a reserve for listeners, logs
	// and outgoing connections.
	MaxConnections int
	// MaxMessageSize caps a client message in bytes. Default 65536.
	MaxMessageSize int
	// HeartbeatInterval and PongTimeout: see transport.Options.
	HeartbeatInterval time.Duration
	PongTimeout       time.Duration
	// WriteTimeout bounds one write to a client. Default 10 s.
	WriteTimeout time.Duration
	// QueueMaxMessages, QueueMaxBytes, SlowConsumerPolicy: see
	// transport.Options.
	QueueMaxMessages   int
	QueueMaxBytes      int
	SlowConsumerPolicy string
	// MaxRoomsPerClient caps a connection's subscriptions. Default 128.
	MaxRoomsPerClient int
	// NoEcho stops clients receiving their own publications.
	NoEcho bool
	// NoJoinLeave turns off user_joined/user_left events.
	NoJoinLeave bool
	// HistorySize and HistoryTTL set every room's history. Defaults 100
	// events and 5 minutes; HistorySize -1 turns history off.
	HistorySize int
	HistoryTTL  time.Duration
	// DrainTimeout bounds graceful shutdown. Default 10 s.
	DrainTimeout time.Duration
	// NoDemo turns off the demo page at /.
	NoDemo bool
	// Engine overrides the engine (tests, embedders). Default: memory.
	Engine engine.Engine
	// Logger receives logs. Default: discard.
	Logger *slog.Logger
}

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
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxConnections == 0 {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur > fileReserve*2 {
			c.MaxConnections = int(lim.Cur) - fileReserve
		}
	}
}

// Server is one Switchboard node.
type Server struct {
	cfg     Config
	Hub     *hub.Hub
	WS      *transport.Handler
	handler http.Handler
	log     *slog.Logger
}

// New builds a node from cfg; ctx bounds its background work.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg.fill()
	if cfg.Engine == nil {
		cfg.Engine = memory.New(memory.Options{})
	}
	hopts := hub.Options{
		Engine:            cfg.Engine,
		Logger:            cfg.Logger,
		MaxRoomsPerClient: cfg.MaxRoomsPerClient,
		NoEcho:            cfg.NoEcho,
		NoJoinLeave:       cfg.NoJoinLeave,
	}
	switch {
	case cfg.HistorySize < 0:
		hopts.NoHistory = true
	case cfg.HistorySize > 0 || cfg.HistoryTTL > 0:
		hopts.History = engine.HistoryPolicy{Size: cfg.HistorySize, TTL: cfg.HistoryTTL}
		if hopts.History.Size == 0 {
			hopts.History.Size = hub.DefaultHistorySize
		}
	}
	h, err := hub.New(hopts)
	if err != nil {
		return nil, err
	}
	if err := h.Run(ctx); err != nil {
		return nil, err
	}
	ws, err := transport.NewHandler(ctx, transport.Options{
		Hub:                h,
		Logger:             cfg.Logger,
		AllowedOrigins:     cfg.AllowedOrigins,
		MaxConnections:     cfg.MaxConnections,
		MaxMessageSize:     cfg.MaxMessageSize,
		Compression:        cfg.Compression,
		HeartbeatInterval:  cfg.HeartbeatInterval,
		PongTimeout:        cfg.PongTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		QueueMaxMessages:   cfg.QueueMaxMessages,
		QueueMaxBytes:      cfg.QueueMaxBytes,
		SlowConsumerPolicy: cfg.SlowConsumerPolicy,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, Hub: h, WS: ws, log: cfg.Logger}
	mux := http.NewServeMux()
	mux.Handle(cfg.WSPath, ws)
	if cfg.EchoPath != "" {
		mux.Handle(cfg.EchoPath, transport.EchoHandler(cfg.Logger))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if !cfg.NoDemo {
		mux.HandleFunc("GET /{$}", demoPage)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path+" (the WebSocket endpoint is "+cfg.WSPath+")")
	})
	s.handler = mux
	return s, nil
}

// Handler returns the node's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

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
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
	_ = s.cfg.Engine.Close()
	return errors.Join(errs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
