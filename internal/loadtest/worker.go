package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// workerConfig is one worker's share of the subscribers. It travels as
// flags of "switchboard bench worker".
type workerConfig struct {
	URL             string        // ws://127.0.0.1:PORT/ws
	Conns           int           // subscribers this worker opens
	First           int           // global index of the first one (rooms are index % Rooms)
	Rooms           int           // number of rooms, "bench-0" ...
	LocalIP         string        // source address, "" for the kernel's choice
	DialConcurrency int           // handshakes in flight
	Timeout         time.Duration // the worker ends itself after this
	Transport       string        // "websocket" (default) or "sse" (GET /sse on the same host)
}

func (c workerConfig) args() []string {
	return []string{
		"--url", c.URL, "--conns", strconv.Itoa(c.Conns), "--first", strconv.Itoa(c.First),
		"--rooms", strconv.Itoa(c.Rooms), "--local-ip", c.LocalIP,
		"--dial-concurrency", strconv.Itoa(c.DialConcurrency), "--timeout", c.Timeout.String(),
		"--transport", c.Transport,
	}
}

func parseWorkerConfig(args []string) (workerConfig, error) {
	var c workerConfig
	fs := flag.NewFlagSet("bench worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.URL, "url", "", "")
	fs.IntVar(&c.Conns, "conns", 0, "")
	fs.IntVar(&c.First, "first", 0, "")
	fs.IntVar(&c.Rooms, "rooms", 1, "")
	fs.StringVar(&c.LocalIP, "local-ip", "", "")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "")
	fs.StringVar(&c.Transport, "transport", TransportWebSocket, "")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("bench worker: %w", err)
	}
	switch {
	case c.Conns < 0 || c.Rooms < 1 || c.DialConcurrency < 1 || c.Timeout <= 0:
		return c, errors.New("bench worker: --conns, --rooms, --dial-concurrency and --timeout must be positive")
	case c.URL == "":
		return c, errors.New("bench worker: --url is required")
	case c.Transport != TransportWebSocket && c.Transport != TransportSSE:
		return c, fmt.Errorf("bench worker: --transport %q is not %s or %s", c.Transport, TransportWebSocket, TransportSSE)
	}
	return c, nil
}

// stallTimeout ends the wait for deliveries when none has come for this
// long: what is missing then is not coming.
const stallTimeout = 3 * time.Second

// roomName names room i of a run.
func roomName(i int) string { return "bench-" + strconv.Itoa(i) }

// Events a worker sends.
type phaseEvent struct {
	Event      string `json:"event"` // "connected" or "subscribed"
	OK         int    `json:"ok"`
	Failed     int    `json:"failed"`
	FirstError string `json:"first_error,omitempty"`
	StartNS    int64  `json:"start_ns"`
	EndNS      int64  `json:"end_ns"`
}

type workerReport struct {
	Event       string         `json:"event"` // "report"
	Conns       int            `json:"conns"`
	Subscribed  int            `json:"subscribed"`
	Open        int            `json:"open"`
	Delivered   uint64         `json:"delivered"`
	Expected    uint64         `json:"expected"`
	Lost        uint64         `json:"lost"`        // skipped: below the highest sequence number received
	Undelivered uint64         `json:"undelivered"` // above it when the drain ended
	Incomplete  int            `json:"incomplete"`
	OutOfOrder  uint64         `json:"out_of_order"`
	Pings       uint64         `json:"pings"`
	ErrorEvents uint64         `json:"error_events"`
	Other       uint64         `json:"other_frames"`
	FirstError  string         `json:"first_error,omitempty"`
	Closes      map[string]int `json:"closes,omitempty"`
	FirstRecvNS int64          `json:"first_recv_ns"`
	LastRecvNS  int64          `json:"last_recv_ns"`
	Latency     HistSnapshot   `json:"latency"`
}

// sub is one subscriber connection.
type sub struct {
	c    *wsConn // nil for an SSE subscriber
	sse  *sseSub
	room int
	// next is the sequence number expected next; only the reader uses it.
	next       uint32
	got        atomic.Uint32 // distinct sequence numbers received
	highest    atomic.Uint32 // the highest received
	ooo        atomic.Uint32 // older than one already received
	subscribed atomic.Bool
	ended      atomic.Bool
	closeCode  atomic.Uint32
}

type worker struct {
	cfg  workerConfig
	host string
	path string
	subs []*sub

	hist        Histogram
	nSubscribed atomic.Int64
	pings       atomic.Uint64
	errorEvents atomic.Uint64
	other       atomic.Uint64
	firstRecv   atomic.Int64
	lastRecv    atomic.Int64
	errMu       sync.Mutex
	firstErr    string
}

func (w *worker) noteErr(s string) {
	w.errMu.Lock()
	if w.firstErr == "" {
		w.firstErr = s
	}
	w.errMu.Unlock()
}

func (w *worker) firstError() string {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.firstErr
}

