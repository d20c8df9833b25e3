package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value must land in a bucket whose range holds it, and bucket
	// ranges must be contiguous.
	prevMax := int64(-1)
	for i := 0; i < histBuckets-1; i++ {
		lo := uint64(prevMax + 1)
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if got := bucketOf(bucketMax(i)); got != i {
			t.Fatalf("bucketOf(bucketMax(%d)=%d) = %d", i, bucketMax(i), got)
		}
		prevMax = int64(bucketMax(i))
	}
	if bucketOf(1<<62) != histBuckets-1 {
		t.Error("huge value is not in the last bucket")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	// 1..1000 µs once each: p50 = 500 µs, p99 = 990 µs, within 1.6%.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	h.Record(-time.Millisecond)
	s := h.Snapshot()
	cases := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}}
	for _, c := range cases {
		got := s.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.016 {
			t.Errorf("q%.2f = %v, want %v (at most 1.6%% above)", c.q, got, c.want)
		}
	}
	if s.Count != 1001 || s.Negative != 1 || time.Duration(s.MaxNS) != time.Millisecond {
		t.Errorf("count %d negative %d max %v", s.Count, s.Negative, time.Duration(s.MaxNS))
	}

	// Merging two halves gives the same quantiles as one histogram, also
	// after a JSON round trip (how workers send them).
	var a, b Histogram
	for i := 1; i <= 1000; i++ {
		if i%2 == 0 {
			a.Record(time.Duration(i) * time.Microsecond)
		} else {
			b.Record(time.Duration(i) * time.Microsecond)
		}
	}
	m := a.Snapshot()
	raw, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var bs HistSnapshot
	if err := json.Unmarshal(raw, &bs); err != nil {
		t.Fatal(err)
	}
	m.Merge(bs)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if m.Quantile(q) != s.Quantile(q) {
			t.Errorf("merged q%.2f = %v, single %v", q, m.Quantile(q), s.Quantile(q))
		}
	}
	var empty HistSnapshot
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram has non-zero quantile or mean")
	}
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 7 0 100 1000000 500 18446744073709551615"
	cpu, threads, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3250*time.Millisecond || threads != 7 {
		t.Errorf("cpu %v threads %d, want 3.25s 7", cpu, threads)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 75 0 0 20 0 7 0"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
	rss, err := parseStatusKB([]byte("Name:\tx\nVmRSS:\t   1234 kB\nThreads:\t3\n"), "VmRSS:")
	if err != nil || rss != 1234*1024 {
		t.Errorf("VmRSS = %d, %v", rss, err)
	}
	if _, err := parseStatusKB([]byte("Name:\tx\n"), "VmRSS:"); err == nil {
		t.Error("missing VmRSS line not reported")
	}
}

func TestReadProcSelf(t *testing.T) {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.Threads <= 0 || p.CPU < 0 {
		t.Errorf("implausible sample %+v", p)
	}
	if _, err := ReadProc(-1); err == nil {
		t.Error("reading a process that cannot exist succeeded")
	}
}

func TestMask(t *testing.T) {
	for n := range 40 {
		key := rand.Uint32()
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rand.Uint32())
		}
		want := append([]byte(nil), b...)
		var k [4]byte
		binary.BigEndian.PutUint32(k[:], key)
		for i := range want {
			want[i] ^= k[i%4]
		}
		mask(b, key)
		if !bytes.Equal(b, want) {
			t.Fatalf("n=%d: mask differs from the byte-by-byte definition", n)
		}
	}
}

