package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The fan-out benchmark holds more subscribers than one process may (a
// process may have 20,000 open files here), so they live in worker
// processes: this test binary run again with fanoutWorkerEnv set, which
// TestMain hands to runFanoutWorker instead of running tests.

const (
	fanoutWorkerEnv = "SWITCHBOARD_E2E_FANOUT_WORKER"
	connsPerWorker  = 9000
	// Latency histogram: 50 µs buckets up to 200 ms, then 10 ms buckets
	// up to a minute.
	fineBucket, fineBuckets     = 50 * time.Microsecond, 4000
	coarseBucket, coarseBuckets = 10 * time.Millisecond, 6000
)

// fanoutWorker is what a worker is asked to do.
type fanoutWorker struct {
	URL     string `json:"url"`
	Room    string `json:"room"`
	Conns   int    `json:"conns"`
	LocalIP string `json:"local_ip"`
}

// histogram counts latencies in the buckets above.
type histogram [fineBuckets + coarseBuckets]uint64

func bucketOf(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	if d < fineBuckets*fineBucket {
		return int(d / fineBucket)
	}
	return fineBuckets + min(int((d-fineBuckets*fineBucket)/coarseBucket), coarseBuckets-1)
}

// upper returns bucket i's upper bound.
func upper(i int) time.Duration {
	if i < fineBuckets {
		return time.Duration(i+1) * fineBucket
	}
	return fineBuckets*fineBucket + time.Duration(i-fineBuckets+1)*coarseBucket
}

// percentile returns the upper bound of the bucket holding the p-th
// percentile (0..100).
func (h *histogram) percentile(p float64) time.Duration {
	var n uint64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(float64(n-1) * p / 100)
	var seen uint64
	for i, c := range h {
		seen += c
		if seen > rank {
			return upper(i)
		}
	}
	return upper(len(h) - 1)
}

// runFanoutWorker is a worker's main: it connects and subscribes its
// connections, says "ready", then for each event reports "got I" once all
// its connections have event I, and when its stdin closes prints its
// latency histogram ("hist JSON") and exits.
func runFanoutWorker(spec string) int {
	var w fanoutWorker
	if err := json.Unmarshal([]byte(spec), &w); err != nil {
		fmt.Fprintln(os.Stderr, "fanout worker:", err)
		return 2
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		outMu.Unlock()
	}
	var hist [fineBuckets + coarseBuckets]atomic.Uint64
	var counts sync.Map // event index -> *atomic.Int64
	d := websocket.Dialer{HandshakeTimeout: 60 * time.Second}
	if w.LocalIP != "" {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(w.LocalIP)}, Timeout: 60 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	// read runs for each connection from its subscription on: it answers
	// the server's pings (inside ReadMessage) while the others connect,
	// and counts events.
	var closing atomic.Bool
	var lost atomic.Int64
	read := func(i int, ws *websocket.Conn) {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				if !closing.Load() && lost.Add(1) <= 5 {
					fmt.Fprintf(os.Stderr, "fanout worker: connection %d ended: %v\n", i, err)
				}
				return
			}
			if !bytes.Contains(b, latType) {
				continue
			}
			at := time.Now()
			var ev struct {
				Data struct {
					I int   `json:"i"`
					T int64 `json:"t"`
				} `json:"data"`
			}
			if json.Unmarshal(b, &ev) != nil {
				continue
			}
			hist[bucketOf(at.Sub(time.Unix(0, ev.Data.T)))].Add(1)
			c, _ := counts.LoadOrStore(ev.Data.I, new(atomic.Int64))
			if c.(*atomic.Int64).Add(1) == int64(w.Conns) {
				say("got %d", ev.Data.I)
			}
		}
	}
	conns := make([]*websocket.Conn, w.Conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Value
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ws, _, err := d.Dial(w.URL, nil)
			if err != nil {
				failed.Store(fmt.Sprintf("dial %d: %v", i, err))
				return
			}
			conns[i] = ws
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"s","room":"`+w.Room+`"}`)); err != nil {
				failed.Store(fmt.Sprintf("subscribe %d: %v", i, err))
				return
			}
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					failed.Store(fmt.Sprintf("subscribe %d: %v", i, err))
					return
				}
				if bytes.Contains(b, []byte(`"type":"subscribed"`)) {
					break
				}
			}
			go read(i, ws)
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		fmt.Fprintln(os.Stderr, "fanout worker:", f)
		return 1
	}
	say("ready")
	// Commands until the coordinator closes stdin: "report" prints the
	// histogram of the deliveries since the last report and starts a new
	// one (every event of a run has arrived when it is asked for).
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "report" {
			continue
		}
		var h histogram
		for i := range hist {
			h[i] = hist[i].Swap(0)
		}
		b, _ := json.Marshal(h[:])
		say("hist %s", b)
	}
	closing.Store(true)
	for _, ws := range conns {
		ws.Close()
	}
	return 0
}

// workerProc is a running worker, seen from the benchmark.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at its end
	log   *logFile
}

func startWorker(b *testing.B, w fanoutWorker, k int) *workerProc {
	spec, _ := json.Marshal(w)
	p := &workerProc{lines: make(chan string, 1024), log: newLogFile(b, "worker-"+strconv.Itoa(k))}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(cleanEnv(), fanoutWorkerEnv+"="+string(spec))
	p.cmd.Stderr = p.log
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	b.Cleanup(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// expect waits for the worker's next line, which must start with prefix.
func (p *workerProc) expect(b *testing.B, prefix string, d time.Duration) string {
	b.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			b.Fatalf("a fan-out worker ended while %q was awaited; its log:\n%s", prefix, p.log.tail(4000))
		}
		if !strings.HasPrefix(l, prefix) {
			b.Fatalf("a fan-out worker said %q, want %q...", l, prefix)
		}
		return strings.TrimSpace(strings.TrimPrefix(l, prefix))
	case <-time.After(d):
		b.Fatalf("a fan-out worker did not say %q within %s; its log:\n%s", prefix, d, p.log.tail(4000))
	}
	return ""
}

// procStat reads a process's CPU time (user+system) and resident memory.
func procStat(pid int) (cpu time.Duration, rssKB int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which is in parentheses).
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(u+s) * time.Second / 100 // USER_HZ
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				rssKB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			}
		}
	}
	return cpu, rssKB
}

// BenchmarkFanout: one room with N subscribers on each of 3 nodes (N from
// SWITCHBOARD_BENCH_CONNS, default 1,000; the target is 15,000),
// one event at a time published through the API of the first node; and,
// as the baseline, the same 3 × N subscribers on one node with the memory
// engine. Each iteration waits until every subscriber has the event. The
// metrics: latency of all deliveries (p50, p99, from histograms of 50 µs
// buckets) and of the whole fan-out (until the last subscriber has it),
// the nodes' CPU per delivery and resident memory per connection.
//
// The nodes run with --no-join-leave, as a big room would (set
// SWITCHBOARD_BENCH_JOIN_LEAVE=1 to keep the notices): otherwise each join
// is announced to every member, N² notices while the room fills.
// Subscribers live in worker processes (at most 9,000 each), on source
// addresses 127.0.0.2 and up, sharing the machine's cores with the nodes.
func BenchmarkFanout(b *testing.B) {
	perNode := 1000
	if v := os.Getenv("SWITCHBOARD_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 19000 {
			b.Fatalf("SWITCHBOARD_BENCH_CONNS=%q: want 1..19000 (subscribers per node)", v)
		}
		perNode = n
	}
	var args []string
	joinLeave := os.Getenv("SWITCHBOARD_BENCH_JOIN_LEAVE") != ""
	if !joinLeave {
		args = append(args, "--no-join-leave")
	}
	engines := []string{"memory", "redis"}
	if v := os.Getenv("SWITCHBOARD_BENCH_ENGINES"); v != "" {
		engines = strings.Split(v, ",")
	}
	for _, engine := range engines {
		var nodes []*node
		switch engine {
		case "memory":
			if 3*perNode > 19000 {
				b.Logf("engine memory: %d subscribers do not fit one node's 20,000 open files; skipped", 3*perNode)
				continue
			}
			nodes = []*node{startNode(b, "mem", nodeConfig{args: args})}
		case "redis":
			nodes = startCluster(b, 3, args...)
		default:
			b.Fatalf("SWITCHBOARD_BENCH_ENGINES: unknown engine %q", engine)
		}
		f := newFanout(b, nodes, 3*perNode)
		b.Logf("engine %s: %d subscribers on %d node(s), %d worker processes, join/leave notices %v: subscribed in %s; node RSS %s",
			engine, f.total, len(nodes), len(f.workers), joinLeave, f.setup.Round(time.Millisecond), f.rss())
		b.Run(fmt.Sprintf("engine=%s/nodes=%d/subscribers=%d", engine, len(nodes), f.total), f.run)
		f.stop()
		for _, n := range nodes {
			n.stop()
		}
	}
}

// fanout is one room with many subscribers in worker processes.
type fanout struct {
	nodes   []*node
	room    string
	total   int
	workers []*workerProc
	setup   time.Duration
	seq     int // the next event number
	stopped bool
}

func newFanout(b *testing.B, nodes []*node, total int) *fanout {
	f := &fanout{nodes: nodes, room: nextRoom("fanout"), total: total}
	start := time.Now()
	perNode := total / len(nodes)
	k := 0
	for _, n := range nodes {
		for left := perNode; left > 0; left -= connsPerWorker {
			w := fanoutWorker{URL: n.wsURL(), Room: f.room, Conns: min(left, connsPerWorker), LocalIP: "127.0.0." + strconv.Itoa(2+k)}
			f.workers = append(f.workers, startWorker(b, w, k))
			k++
		}
	}
	for _, w := range f.workers {
		w.expect(b, "ready", 10*time.Minute)
	}
	f.setup = time.Since(start)
	return f
}

// rss describes the nodes' resident memory.
func (f *fanout) rss() string {
	var parts []string
	for _, n := range f.nodes {
		_, kb := procStat(n.cmd.Process.Pid)
		parts = append(parts, fmt.Sprintf("%s %d MiB (%.1f KiB per connection)", n.name, kb/1024, float64(kb)/float64(f.total/len(f.nodes))))
	}
	return strings.Join(parts, ", ")
}

func (f *fanout) nodesCPU() time.Duration {
	var sum time.Duration
	for _, n := range f.nodes {
		c, _ := procStat(n.cmd.Process.Pid)
		sum += c
	}
	return sum
}

func (f *fanout) run(b *testing.B) {
	ctx := context.Background()
	var last histogram
	cpu0 := f.nodesCPU()
	b.ResetTimer()
	for range b.N {
		// Event numbers go on across the runs the testing package makes.
		i := f.seq
		f.seq++
		t0 := time.Now()
		data := map[string]int64{"i": int64(i), "t": t0.UnixNano()}
		if _, status, body, err := broadcast(ctx, f.nodes[0], f.room, "lat", data, ""); err != nil || status != 200 {
			b.Fatalf("publish: HTTP %d %s (%v)", status, body, err)
		}
		for _, w := range f.workers {
			if got := w.expect(b, "got", time.Minute); got != strconv.Itoa(i) {
				b.Fatalf("a worker reported event %s, want %d", got, i)
			}
		}
		last[bucketOf(time.Since(t0))]++
	}
	b.StopTimer()
	cpu := f.nodesCPU() - cpu0
	var all histogram
	for _, w := range f.workers {
		if _, err := io.WriteString(w.stdin, "report\n"); err != nil {
			b.Fatal(err)
		}
		var h []uint64
		if err := json.Unmarshal([]byte(w.expect(b, "hist", time.Minute)), &h); err != nil || len(h) != len(all) {
			b.Fatalf("a worker's histogram: %v", err)
		}
		for i, c := range h {
			all[i] += c
		}
	}
	b.ReportMetric(micros(all.percentile(50)), "p50-µs")
	b.ReportMetric(micros(all.percentile(99)), "p99-µs")
	b.ReportMetric(micros(last.percentile(50)), "p50-last-µs")
	b.ReportMetric(micros(last.percentile(99)), "p99-last-µs")
	b.ReportMetric(float64(f.total)/last.percentile(50).Seconds(), "deliveries/s")
	b.ReportMetric(micros(cpu)/float64(f.total*b.N), "node-cpu-µs/delivery")
}

// stop ends the workers (their connections close with them).
func (f *fanout) stop() {
	if f.stopped {
		return
	}
	f.stopped = true
	for _, w := range f.workers {
		w.stdin.Close()
	}
}
