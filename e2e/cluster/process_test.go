// Package cluster_test runs several real `switchboard serve` processes on
// loopback that share one Redis (the redis engine), with nginx in front of
// them for some tests, and checks that they behave as one server: ordered
// delivery across nodes, presence, node and Redis failures, user-level
// commands, statistics. It also holds the cluster benchmarks whose figures
// are in docs/benchmarks.md.
//
// Redis is the one at SWITCHBOARD_TEST_REDIS (default 127.0.0.1:6379);
// redis-server, nats-server and nginx must be installed for the tests that
// start their own. Missing services skip the tests, except when CI is set: then they
// fail, so that a CI run cannot pass without testing anything.
package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/switchboard-rt/switchboard/internal/testport"
)

// Bounds on waiting for processes; generous, because the machine is small
// and tests run beside each other.
const (
	startTimeout = 20 * time.Second // a node or service to come up
	stopTimeout  = 10 * time.Second // a node to stop after SIGTERM
)

// buildDir holds the switchboard binary built for this test run; TestMain
// removes it. Set once before any test runs.
var buildDir string

func TestMain(m *testing.M) {
	if spec := os.Getenv(fanoutWorkerEnv); spec != "" {
		os.Exit(runFanoutWorker(spec)) // a worker of BenchmarkFanout, not a test run
	}
	dir, err := os.MkdirTemp("", "switchboard-e2e-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/cluster:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildOnce builds cmd/switchboard the first time a test needs it. The
// binary is built with the race detector when the tests are (see
// race_test.go), so a data race in a node under cluster load shows up as
// "DATA RACE" in its log, which fails the test.
var buildOnce = sync.OnceValues(func() (string, error) {
	// `go test` puts its own go on the PATH of the tests it runs; the
	// fallback is where the development machine and CI install it.
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out := filepath.Join(buildDir, "switchboard")
	args := []string{"build", "-o", out}
	if raceBuild {
		args = append(args, "-race")
	}
	args = append(args, "github.com/switchboard-rt/switchboard/cmd/switchboard")
	cmd := exec.Command(goTool, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
})

func switchboardBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := buildOnce()
	if err != nil {
		tb.Fatalf("building switchboard: %v", err)
	}
	return bin
}

// needTool returns the path of an external program the test needs. When it
// is missing the test skips, or fails under CI.
func needTool(tb testing.TB, name string, fallbacks ...string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install -y %s)", name, debianPackage(name))
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s and CI is set", msg)
	}
	tb.Skip(msg)
	return ""
}

func debianPackage(tool string) string {
	if tool == "redis-server" {
		return "redis-server"
	}
	return tool
}

// sharedRedis is the Redis most tests use: SWITCHBOARD_TEST_REDIS, default
// 127.0.0.1:6379. Each test keeps its keys under a prefix of its own and
// deletes them when it ends.
func sharedRedis(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("SWITCHBOARD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("Redis is not reachable at %s (%v): start one with "+
			"`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no` or set SWITCHBOARD_TEST_REDIS", addr, err)
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s; CI is set, so this is a failure", msg)
		}
		tb.Skip(msg)
	}
	c.Close()
	return addr
}

// keyPrefix returns a Redis key prefix no other test or run uses, and
// deletes its keys from addr when the test ends.
func keyPrefix(tb testing.TB, addr string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "sbe2e:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() { deleteKeys(addr, p) })
	return p
}

// deleteKeys removes every key under prefix (bounded: test data is small).
func deleteKeys(addr, prefix string) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return // a private Redis may be gone already
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for range 10000 {
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

// freePort returns a loopback port that was free a moment ago, for
// programs that cannot listen on port 0 and report it (redis-server,
// nginx).
func freePort(tb testing.TB) int {
	tb.Helper()
	return testport.Free(tb)
}

// logFile is a process's combined output, kept in the test's temp dir and
// shown when the test fails.
type logFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func newLogFile(tb testing.TB, name string) *logFile {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name+".log")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return &logFile{path: path, f: f}
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// tail returns the last n bytes of the log.
func (l *logFile) tail(n int) string {
	b, _ := os.ReadFile(l.path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (l *logFile) contains(s string) bool {
	b, _ := os.ReadFile(l.path)
	return bytes.Contains(b, []byte(s))
}

// cleanEnv is the environment without SWITCHBOARD_* variables, so that the
// developer's own settings (an API key, a config file) do not leak into
// the nodes under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			env = append(env, kv)
		}
	}
	return env
}

