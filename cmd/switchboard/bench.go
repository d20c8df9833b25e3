//go:build bench

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/internal/loadtest"
	"github.com/switchboard-rt/switchboard/server"
)

const benchUsage = `usage: switchboard bench [flags]          one load run (see flags below)
       switchboard bench floor [flags]    the floor: bare writes of a 140-byte frame
       switchboard bench suite [flags]    the standard set (what "make bench" runs)

A run starts its own server (the serve command, on a free loopback port)
unless --url names a running one, opens the subscribers from worker
processes (re-executions of this binary, at most --conns-per-worker each),
publishes 128-byte JSON events through one WebSocket publisher at --rate,
and reports delivered messages/s, latency, loss, server CPU per delivery,
server RSS per connection and connections/s. Loopback only.
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// bench runs "switchboard bench ..." and its internal child roles.
func bench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "worker", "floor-writer", "floor-reader":
			return benchChild(args[0], args[1:], stdout, stderr)
		case "server":
			return benchServer(args[1:], stderr)
		case "floor":
			return benchFloor(args[1:], stdout, stderr)
		case "suite":
			return benchSuite(args[1:], stdout, stderr)
		}
	}
	return benchRun(args, stdout, stderr)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// benchChild runs a worker or floor process for a coordinator: commands
// on stdin, events on stdout.
func benchChild(role string, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	if err := loadtest.RunRole(ctx, role, args, os.Stdin, stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "switchboard bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

func parseBenchFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchboard %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func benchRun(args []string, stdout, stderr io.Writer) int {
	var s loadtest.Scenario
	var idle, asJSON, withFloor bool
	var heartbeat time.Duration
	var cpuprofile, memprofile string
	var serverArgs, serverEnv stringList
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage, "\nflags:\n"); fs.PrintDefaults() }
	fs.StringVar(&s.URL, "url", "", "WebSocket URL of a running server (loopback only); empty: start one")
	fs.IntVar(&s.ServerPID, "server-pid", 0, "with --url: the server's process id, to measure its CPU and memory")
	fs.IntVar(&s.Subs, "subs", 1000, "subscriber connections")
	fs.IntVar(&s.Rooms, "rooms", 1, "rooms; subscriber i joins room i % rooms, publishes go round robin")
	fs.Float64Var(&s.Rate, "rate", 100, "publishes per second (all rooms together)")
	fs.BoolVar(&idle, "idle", false, "publish nothing: hold the subscribed connections for --duration")
	fs.DurationVar(&s.Duration, "duration", 10*time.Second, "how long to publish (or to hold, with --idle)")
	fs.IntVar(&s.DataSize, "data-size", 128, "bytes of JSON data per publish")
	fs.IntVar(&s.ConnsPerWorker, "conns-per-worker", 9000, "most connections per worker process (a process may hold 20,000 files)")
	fs.IntVar(&s.DialConcurrency, "dial-concurrency", 64, "handshakes in flight per worker")
	fs.BoolVar(&s.LocalIPs, "local-ips", false, "give worker k the source address 127.0.0.(k+2)")
	fs.DurationVar(&s.Drain, "drain", time.Minute, "longest wait for the last deliveries (it also ends when all arrived, or none came for 3 s)")
	fs.DurationVar(&s.Timeout, "timeout", 0, "bound on the whole run (default: duration + drain + 3m)")
	fs.DurationVar(&heartbeat, "heartbeat-interval", 0, "spawned server: ping interval (pong timeout 80% of it); 0: the server default")
	fs.Var(&serverArgs, "server-arg", "spawned server: an extra serve flag (repeatable), e.g. --server-arg=--history-size=-1")
	fs.Var(&serverEnv, "server-env", "spawned server: an extra environment variable (repeatable), e.g. --server-env GOGC=50")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "spawned server: write a CPU profile of the whole run to this file")
	fs.StringVar(&memprofile, "memprofile", "", "spawned server: write a heap profile at the measuring point to this file")
	fs.BoolVar(&withFloor, "floor", false, "also measure the floor (bare writes to as many connections) and print the ratio")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.StringVar(&s.Transport, "transport", loadtest.TransportWebSocket, "how subscribers connect: websocket, or sse (GET /sse; the publisher stays on WebSocket)")
	if code, ok := parseBenchFlags(fs, args, stderr); !ok {
		return code
	}
	if idle {
		s.Rate = 0
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "switchboard bench: cannot find this binary to run workers from: %v\n", err)
		return 1
	}
	s.Exe, s.Log, s.Name = exe, stderr, "run"
	if s.URL == "" {
		spec := &loadtest.ServerSpec{Args: loadtest.DefaultServerArgs(), Env: serverEnv}
		if cpuprofile != "" || memprofile != "" {
			// The profiling server is serve plus runtime/pprof; it writes
			// the heap profile on SIGUSR1, sent at the measuring point.
			spec.Args = append([]string{"bench", "server", "--cpuprofile", cpuprofile, "--memprofile", memprofile}, spec.Args[1:]...)
			spec.ProfileSignal = memprofile != ""
		}
		if heartbeat > 0 {
			spec.Args = append(spec.Args, "--heartbeat-interval", heartbeat.String(), "--pong-timeout", (heartbeat * 4 / 5).String())
		}
		spec.Args = append(spec.Args, serverArgs...)
		s.Server = spec
	} else if len(serverArgs) > 0 || len(serverEnv) > 0 || cpuprofile != "" || memprofile != "" || heartbeat > 0 {
		fmt.Fprintln(stderr, "switchboard bench: --server-*, --heartbeat-interval and the profiles apply to a spawned server, not to --url")
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := loadtest.Run(ctx, s)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard bench: %v\n", err)
		return 1
	}
	var floor *loadtest.FloorResult
	if withFloor && s.Rate > 0 {
		floor, err = loadtest.RunFloor(ctx, loadtest.FloorConfig{Exe: exe, Conns: min(s.Subs, 15000),
			Rate: s.Rate / float64(s.Rooms), Duration: s.Duration, Log: stderr})
		if err != nil {
			fmt.Fprintf(stderr, "switchboard bench: floor: %v\n", err)
			return 1
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"run": res, "floor": floor})
		return 0
	}
	res.WriteText(stdout)
	if floor != nil {
		floor.WriteText(stdout)
		if floor.CPUPerWriteUS > 0 {
			fmt.Fprintf(stdout, "  ratio        %.2f (server CPU per delivery / floor CPU per write)\n", res.CPUPerDeliveryUS/floor.CPUPerWriteUS)
		}
		if floor.P99 > 0 {
			fmt.Fprintf(stdout, "  p99 ratio    %.2f (server p99 / floor p99)\n", float64(res.P99)/float64(floor.P99))
		}
	}
	return 0
}

func benchFloor(args []string, stdout, stderr io.Writer) int {
	var c loadtest.FloorConfig
	var perWrite string
	fs := flag.NewFlagSet("bench floor", flag.ContinueOnError)
	fs.IntVar(&c.Conns, "conns", 1000, "loopback connections (recipients)")
	fs.Float64Var(&c.Rate, "rate", 100, "frames per second per connection")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to write")
	fs.IntVar(&c.FrameSize, "frame-size", 140, "bytes per frame on the wire")
	fs.StringVar(&perWrite, "frames-per-write", "1,4", "frames per write() (comma-separated list: one run each)")
	if code, ok := parseBenchFlags(fs, args, stderr); !ok {
		return code
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "switchboard bench floor: %v\n", err)
		return 1
	}
	c.Exe, c.Log = exe, stderr
	ctx, stop := signalContext()
	defer stop()
	for _, k := range strings.Split(perWrite, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(k), &n); err != nil || n < 1 {
			fmt.Fprintf(stderr, "switchboard bench floor: bad --frames-per-write %q\n", k)
			return 2
		}
		c.FramesPerWrite = n
		f, err := loadtest.RunFloor(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "switchboard bench floor: %v\n", err)
			return 1
		}
		f.WriteText(stdout)
	}
	return 0
}

func benchSuite(args []string, stdout, stderr io.Writer) int {
	var c loadtest.SuiteConfig
	var serverEnv stringList
	fs := flag.NewFlagSet("bench suite", flag.ContinueOnError)
	fs.Float64Var(&c.Scale, "scale", 1, "multiply every subscriber count (for a quick look, e.g. 0.1)")
	fs.Var(&serverEnv, "server-env", "an extra environment variable for the spawned servers (repeatable)")
	if code, ok := parseBenchFlags(fs, args, stderr); !ok {
		return code
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "switchboard bench suite: %v\n", err)
		return 1
	}
	c.Exe, c.Log, c.Out, c.ServerEnv = exe, stderr, stdout, serverEnv
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	sr := loadtest.RunSuite(ctx, c)
	fmt.Fprintf(stdout, "\n## Results (%s, %d CPUs, %s, suite took %s)\n\n", runtime.Version(), runtime.NumCPU(), machineModel(), time.Since(start).Round(time.Second))
	sr.WriteMarkdown(stdout)
	if len(sr.Errors) > 0 {
		return 1
	}
	return 0
}

// machineModel returns the CPU model and kernel release, for the record.
func machineModel() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		model += ", Linux " + strings.TrimSpace(string(b))
	}
	return model
}

// benchServer is serve with profiling, for "bench --cpuprofile/--memprofile":
// "bench server [--cpuprofile F] [--memprofile F] <serve flags>". The CPU
// profile covers the server's whole life; the heap profile is written
// (after a GC) each time the process gets SIGUSR1.
func benchServer(args []string, stderr io.Writer) int {
	var cpuprofile, memprofile string
	for len(args) >= 2 && (args[0] == "--cpuprofile" || args[0] == "--memprofile") {
		if args[0] == "--cpuprofile" {
			cpuprofile = args[1]
		} else {
			memprofile = args[1]
		}
		args = args[2:]
	}
	cfg, logger, code, done := setup("bench server", args, stderr)
	if done {
		return code
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "switchboard bench server: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "switchboard bench server: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signalContext()
	defer stop()
	if memprofile != "" {
		usr1 := make(chan os.Signal, 1)
		if err := notifyProfile(usr1); err != nil {
			fmt.Fprintf(stderr, "switchboard bench server: %v\n", err)
			return 2
		}
		defer signal.Stop(usr1)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-usr1:
					if err := writeHeapProfile(memprofile, logger); err != nil {
						logger.Error("heap profile", "err", err)
					}
				}
			}
		}()
	}
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
	if err := srv.Serve(ctx, ln); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return 1
	}
	return 0
}

func writeHeapProfile(path string, logger *slog.Logger) error {
	runtime.GC()
	// Where the resident memory is, beside the heap profile: goroutine
	// stacks and the GC's headroom are not in the profile.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	logger.Warn("memory at the heap profile (MiB)", "heap_inuse", ms.HeapInuse>>20, "heap_idle", ms.HeapIdle>>20,
		"heap_released", ms.HeapReleased>>20, "stack_inuse", ms.StackInuse>>20, "sys", ms.Sys>>20,
		"goroutines", runtime.NumGoroutine(), "gc_cycles", ms.NumGC, "next_gc", ms.NextGC>>20)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("write heap profile: %w", err)
	}
	return f.Close()
}
