// Command switchboard runs a Switchboard real-time messaging node.
//
//	switchboard serve [flags]   start a node (":8080", in-memory engine)
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

	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
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
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "switchboard", versionString())
		return 0
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
  version   print the version

Run 'switchboard serve -h' for the serve flags.
`)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// serveFlags binds the serve flags to cfg and returns the set.
func serveFlags(cfg *server.Config, logLevel, logFormat *string, origins *string) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address to listen on")
	fs.StringVar(&cfg.WSPath, "ws-path", "/ws", "WebSocket endpoint path")
	fs.StringVar(&cfg.EchoPath, "echo-path", "", "mount an RFC 6455 conformance echo endpoint at this path (off when empty)")
	fs.BoolVar(&cfg.Compression, "compression", false, "enable permessage-deflate on the WebSocket endpoint")
	fs.StringVar(origins, "allowed-origins", "", "comma-separated browser origins allowed to connect (host patterns like *.example.com, or full origins); empty: same-origin only")
	fs.IntVar(&cfg.MaxConnections, "max-connections", 0, "maximum open WebSocket connections (503 beyond); 0: open-file limit minus a reserve")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", transport.DefaultMaxMessageSize, "largest client message in bytes, after decompression (1009 beyond)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", transport.DefaultHeartbeatInterval, "server ping interval (5s..120s)")
	fs.DurationVar(&cfg.PongTimeout, "pong-timeout", transport.DefaultPongTimeout, "time allowed for a pong before the connection is closed with 4008")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", transport.DefaultWriteTimeout, "bound on one write to a client")
	fs.IntVar(&cfg.QueueMaxMessages, "queue-max-messages", transport.DefaultQueueMaxMessages, "per-connection outbound queue bound, in messages")
	fs.IntVar(&cfg.QueueMaxBytes, "queue-max-bytes", transport.DefaultQueueMaxBytes, "per-connection outbound queue bound, in bytes")
	fs.StringVar(&cfg.SlowConsumerPolicy, "slow-consumer-policy", transport.PolicyDisconnect, "when a queue is full: disconnect (close 4005) or drop_oldest")
	fs.IntVar(&cfg.MaxRoomsPerClient, "max-rooms-per-connection", 128, "subscriptions allowed per connection")
	fs.BoolVar(&cfg.NoEcho, "no-echo", false, "do not send clients their own publications")
	fs.BoolVar(&cfg.NoJoinLeave, "no-join-leave", false, "do not send user_joined/user_left events")
	fs.IntVar(&cfg.HistorySize, "history-size", 100, "events kept per room for recovery; -1 turns history off")
	fs.DurationVar(&cfg.HistoryTTL, "history-ttl", 0, "how long room events are kept (default 5m)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 0, "graceful shutdown deadline (default 10s)")
	fs.BoolVar(&cfg.NoDemo, "no-demo", false, "do not serve the demo page at /")
	fs.StringVar(logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(logFormat, "log-format", "text", "log format: text or json")
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
		key := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func serve(args []string, stderr io.Writer) int {
	var cfg server.Config
	var logLevel, logFormat, origins string
	fs := serveFlags(&cfg, &logLevel, &logFormat, &origins)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchboard serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		fmt.Fprintf(stderr, "switchboard serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard serve: %v\n", err)
		return 2
	}
	if origins != "" {
		for _, o := range strings.Split(origins, ",") {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, strings.TrimSpace(o))
		}
	}
	cfg.Logger = logger

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
	logger.Info("switchboard started",
		"version", versionString(), "listen", ln.Addr().String(), "ws", eff.WSPath, "engine", "memory",
		"max_connections", eff.MaxConnections, "compression", eff.Compression, "echo", eff.EchoPath)
	logger.Warn("no authentication configured: connections are anonymous and any connection may subscribe and publish to any room")
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
