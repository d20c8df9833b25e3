package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/internal/natstest"
	"github.com/switchboard-rt/switchboard/internal/testport"
)

// testNATSURL is the shared NATS (with JetStream) the tests use:
// SWITCHBOARD_TEST_NATS, default nats://127.0.0.1:4222. Without it the
// tests skip, except under CI, where a missing NATS is a failure (a
// skipped suite would pass silently).
func testNATSURL(tb testing.TB) string {
	tb.Helper()
	return natstest.URL(tb)
}

// testPrefix is a prefix no other test or run uses.
func testPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbt_" + hex.EncodeToString(b)
}

// newTestEngine returns an engine (not started); its streams are deleted
// when the test ends.
func newTestEngine(tb testing.TB, opts Options) *Engine {
	tb.Helper()
	if opts.Prefix == "" {
		opts.Prefix = testPrefix()
	}
	private := opts.URL != "" // a private server, gone after the test
	if !private {
		opts.URL = testNATSURL(tb)
	}
	e, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if !private && !opts.CoreOnly {
		tb.Cleanup(func() { deleteStreams(opts.URL, e) })
	}
	return e
}

// startEngine starts e with h; it is closed when the test ends.
func startEngine(tb testing.TB, e *Engine, h engine.Handler) {
	tb.Helper()
	if err := e.Run(context.Background(), h); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	tb.Cleanup(func() { e.Close() })
}

// deleteStreams removes e's streams (best effort).
func deleteStreams(url string, e *Engine) {
	natstest.DeleteStreams(url, e.histStream, e.idemStream, e.presStream, "KV_"+e.banBucketName(), "KV_"+e.occBucketName())
}

// waitFor polls cond for at most d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustNoErr(tb testing.TB, err error, format string, args ...any) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// privateNATS is a nats-server with JetStream that a test starts (and may
// kill and restart) on a free loopback port, storing in a temporary
// directory that survives restarts, as a real server's store does.
type privateNATS struct {
	tb    testing.TB
	bin   string
	dir   string
	port  int
	extra []string        // more server arguments
	copts []natsgo.Option // what a client needs to connect (credentials, CA)
	cmd   *exec.Cmd
}

func natsServerBin(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr == nil {
			return "/usr/sbin/nats-server"
		}
		if os.Getenv("CI") != "" {
			tb.Fatalf("nats-server not found and CI is set: %v", err)
		}
		tb.Skipf("nats-server not found (%v): the fault tests start their own", err)
	}
	return bin
}

// startPrivateNATS starts a server; extra are more arguments, copts what a
// client needs to connect to it.
func startPrivateNATS(tb testing.TB, extra []string, copts ...natsgo.Option) *privateNATS {
	tb.Helper()
	s := &privateNATS{tb: tb, bin: natsServerBin(tb), dir: tb.TempDir(), extra: extra, copts: copts}
	s.port = freePort(tb)
	s.start()
	tb.Cleanup(s.kill)
	return s
}

func (s *privateNATS) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *privateNATS) start() {
	s.tb.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js",
		"-sd", filepath.Join(s.dir, "store"), "-l", filepath.Join(s.dir, "nats.log")}, s.extra...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start nats-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := natsgo.Connect(s.url(), append([]natsgo.Option{natsgo.Timeout(time.Second)}, s.copts...)...)
		if err == nil {
			// JetStream answers once the store is recovered.
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "nats.log"))
			s.tb.Fatalf("nats-server on %s did not come up: %v\n%s", s.url(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server abruptly (SIGKILL), as a crash would.
func (s *privateNATS) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// freePort returns a loopback port nothing listens on (just closed).
func freePort(tb testing.TB) int {
	tb.Helper()
	return testport.Free(tb)
}

// proxy forwards loopback TCP connections to a server; cut closes every
// forwarded connection and refuses new ones until restore, so one engine
// can lose NATS while others keep it.
type proxy struct {
	target string
	l      net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{target: target, l: l, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		l.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src) // ends when either side closes
	dst.Close()
	src.Close()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