func runWorker(ctx context.Context, args []string, in io.Reader, em *emitter) error {
	cfg, err := parseWorkerConfig(args)
	if err != nil {
		return err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return fmt.Errorf("bench worker: --url %q is not ws://host:port/path", cfg.URL)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	w := &worker{cfg: cfg, host: u.Host, path: u.RequestURI()}
	defer w.closeAll()
	cmds := commands(ctx, in)

	ev := w.connect(ctx)
	if err := em.emit(ev); err != nil {
		return err
	}
	for {
		m, err := nextCommand(ctx, cmds)
		if m == nil {
			return err
		}
		switch cmdName(m) {
		case "subscribe":
			var timeout time.Duration
			_ = json.Unmarshal(m["timeout_ns"], &timeout)
			if err := em.emit(w.subscribe(ctx, timeout)); err != nil {
				return err
			}
		case "report":
			var expected []uint64
			var drain time.Duration
			_ = json.Unmarshal(m["expected"], &expected)
			_ = json.Unmarshal(m["drain_ns"], &drain)
			if err := em.emit(w.report(ctx, expected, drain)); err != nil {
				return err
			}
		}
	}
}

// checkLoopback refuses targets off this machine: the tool opens
// thousands of connections and must never do that to someone else.
func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("bench: %q is not a loopback address; the load tool only talks to this machine", host)
	}
	return nil
}

// connect opens the worker's connections, cfg.DialConcurrency at a time.
// A connection counts once its connection_established event is read: the
// server has then run its whole connect path.
func (w *worker) connect(ctx context.Context) phaseEvent {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if w.cfg.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(w.cfg.LocalIP)}
	}
	subs := make([]*sub, w.cfg.Conns)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(w.cfg.DialConcurrency, w.cfg.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(subs) || ctx.Err() != nil {
					return
				}
				s, err := w.open(ctx, d, i)
				if err != nil {
					failed.Add(1)
					w.noteErr(err.Error())
					continue
				}
				subs[i] = s
				// Read at once: the server's heartbeat pings start now,
				// and a slow connect phase must not make it miss pongs.
				if s.sse != nil {
					go w.readSSE(s)
				} else {
					go w.read(s)
				}
			}
		})
	}
	wg.Wait()
	end := time.Now()
	for _, s := range subs {
		if s != nil {
			w.subs = append(w.subs, s)
		}
	}
	return phaseEvent{Event: "connected", OK: len(w.subs), Failed: int(failed.Load()),
		FirstError: w.firstError(), StartNS: start.UnixNano(), EndNS: end.UnixNano()}
}

var establishedPrefix = []byte(`{"type":"connection_established"`)

