package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/internal/testport"
)

// testRedisAddr is the shared Redis the tests use: SWITCHBOARD_TEST_REDIS,
// default 127.0.0.1:6379. Without it the tests skip, except under CI, where
// a missing Redis is a failure (a skipped suite would pass silently).
func testRedisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("SWITCHBOARD_TEST_REDIS")
	if addr == "" {
		addr = DefaultAddr
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("Redis is not reachable at %s and CI is set, so the Redis engine cannot be tested: %v", addr, err)
		}
		tb.Skipf("Redis is not reachable at %s (%v): start one with "+
			"`redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no` or set SWITCHBOARD_TEST_REDIS", addr, err)
	}
	c.Close()
	return addr
}

// testPrefix is a key prefix no other test or run uses.
func testPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbtest:" + hex.EncodeToString(b) + ":"
}

// newTestEngine returns an engine (not started) on the shared Redis; its
// keys are deleted when the test ends.
func newTestEngine(tb testing.TB, opts Options) *Engine {
	tb.Helper()
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = testPrefix()
	}
	cluster := len(opts.ClusterAddrs) > 0 // a private cluster, gone after the test
	if opts.Addr == "" && !cluster {
		opts.Addr = testRedisAddr(tb)
	}
	e, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if !cluster {
		tb.Cleanup(func() { deleteKeys(tb, opts.Addr, opts.KeyPrefix) })
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

// rawClient is a plain Redis client for checking what the engine stored.
func rawClient(tb testing.TB, addr string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		tb.Fatalf("redis client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// deleteKeys removes every key under prefix (bounded: test data is small).
func deleteKeys(tb testing.TB, addr, prefix string) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return // the server may be gone (fault tests)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for i := 0; i < 10000; i++ {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return
		}
		if len(e.Elements) > 0 {
			c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
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

// privateRedis is a redis-server this test starts (and may kill and
// restart) on a free loopback port, with no persistence: a restart loses
// every key, as a real Redis restart without persistence does.
type privateRedis struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd
}

func redisServerBin(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server not on PATH and CI is set: %v", err)
		}
		tb.Skipf("redis-server not on PATH (%v): the fault tests start their own", err)
	}
	return bin
}

// newPrivateRedis prepares a redis-server on a free port with the default
// arguments; the caller may change r.args, then calls start.
func newPrivateRedis(tb testing.TB) *privateRedis {
	tb.Helper()
	r := &privateRedis{tb: tb, bin: redisServerBin(tb), dir: tb.TempDir()}
	r.port, _ = strconv.Atoi(strings.TrimPrefix(freePort(tb), "127.0.0.1:"))
	r.args = []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")}
	tb.Cleanup(r.kill)
	return r
}

// startPrivateRedis starts a redis-server; extra are more arguments.
func startPrivateRedis(tb testing.TB, extra ...string) *privateRedis {
	tb.Helper()
	r := newPrivateRedis(tb)
	r.args = append(r.args, extra...)
	r.start()
	return r
}

// startSentinel starts a Redis Sentinel watching master as set "sbmaster".
func startSentinel(tb testing.TB, master *privateRedis) *privateRedis {
	tb.Helper()
	r := newPrivateRedis(tb)
	conf := filepath.Join(r.dir, "sentinel.conf") // sentinel rewrites it: a file of its own
	err := writeFile(conf, fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor sbmaster 127.0.0.1 %d 1\n",
		r.port, r.dir, filepath.Join(r.dir, "redis.log"), master.port))
	mustNoErr(tb, err, "sentinel config")
	r.args = []string{conf, "--sentinel"}
	r.start()
	return r
}

func (r *privateRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *privateRedis) start() {
	r.tb.Helper()
	r.cmd = exec.Command(r.bin, r.args...)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	// Wait until it accepts connections (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.tb.Fatalf("redis-server on %s did not come up: %v\n%s", r.addr(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server abruptly (SIGKILL), as a crash would.
func (r *privateRedis) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// do runs one command on the private server.
func (r *privateRedis) do(args ...string) (rueidis.RedisMessage, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.addr()}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return rueidis.RedisMessage{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build()).ToMessage()
}

func mustNoErr(tb testing.TB, err error, format string, args ...any) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o600) }

// freePort returns a loopback address nothing listens on (just closed).
func freePort(tb testing.TB) string {
	tb.Helper()
	return "127.0.0.1:" + strconv.Itoa(testport.Free(tb))
}