// node is one running `switchboard serve` process.
type node struct {
	t    testing.TB
	name string // its --node-id
	addr string // host:port it listens on
	cmd  *exec.Cmd
	log  *logFile
	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	err  error // from Wait
}

// nodeConfig is what differs between the nodes of a test.
type nodeConfig struct {
	redis  string   // Redis host:port; empty: the memory engine
	prefix string   // Redis key prefix
	args   []string // extra serve flags
	// exact, when set, replaces every argument above: the node runs with
	// these arguments (which must make it log JSON) and env.
	exact []string
	env   []string // added to the environment
}

// serveArgs are the flags every test node gets: loopback on a port of
// its own, quiet limits (tests publish faster than a person would), a
// short presence TTL so that a killed node's entries expire quickly, and
// a history long enough for every recovery the tests provoke.
func (c nodeConfig) serveArgs(name string) []string {
	args := []string{"serve", "--listen", "127.0.0.1:0", "--node-id", name, "--no-demo",
		"--log-format", "json", "--max-messages-per-second", "0", "--max-bytes-per-second", "0",
		"--handshake-rate", "0", "--history-size", "2000"}
	if c.redis != "" {
		args = append(args, "--engine", "redis", "--redis-addr", c.redis, "--redis-key-prefix", c.prefix,
			"--redis-presence-ttl", "3s")
	}
	return append(args, c.args...)
}

// startNode starts a node and waits until its /readyz answers 200. It is
// stopped (SIGTERM, then SIGKILL) when the test ends; a data race reported
// in its log fails the test.
func startNode(tb testing.TB, name string, cfg nodeConfig) *node {
	tb.Helper()
	n := launchNode(tb, name, cfg)
	n.waitReady(startTimeout)
	return n
}

// launchNode starts a node without waiting for it to be ready.
func launchNode(tb testing.TB, name string, cfg nodeConfig) *node {
	tb.Helper()
	bin := switchboardBinary(tb)
	n := &node{t: tb, name: name, log: newLogFile(tb, "node-"+name), done: make(chan struct{})}
	args := cfg.exact
	if args == nil {
		args = cfg.serveArgs(name)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = append(cleanEnv(), cfg.env...)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	n.cmd.Stdout = n.log
	if err := n.cmd.Start(); err != nil {
		tb.Fatalf("start node %s: %v", name, err)
	}
	addrc := make(chan string, 1)
	go n.readLog(stderr, addrc)
	go func() {
		err := n.cmd.Wait()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(n.done)
	}()
	tb.Cleanup(func() {
		n.stop()
		if n.log.contains("DATA RACE") {
			tb.Errorf("node %s reported a data race; its log:\n%s", name, n.log.tail(20000))
		}
	})
	select {
	case n.addr = <-addrc:
	case <-n.done:
		tb.Fatalf("node %s exited at start (%v); its log:\n%s", name, n.exitErr(), n.log.tail(4000))
	case <-time.After(startTimeout):
		tb.Fatalf("node %s did not report its address within %s; its log:\n%s", name, startTimeout, n.log.tail(4000))
	}
	return n
}

// readLog copies the node's log to its file and reports the address from
// the "switchboard started" record.
func (n *node) readLog(r io.Reader, addrc chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		n.log.Write(append(line, '\n'))
		if sent {
			continue
		}
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "switchboard started" && rec.Listen != "" {
			addrc <- rec.Listen
			sent = true
		}
	}
	_, _ = io.Copy(n.log, r)
}

func (n *node) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

func (n *node) url(path string) string { return "http://" + n.addr + path }
func (n *node) wsURL() string          { return "ws://" + n.addr + "/ws" }