func TestPublishDataRoundTrip(t *testing.T) {
	for _, size := range []int{128, 64, 10} {
		b := appendPublish(nil, 3, 4567, 1700000000123456789, size)
		var env struct {
			Type string          `json:"type"`
			Room string          `json:"room"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("size %d: publish is not JSON: %v: %s", size, err, b)
		}
		if env.Type != "message" || env.Room != "bench-3" {
			t.Errorf("type %q room %q", env.Type, env.Room)
		}
		if size >= 64 && len(env.Data) != size {
			t.Errorf("data is %d bytes, want %d", len(env.Data), size)
		}
		// What a subscriber receives: the server's event around that data.
		ev := []byte(`{"type":"message","id":"ab-1","room":"bench-3","user_id":"u","data":` + string(env.Data) + `,"ts":1}`)
		seq, sent, ok := parseBenchData(ev)
		if !ok || seq != 4567 || sent != 1700000000123456789 {
			t.Errorf("size %d: parsed %d %d %v", size, seq, sent, ok)
		}
	}
	for _, bad := range []string{`{"type":"message"}`, `{"data":{"s":x}}`, `{"data":{"s":1,"u":2}}`, `{"data":{"s":99999999999,"t":1}}`} {
		if _, _, ok := parseBenchData([]byte(bad)); ok {
			t.Errorf("parsed %s", bad)
		}
	}
}

func TestFloorFrame(t *testing.T) {
	for _, size := range []int{minFloorFrame, 127, 128, 129, 140, 4096} {
		f := floorFrame(size)
		if len(f) != size {
			t.Fatalf("frame is %d bytes, want %d", len(f), size)
		}
		if _, ok := floorFrameStamp(f); ok {
			t.Errorf("size %d: an unstamped frame has a send time", size)
		}
		const at = int64(1795000000123456789)
		stampFloorFrame(f, at)
		if got, ok := floorFrameStamp(f); !ok || got != at {
			t.Errorf("size %d: send time %d, %v; want %d", size, got, ok, at)
		}
		c := &wsConn{}
		c.br = bufioReader(f)
		op, p, err := c.readFrame()
		if err != nil || op != opText || !json.Valid(p) {
			t.Errorf("size %d: op %d err %v payload %q", size, op, err, p)
		}
	}
	if err := (&FloorConfig{FrameSize: minFloorFrame - 1}).fill(); err == nil {
		t.Errorf("a %d-byte floor frame, too small for its send time, was accepted", minFloorFrame-1)
	}
}

func TestReadFrame(t *testing.T) {
	long := strings.Repeat("y", 3000) // larger than the read buffer
	var in []byte
	in = append(in, 0x81, 5)
	in = append(in, "hello"...)
	in = append(in, 0x89, 0) // ping, empty
	in = append(in, 0x81, 126, byte(len(long)>>8), byte(len(long)))
	in = append(in, long...)
	in = append(in, 0x81, 127, 0, 0, 0, 0, 0, 0, 0, 2)
	in = append(in, "ok"...)
	in = append(in, 0x01, 1, 'x') // not FIN: fragmented
	c := &wsConn{br: bufioReader(in)}
	want := []struct {
		op byte
		p  string
	}{{opText, "hello"}, {opPing, ""}, {opText, long}, {opText, "ok"}}
	for i, w := range want {
		op, p, err := c.readFrame()
		if err != nil || op != w.op || string(p) != w.p {
			t.Fatalf("frame %d: op %d len %d err %v", i, op, len(p), err)
		}
	}
	if _, _, err := c.readFrame(); err != errFragmented {
		t.Errorf("fragmented frame: err %v", err)
	}
	c = &wsConn{br: bufioReader([]byte{0x81, 0x81, 1, 2, 3, 4, 'x'})}
	if _, _, err := c.readFrame(); err == nil {
		t.Error("masked server frame accepted")
	}
}

func TestWorkerConfigArgsRoundTrip(t *testing.T) {
	c := workerConfig{URL: "ws://127.0.0.1:1/ws", Conns: 5, First: 10, Rooms: 2, LocalIP: "127.0.0.3", DialConcurrency: 4, Timeout: time.Minute, Transport: TransportSSE}
	got, err := parseWorkerConfig(c.args())
	if err != nil || got != c {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	bad := [][]string{{"--conns", "1"}, {"--url", "ws://x", "--rooms", "0"}, {"--url", "ws://x", "--nope"}, {"--url", "ws://x", "--transport", "carrier-pigeon"}}
	for _, args := range bad {
		if _, err := parseWorkerConfig(args); err == nil {
			t.Errorf("parseWorkerConfig(%q) succeeded", args)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "127.0.0.9", "::1", "localhost"} {
		if err := checkLoopback(h); err != nil {
			t.Errorf("%s refused: %v", h, err)
		}
	}
	for _, h := range []string{"192.0.2.1", "example.com", "0.0.0.0", ""} {
		if err := checkLoopback(h); err == nil {
			t.Errorf("%s accepted", h)
		}
	}
}

// TestFloorInProcess runs a tiny floor with writer and reader on
// goroutines: every byte written must be read.
func TestFloorInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []int{1, 4} {
		f, err := RunFloor(ctx, FloorConfig{Conns: 10, Rate: 200, Duration: 100 * time.Millisecond, FramesPerWrite: k})
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		if f.Frames != 200 || f.Writes != uint64(200/k) || f.WriteErrors != 0 {
			t.Errorf("k=%d: %d frames in %d writes (%d errors), want 200 in %d", k, f.Frames, f.Writes, f.WriteErrors, 200/k)
		}
		if f.BytesRead != f.BytesWritten || f.BytesWritten != 200*140 {
			t.Errorf("k=%d: wrote %d bytes, read %d, want %d", k, f.BytesWritten, f.BytesRead, 200*140)
		}
		// One latency per frame, each from its round's stamp: positive,
		// and far below the run's own length plus the drain.
		if f.Latency.Count != 200 || f.Latency.Negative != 0 || f.Max <= 0 || f.Max > 10*time.Second {
			t.Errorf("k=%d: %d latencies (%d negative), max %s; want 200 in (0, 10s]", k, f.Latency.Count, f.Latency.Negative, f.Max)
		}
	}
}

func TestScenarioValidation(t *testing.T) {
	cases := []struct {
		name string
		s    Scenario
		want string
	}{
		{"no subs", Scenario{URL: "ws://127.0.0.1:1/ws", Duration: time.Second}, "at least one subscriber"},
		{"no duration", Scenario{URL: "ws://127.0.0.1:1/ws", Subs: 1}, "duration must be positive"},
		{"less than one publish", Scenario{URL: "ws://127.0.0.1:1/ws", Subs: 1, Rate: 0.5, Duration: time.Second}, "less than one publish"},
		{"no server", Scenario{Subs: 1, Duration: time.Second}, "give a server URL"},
		{"spawn without binary", Scenario{Subs: 1, Duration: time.Second, Server: &ServerSpec{}}, "needs the switchboard binary"},
		{"not loopback", Scenario{URL: "ws://192.0.2.1:1/ws", Subs: 1, Duration: time.Second}, "not a loopback address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func bufioReader(b []byte) *bufio.Reader {
	return bufio.NewReaderSize(bytes.NewReader(b), clientReadBuffer)
}

// TestWorkerCountsLoss feeds a subscriber events with a gap and a late
// one and checks the report's accounting.
func TestWorkerCountsLoss(t *testing.T) {
	w := &worker{cfg: workerConfig{Rooms: 2}}
	s := &sub{room: 1, next: 1}
	s.subscribed.Store(true)
	idle := &sub{room: 0, next: 1} // never subscribed: not counted
	w.subs = []*sub{s, idle}
	now := time.Now().UnixNano()
	for _, seq := range []uint64{1, 2, 4, 3} {
		ev := `{"type":"message","id":"e-1","room":"bench-1","data":` + string(appendPublishData(seq, now-int64(time.Millisecond))) + `,"ts":1}`
		w.text(s, []byte(ev), now)
	}
	w.text(s, []byte(`{"type":"error","data":{"code":"bad_request"}}`), now)
	w.text(s, []byte(`{"type":"pong"}`), now)
	r := w.report(context.Background(), []uint64{7, 5}, time.Second)
	// 1, 2, 4 arrived in order, 3 late: 3 distinct, highest 4, so 1
	// skipped (3, counted lost although it came late: order is promised)
	// and 1 never came (5).
	got := []uint64{r.Delivered, r.Expected, r.Lost, r.Undelivered, r.OutOfOrder, uint64(r.Incomplete), uint64(r.Subscribed), r.ErrorEvents, r.Other}
	want := []uint64{4, 5, 1, 1, 1, 1, 1, 1, 1}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("delivered, expected, lost, undelivered, out of order, incomplete, subscribed, errors, other = %v, want %v", got, want)
			break
		}
	}
	if !strings.Contains(r.FirstError, "bad_request") {
		t.Errorf("first error %q", r.FirstError)
	}
	if q := r.Latency.Quantile(0.5); q < 990*time.Microsecond || q > 1020*time.Microsecond {
		t.Errorf("latency p50 %v, want about 1 ms", q)
	}
}

// appendPublishData returns the data object of a 128-byte publish.
func appendPublishData(seq uint64, sent int64) []byte {
	b := appendPublish(nil, 0, seq, sent, 128)
	i := bytes.Index(b, []byte(`"data":`))
	return b[i+len(`"data":`) : len(b)-1]
}

func TestParseSystemCPU(t *testing.T) {
	s, err := parseSystemCPU([]byte("cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Busy != 1600*time.Millisecond || s.Total != 9800*time.Millisecond {
		t.Errorf("busy %v total %v, want 1.6s 9.8s", s.Busy, s.Total)
	}
	if _, err := parseSystemCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a file without the cpu line parsed")
	}
	if _, err := ReadSystemCPU(); err != nil {
		t.Error(err)
	}
}

func TestParseIOCount(t *testing.T) {
	io := []byte("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\n")
	if r, w := parseIOCount(io, "syscr:"), parseIOCount(io, "syscw:"); r != 3 || w != 4 {
		t.Errorf("syscr %d syscw %d, want 3 4", r, w)
	}
	if parseIOCount(io, "nope:") != 0 {
		t.Error("missing key is not 0")
	}
}

// TestSuiteTargets checks the suite's verdicts against made-up results.
func TestSuiteTargets(t *testing.T) {
	sr := &SuiteResult{
		Floor1: &FloorResult{FramesPerWrite: 1, Conns: 1000, Rate: 100, Duration: 10 * time.Second, Frames: 1000000, CPUPerWriteUS: 7, CPUPerFrameUS: 7,
			P99: 12 * time.Millisecond},
		Runs: []*Result{
			{Name: "fanout-1k", Subs: 1000, Rate: 100, DeliveredPerSec: 99990, P99: 15 * time.Millisecond, CPUPerDeliveryUS: 8.1},
			{Name: "fanout-10k", Subs: 10000, Rate: 20, DeliveredPerSec: 199000, P99: 150 * time.Millisecond},
			{Name: "fanout-10k-40", Subs: 10000, Rate: 40, DeliveredPerSec: 396000, P99: 210 * time.Millisecond},
			{Name: "idle-19k", Subs: 19000, Open: 19000, RSSPerConn: 9.7 * 1024, ConnectsPerSec: 10100},
		},
		Commands: map[string]string{},
	}
	var b strings.Builder
	sr.WriteMarkdown(&b)
	out := b.String()
	for _, want := range []string{
		"[NOT MET] 1000 subs × 100/s", // p99 15 ms
		"[met] server CPU per delivery 8.10 µs within 1.2× the floor's 7.00 µs",
		"[report] p99 15.00 ms against the floor's 12.00 ms at the same load (1.25×)",
		"[met] 10000 subs × 20/s: 199000 delivered/s of 200000 offered (1.17× Centrifugo's best 170,000/s)",
		"[NOT MET] 10000 subs × 40/s", // p99 210 ms
		"[met] 19000 idle connections",
		"[met] new connections: best 10100/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("suite output lacks %q:\n%s", want, out)
		}
	}
}