// open connects subscriber i (worker-local).
func (w *worker) open(ctx context.Context, d *net.Dialer, i int) (*sub, error) {
	if w.cfg.Transport == TransportSSE {
		return w.openSSE(ctx, d, i)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := dialWS(ctx, d, w.host, w.path)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = c.nc.SetReadDeadline(dl)
	op, p, err := c.readFrame()
	// A heartbeat ping may come before connection_established (the
	// server registers the connection for heartbeats first).
	for i := 0; err == nil && op == opPing && i < 3; i++ {
		w.pings.Add(1)
		_ = c.write(opPong, p)
		op, p, err = c.readFrame()
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if err != nil || op != opText || !bytes.HasPrefix(p, establishedPrefix) {
		c.closeWS(0, true)
		if err == nil {
			err = fmt.Errorf("first frame (opcode %d) is not connection_established: %.120q", op, p)
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &sub{c: c, room: (w.cfg.First + i) % w.cfg.Rooms, next: 1}
	return s, nil
}

// subscribe sends every connection's subscribe and waits for the answers.
func (w *worker) subscribe(ctx context.Context, timeout time.Duration) phaseEvent {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	start := time.Now()
	failed := 0
	for _, s := range w.subs {
		if s.sse != nil {
			continue // subscribed by its request
		}
		msg := `{"type":"subscribe","id":"s","room":"` + roomName(s.room) + `"}`
		if err := s.c.write(opText, []byte(msg)); err != nil {
			failed++
			w.noteErr("subscribe: " + err.Error())
		}
	}
	want := int64(len(w.subs) - failed)
	deadline := time.Now().Add(timeout)
	for w.nSubscribed.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	ok := int(w.nSubscribed.Load())
	return phaseEvent{Event: "subscribed", OK: ok, Failed: len(w.subs) - ok,
		FirstError: w.firstError(), StartNS: start.UnixNano(), EndNS: time.Now().UnixNano()}
}

var (
	messagePrefix    = []byte(`{"type":"message"`)
	subscribedPrefix = []byte(`{"type":"subscribed"`)
	errorPrefix      = []byte(`{"type":"error"`)
	dataMarker       = []byte(`"data":{"s":`)
	timeMarker       = []byte(`,"t":`)
)

// read is a subscriber's read loop: it checks sequence numbers, records
// latency and answers pings. (An epoll loop over all of a worker's
// connections was tried instead of a goroutine each: it used as much CPU,
// most of which is the kernel's read path either way.)
func (w *worker) read(s *sub) {
	defer s.ended.Store(true)
	for {
		op, p, err := s.c.readFrame()
		now := time.Now().UnixNano()
		if err != nil {
			return
		}
		switch op {
		case opText:
			w.text(s, p, now)
		case opPing:
			w.pings.Add(1)
			_ = s.c.write(opPong, p)
		case opClose:
			code := uint32(1005)
			if len(p) >= 2 {
				code = uint32(p[0])<<8 | uint32(p[1])
			}
			s.closeCode.Store(code)
			_ = s.c.write(opClose, p[:min(len(p), 2)])
			s.c.closeWS(0, true)
			return
		default:
			w.other.Add(1)
		}
	}
}

func (w *worker) text(s *sub, p []byte, now int64) {
	switch {
	case bytes.HasPrefix(p, messagePrefix):
		seq, sent, ok := parseBenchData(p)
		if !ok {
			w.other.Add(1)
			return
		}
		w.hist.Record(time.Duration(now - sent))
		w.firstRecv.CompareAndSwap(0, now)
		for {
			l := w.lastRecv.Load()
			if now <= l || w.lastRecv.CompareAndSwap(l, now) {
				break
			}
		}
		switch {
		case seq >= s.next:
			s.got.Add(1)
			s.next = seq + 1
			s.highest.Store(seq)
		default:
			s.ooo.Add(1)
		}
	case bytes.HasPrefix(p, subscribedPrefix):
		if !s.subscribed.Swap(true) {
			w.nSubscribed.Add(1)
		}
	case bytes.HasPrefix(p, errorPrefix):
		w.errorEvents.Add(1)
		w.noteErr(string(p[:min(len(p), 200)]))
	default:
		w.other.Add(1)
	}
}

// parseBenchData reads the sequence number and send time the publisher
// put at the start of the event's data: {"s":SEQ,"t":UNIXNANO,...}.
func parseBenchData(p []byte) (seq uint32, sent int64, ok bool) {
	i := bytes.Index(p, dataMarker)
	if i < 0 {
		return 0, 0, false
	}
	p = p[i+len(dataMarker):]
	s, n := parseUint(p)
	if n == 0 || !bytes.HasPrefix(p[n:], timeMarker) {
		return 0, 0, false
	}
	p = p[n+len(timeMarker):]
	t, m := parseUint(p)
	if m == 0 || s > 1<<32-1 {
		return 0, 0, false
	}
	return uint32(s), int64(t), true
}

func parseUint(p []byte) (v uint64, n int) {
	for n < len(p) && n < 19 && p[n] >= '0' && p[n] <= '9' {
		v = v*10 + uint64(p[n]-'0')
		n++
	}
	return v, n
}

// report waits until every open subscriber has its room's expected count,
// or until deliveries stop coming for stallTimeout, or drain passes; then
// it counts.
func (w *worker) report(ctx context.Context, expected []uint64, drain time.Duration) workerReport {
	exp := func(s *sub) uint64 {
		if s.room < len(expected) {
			return expected[s.room]
		}
		return 0
	}
	deadline := time.Now().Add(drain)
	var last uint64
	lastChange := time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) && time.Since(lastChange) < stallTimeout {
		complete, total := true, uint64(0)
		for _, s := range w.subs {
			got := uint64(s.got.Load())
			total += got
			if s.subscribed.Load() && !s.ended.Load() && got < exp(s) {
				complete = false
			}
		}
		if complete {
			break
		}
		if total != last {
			last, lastChange = total, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := workerReport{Event: "report", Conns: len(w.subs), Closes: map[string]int{}}
	for _, s := range w.subs {
		if !s.ended.Load() {
			r.Open++
		}
		if code := s.closeCode.Load(); code != 0 {
			r.Closes[strconv.Itoa(int(code))]++
		} else if s.ended.Load() {
			r.Closes["no close frame"]++
		}
		if !s.subscribed.Load() {
			continue
		}
		r.Subscribed++
		got, high, e := uint64(s.got.Load()), uint64(s.highest.Load()), exp(s)
		r.Expected += e
		if got < e {
			r.Incomplete++
			r.Lost += high - got
			r.Undelivered += e - high
		}
		r.OutOfOrder += uint64(s.ooo.Load())
	}
	r.Latency = w.hist.Snapshot()
	r.Delivered = r.Latency.Count
	r.Pings = w.pings.Load()
	r.ErrorEvents = w.errorEvents.Load()
	r.Other = w.other.Load()
	r.FirstRecvNS, r.LastRecvNS = w.firstRecv.Load(), w.lastRecv.Load()
	r.FirstError = w.firstError()
	return r
}

// closeAll resets every connection: no close handshake, no TIME_WAIT.
func (w *worker) closeAll() {
	for _, s := range w.subs {
		if s.sse != nil {
			s.sse.close()
			continue
		}
		s.c.closeWS(0, true)
	}
}