// readyz returns the status of GET /readyz (0 if the request failed).
func (n *node) readyz() int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(n.url("/readyz"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits until /readyz answers 200.
func (n *node) waitReady(d time.Duration) {
	n.t.Helper()
	n.waitReadyz(http.StatusOK, d)
}

// waitReadyz waits until /readyz answers status.
func (n *node) waitReadyz(status int, d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	last := 0
	for time.Now().Before(deadline) {
		if last = n.readyz(); last == status {
			return
		}
		select {
		case <-n.done:
			n.t.Fatalf("node %s exited (%v); its log:\n%s", n.name, n.exitErr(), n.log.tail(4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.t.Fatalf("node %s: /readyz answered %d, not %d, for %s; its log:\n%s", n.name, last, status, d, n.log.tail(4000))
}

// kill ends the node at once (SIGKILL): no drain, no goodbye to clients or
// to Redis, as when a machine dies.
func (n *node) kill() {
	n.t.Helper()
	_ = n.cmd.Process.Kill()
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		n.t.Fatalf("node %s did not die after SIGKILL", n.name)
	}
}

// stop ends the node gracefully, or kills it if it takes too long.
func (n *node) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// startCluster starts k nodes n1..nk on the shared Redis under a fresh key
// prefix, all with the same extra flags.
func startCluster(tb testing.TB, k int, args ...string) []*node {
	tb.Helper()
	addr := sharedRedis(tb)
	cfg := nodeConfig{redis: addr, prefix: keyPrefix(tb, addr), args: args}
	nodes := make([]*node, k)
	for i := range nodes {
		nodes[i] = launchNode(tb, "n"+strconv.Itoa(i+1), cfg)
	}
	for _, n := range nodes {
		n.waitReady(startTimeout)
	}
	return nodes
}

// redisServer is a private redis-server for tests that kill it.
type redisServer struct {
	t       testing.TB
	bin     string
	port    int
	dir     string
	persist bool
	args    []string // replace the default settings (persistence) when set
	log     *logFile
	cmd     *exec.Cmd
	done    chan struct{}
}

// startPrivateRedis starts a redis-server of the test's own on a free
// loopback port. Without persist a restart loses every key; with it, the
// append-only file (fsync every second) keeps them across a restart.
func startPrivateRedis(tb testing.TB, persist bool) *redisServer {
	tb.Helper()
	return startRedisWith(tb, &redisServer{persist: persist})
}

// startRedisWith starts r, a private redis-server whose persist or args
// are set.
func startRedisWith(tb testing.TB, r *redisServer) *redisServer {
	tb.Helper()
	r.t, r.bin, r.port, r.dir = tb, needTool(tb, "redis-server", "/usr/bin/redis-server"), freePort(tb), tb.TempDir()
	r.log = newLogFile(tb, "redis")
	r.start()
	tb.Cleanup(r.kill)
	return r
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	aof := "no"
	if r.persist {
		aof = "yes"
	}
	args := r.args
	if args == nil {
		args = []string{"--save", "", "--appendonly", aof, "--appendfsync", "everysec"}
	}
	// Later options win: loopback, our port and directory, foreground.
	args = append(args, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--dir", r.dir, "--daemonize", "no")
	r.cmd = exec.Command(r.bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.done = waitListening(r.t, "redis-server", r.cmd, r.addr(), r.log)
}

// waitListening waits until the started cmd accepts connections on addr,
// failing the test if it exits or does not within startTimeout. The
// channel it returns is closed when cmd has exited.
func waitListening(tb testing.TB, name string, cmd *exec.Cmd, addr string, log *logFile) chan struct{} {
	tb.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return done
		}
		select {
		case <-done:
			tb.Fatalf("%s exited at start; its log:\n%s", name, log.tail(4000))
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.Fatalf("%s did not listen on %s within %s; its log:\n%s", name, addr, startTimeout, log.tail(4000))
	return done
}

// kill ends redis-server at once (SIGKILL).
func (r *redisServer) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// errNotReady is returned by pollUntil when its condition never held.
var errNotReady = errors.New("condition not met in time")

// pollUntil calls cond every interval until it returns true or d passed.
func pollUntil(d, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return errNotReady
		}
		time.Sleep(interval)
	}
}
