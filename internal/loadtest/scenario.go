// Package loadtest is the engine of "switchboard bench": it opens many
// subscriber connections over loopback (spread over worker processes, as
// one process may hold at most 20,000 open files here), publishes through
// one publisher connection at a fixed rate, and measures what the server
// costs: delivered messages per second, delivery latency, loss, server CPU
// per delivery and RSS per connection (read from /proc), and connections
// per second. It also measures the floor: the CPU a bare Go program needs
// to write one pre-encoded frame to each of N loopback connections, which
// is what our CPU per delivery is judged against.
//
// Everything is bounded: every phase has a timeout, children end with
// their coordinator, and connections are reset (not lingered) at the end.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/client"
)

// Scenario is one load run.
type Scenario struct {
	// Name labels the run in reports.
	Name string
	// URL is the server's WebSocket endpoint (ws://127.0.0.1:PORT/ws).
	// Ignored when Server is set.
	URL string
	// Server, if set, is started for the run and stopped after it.
	Server *ServerSpec
	// ServerPID is the process whose CPU and memory are measured when the
	// server is not spawned; 0 skips those figures.
	ServerPID int
	// Exe is the switchboard binary that workers are run from; empty runs
	// the workers on goroutines of this process (tests).
	Exe string
	// Subs is the number of subscriber connections; Rooms spreads them
	// (subscriber i joins room i % Rooms). Default 1 room.
	Subs, Rooms int
	// Rate is publishes per second over all rooms (round robin); 0 makes
	// an idle run that holds the connections for Duration.
	Rate float64
	// Duration is how long to publish (or to hold, when idle).
	Duration time.Duration
	// DataSize is the size of each publication's JSON data. Default 128.
	DataSize int
	// ConnsPerWorker caps one worker's connections. Default 9,000: with
	// the 20,000 open files a process may have, and room to spare.
	ConnsPerWorker int
	// DialConcurrency is handshakes in flight per worker. Default 64.
	DialConcurrency int
	// LocalIPs gives worker k the source address 127.0.0.(k+2), so
	// each worker has a full range of ephemeral ports to itself.
	LocalIPs bool
	// Settle is the pause after subscribing before measuring memory and
	// publishing. Default 1 s.
	Settle time.Duration
	// Drain bounds the wait for the last deliveries after publishing;
	// the wait also ends when all arrived or none came for 3 s. Default
	// 60 s.
	Drain time.Duration
	// Timeout bounds the whole run. Default: a few minutes past Duration.
	Timeout time.Duration
	// Log receives progress lines and the children's diagnostics.
	Log io.Writer
	// Transport is how subscribers connect: TransportWebSocket (default)
	// or TransportSSE (GET /sse?room=... on URL's host; the publisher
	// still uses a WebSocket).
	Transport string
}

// Result is what a scenario measured. Durations are in nanoseconds in JSON.
type Result struct {
	Name      string        `json:"name"`
	Transport string        `json:"transport"`
	Subs      int           `json:"subs"`
	Rooms     int           `json:"rooms"`
	Rate      float64       `json:"rate"`
	Duration  time.Duration `json:"duration"`
	Workers   int           `json:"workers"`

	Connected      int     `json:"connected"`
	ConnectFailed  int     `json:"connect_failed"`
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectsPerSec float64 `json:"connects_per_sec"`
	// ConnectCPUPerConnUS is server CPU during the connect phase per
	// connection, in µs.
	ConnectCPUPerConnUS float64 `json:"connect_cpu_per_conn_us"`
	Subscribed          int     `json:"subscribed"`
	SubscribeSeconds    float64 `json:"subscribe_seconds"`

	Publishes       int           `json:"publishes"`
	PublisherBehind time.Duration `json:"publisher_behind_max"`
	Expected        uint64        `json:"expected"`
	Delivered       uint64        `json:"delivered"`
	Lost            uint64        `json:"lost"`        // sequence numbers skipped
	Undelivered     uint64        `json:"undelivered"` // still missing at the end of the drain
	OutOfOrder      uint64        `json:"out_of_order"`
	DeliveredPerSec float64       `json:"delivered_per_sec"`
	Latency         HistSnapshot  `json:"-"`
	P50             time.Duration `json:"p50"`
	P99             time.Duration `json:"p99"`
	P999            time.Duration `json:"p999"`
	Max             time.Duration `json:"max"`
	Mean            time.Duration `json:"mean"`

	// Server figures; zero when the server process is unknown.
	ServerPID        int           `json:"server_pid"`
	ServerCPU        time.Duration `json:"server_cpu"` // during publishing (or holding)
	CPUPerDeliveryUS float64       `json:"cpu_per_delivery_us"`
	// WritesPerDelivery is the server's write system calls per delivered
	// message (below 1 when it coalesces several events into one writev),
	// and CPUPerWriteUS its CPU per write call, comparable with the
	// floor's CPU per write whatever the coalescing.
	WritesPerDelivery float64 `json:"writes_per_delivery"`
	CPUPerWriteUS     float64 `json:"cpu_per_write_us"`
	RSSBefore         int64   `json:"rss_before"`     // before subscribers connected
	RSSSubscribed     int64   `json:"rss_subscribed"` // after subscribing and Settle
	RSSEnd            int64   `json:"rss_end"`
	RSSPerConn        float64 `json:"rss_per_conn"` // bytes, (end or subscribed - before) / open
	ServerThreads     int     `json:"server_threads"`

	// ClientCPU is the CPU the workers and this process used in the same
	// phase; OtherLoad is the share of the machine's CPU that everything
	// else used then (another job on the machine makes latency and even
	// CPU per delivery worse: read a run with OtherLoad well above 0 as
	// disturbed).
	ClientCPU time.Duration `json:"client_cpu"`
	OtherLoad float64       `json:"other_load"`

	Open        int            `json:"open"` // subscriber connections open at the end
	Pings       uint64         `json:"pings"`
	ErrorEvents uint64         `json:"error_events"`
	Closes      map[string]int `json:"closes,omitempty"`
	FirstError  string         `json:"first_error,omitempty"`
}

// Idle reports whether the run held connections without publishing.
func (r *Result) Idle() bool { return r.Rate == 0 }

func (s *Scenario) fill() error {
	if s.Rooms <= 0 {
		s.Rooms = 1
	}
	if s.DataSize <= 0 {
		s.DataSize = 128
	}
	if s.ConnsPerWorker <= 0 {
		s.ConnsPerWorker = 9000
	}
	if s.DialConcurrency <= 0 {
		s.DialConcurrency = 64
	}
	if s.Settle <= 0 {
		s.Settle = time.Second
	}
	if s.Drain <= 0 {
		s.Drain = 60 * time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = s.Duration + s.Drain + 3*time.Minute
	}
	if s.Log == nil {
		s.Log = io.Discard
	}
	if s.Transport == "" {
		s.Transport = TransportWebSocket
	}
	switch {
	case s.Subs < 1:
		return errors.New("bench: need at least one subscriber")
	case s.Rate < 0 || s.Duration <= 0:
		return errors.New("bench: rate must not be negative and duration must be positive")
	case s.Rate > 0 && s.Rate*s.Duration.Seconds() < 1:
		return errors.New("bench: rate x duration is less than one publish")
	case s.Rate > 100000:
		return errors.New("bench: rate above 100,000 publishes/s")
	case s.Transport != TransportWebSocket && s.Transport != TransportSSE:
		return fmt.Errorf("bench: transport %q is not %s or %s", s.Transport, TransportWebSocket, TransportSSE)
	case s.Rooms > s.Subs:
		return errors.New("bench: more rooms than subscribers")
	case s.Server == nil && s.URL == "":
		return errors.New("bench: give a server URL or spawn one")
	case s.Server != nil && s.Exe == "":
		return errors.New("bench: spawning a server needs the switchboard binary")
	}
	return nil
}

func (s *Scenario) logf(format string, args ...any) {
	fmt.Fprintf(s.Log, "bench: "+format+"\n", args...)
}

// Run runs the scenario and returns its measurements.
func Run(ctx context.Context, s Scenario) (*Result, error) {
	if err := s.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	res := &Result{Name: s.Name, Transport: s.Transport, Subs: s.Subs, Rooms: s.Rooms, Rate: s.Rate, Duration: s.Duration, ServerPID: s.ServerPID}

	var srv *runningServer
	if s.Server != nil {
		var err error
		if srv, err = startServer(ctx, s.Exe, *s.Server, s.Log); err != nil {
			return nil, err
		}
		defer srv.stop()
		s.URL, res.ServerPID = srv.url, srv.pid
	}
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("bench: server URL %q is not ws://host:port/path", s.URL)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return nil, err
	}
	sample := func() ProcSample {
		if res.ServerPID == 0 {
			return ProcSample{}
		}
		p, err := ReadProc(res.ServerPID)
		if err != nil {
			s.logf("cannot sample the server: %v", err)
		}
		return p
	}

	var pub *publisher
	if s.Rate > 0 {
		if pub, err = dialPublisher(ctx, u); err != nil {
			return nil, err
		}
		defer pub.close()
	}
	time.Sleep(s.Settle / 2)
	before := sample()
	res.RSSBefore = before.RSS

	// Connect.
	nw := (s.Subs + s.ConnsPerWorker - 1) / s.ConnsPerWorker
	res.Workers = nw
	workers := make([]*child, 0, nw)
	defer func() {
		for _, w := range workers {
			w.stop(10 * time.Second)
		}
	}()
	s.logf("%s: connecting %d subscribers with %d worker(s)", s.Name, s.Subs, nw)
	for k := range nw {
		first := k * s.Subs / nw
		cfg := workerConfig{
			URL: s.URL, Conns: (k+1)*s.Subs/nw - first, First: first, Rooms: s.Rooms,
			DialConcurrency: s.DialConcurrency, Timeout: s.Timeout, Transport: s.Transport,
		}
		if s.LocalIPs {
			cfg.LocalIP = "127.0.0." + strconv.Itoa(k+2)
		}
		w, err := startChild(ctx, s.Exe, "worker "+strconv.Itoa(k), roleWorker, cfg.args(), s.Log)
		if err != nil {
			return nil, err
		}
		workers = append(workers, w)
	}
	phaseTimeout := 60*time.Second + time.Duration(s.Subs)*2*time.Millisecond
	var first, last int64
	for _, w := range workers {
		var ev phaseEvent
		if err := w.expect(ctx, "connected", phaseTimeout, &ev); err != nil {
			return nil, err
		}
		res.Connected += ev.OK
		res.ConnectFailed += ev.Failed
		if res.FirstError == "" {
			res.FirstError = ev.FirstError
		}
		if first == 0 || ev.StartNS < first {
			first = ev.StartNS
		}
		last = max(last, ev.EndNS)
	}
	connected := sample()
	res.ConnectSeconds = time.Duration(last - first).Seconds()
	if res.ConnectSeconds > 0 {
		res.ConnectsPerSec = float64(res.Connected) / res.ConnectSeconds
	}
	if res.Connected > 0 && res.ServerPID != 0 {
		res.ConnectCPUPerConnUS = float64(connected.CPU-before.CPU) / float64(time.Microsecond) / float64(res.Connected)
	}
	s.logf("%s: %d connected, %d failed in %.2f s (%.0f/s)", s.Name, res.Connected, res.ConnectFailed, res.ConnectSeconds, res.ConnectsPerSec)

	// Subscribe.
	for _, w := range workers {
		if err := w.send(map[string]any{"cmd": "subscribe", "timeout_ns": phaseTimeout}); err != nil {
			return nil, err
		}
	}
	first, last = 0, 0
	for _, w := range workers {
		var ev phaseEvent
		if err := w.expect(ctx, "subscribed", phaseTimeout+10*time.Second, &ev); err != nil {
			return nil, err
		}
		res.Subscribed += ev.OK
		if res.FirstError == "" {
			res.FirstError = ev.FirstError
		}
		if first == 0 || ev.StartNS < first {
			first = ev.StartNS
		}
		last = max(last, ev.EndNS)
	}
	res.SubscribeSeconds = time.Duration(last - first).Seconds()
	s.logf("%s: %d subscribed in %.2f s", s.Name, res.Subscribed, res.SubscribeSeconds)
	time.Sleep(s.Settle)
	subscribed := sample()
	res.RSSSubscribed = subscribed.RSS

	// Publish, or hold.
	pids := []int{os.Getpid()}
	for _, w := range workers {
		pids = append(pids, w.pid)
	}
	load := startLoadMeter(res.ServerPID, pids)
	expected := make([]uint64, s.Rooms)
	start := time.Now()
	if pub != nil {
		s.logf("%s: publishing %.0f/s for %s", s.Name, s.Rate, s.Duration)
		n, behind, err := pub.run(ctx, s.Rooms, s.Rate, s.Duration, s.DataSize)
		res.Publishes, res.PublisherBehind = n, behind
		if err != nil {
			return nil, err
		}
		for i := range n {
			expected[i%s.Rooms]++
		}
	} else {
		s.logf("%s: holding %d idle connections for %s", s.Name, res.Subscribed, s.Duration)
		select {
		case <-time.After(s.Duration):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, w := range workers {
		if err := w.send(map[string]any{"cmd": "report", "expected": expected, "drain_ns": s.Drain}); err != nil {
			return nil, err
		}
	}
	var firstRecv, lastRecv int64
	for _, w := range workers {
		var r workerReport
		if err := w.expect(ctx, "report", s.Drain+30*time.Second, &r); err != nil {
			return nil, err
		}
		res.Expected += r.Expected
		res.Delivered += r.Delivered
		res.Lost += r.Lost
		res.Undelivered += r.Undelivered
		res.OutOfOrder += r.OutOfOrder
		res.Open += r.Open
		res.Pings += r.Pings
		res.ErrorEvents += r.ErrorEvents
		res.Latency.Merge(r.Latency)
		for code, n := range r.Closes {
			if res.Closes == nil {
				res.Closes = map[string]int{}
			}
			res.Closes[code] += n
		}
		if res.FirstError == "" {
			res.FirstError = r.FirstError
		}
		if r.FirstRecvNS != 0 && (firstRecv == 0 || r.FirstRecvNS < firstRecv) {
			firstRecv = r.FirstRecvNS
		}
		lastRecv = max(lastRecv, r.LastRecvNS)
	}
	end := sample()
	res.ClientCPU, res.OtherLoad = load.stop()
	if srv != nil && s.Server.ProfileSignal {
		srv.requestProfile()
		time.Sleep(2 * time.Second) // the heap profile is written after a GC
	}
	res.RSSEnd, res.ServerThreads = end.RSS, end.Threads
	res.ServerCPU = end.CPU - subscribed.CPU
	if pub != nil {
		res.ErrorEvents += pub.errors.Load()
		if lastRecv > start.UnixNano() {
			res.DeliveredPerSec = float64(res.Delivered) / time.Duration(lastRecv-start.UnixNano()).Seconds()
		}
		if res.Delivered > 0 && res.ServerPID != 0 {
			res.CPUPerDeliveryUS = float64(res.ServerCPU) / float64(time.Microsecond) / float64(res.Delivered)
			if writes := end.Writes - subscribed.Writes; writes > 0 {
				res.WritesPerDelivery = float64(writes) / float64(res.Delivered)
				res.CPUPerWriteUS = float64(res.ServerCPU) / float64(time.Microsecond) / float64(writes)
			}
		}
		if res.Subscribed > 0 {
			res.RSSPerConn = float64(res.RSSSubscribed-res.RSSBefore) / float64(res.Subscribed)
		}
	} else if res.Open > 0 {
		res.RSSPerConn = float64(res.RSSEnd-res.RSSBefore) / float64(res.Open)
	}
	if res.ServerPID == 0 {
		res.RSSPerConn = 0
	}
	res.P50, res.P99 = res.Latency.Quantile(0.50), res.Latency.Quantile(0.99)
	res.P999, res.Max, res.Mean = res.Latency.Quantile(0.999), time.Duration(res.Latency.MaxNS), res.Latency.Mean()
	s.logf("%s: done", s.Name)
	return res, nil
}

// publisher is the one connection that publishes. It uses the project's
// Go client (package client): Send queues a publish without waiting for an
// ack, so the schedule sets the rate and each event's latency starts just
// before the call. (Subscribers use the minimal client in wsclient.go, as a
// worker holds thousands of them.)
type publisher struct {
	c      *client.Client
	errors atomic.Uint64
}

func dialPublisher(ctx context.Context, u *url.URL) (*publisher, error) {
	p := &publisher{}
	p.c = client.New(u.String(), &client.Options{
		OnError: func(error) { p.errors.Add(1) },
	})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.c.Connect(dctx); err != nil {
		return nil, fmt.Errorf("bench: publisher: %w", err)
	}
	return p, nil
}

func (p *publisher) close() { _ = p.c.Close() }

// run publishes rate events per second for d, round robin over rooms, and
// returns how many it sent and how far it fell behind its schedule at
// worst. Each event's data starts with its room sequence number and the
// send time, taken just before the write.
func (p *publisher) run(ctx context.Context, rooms int, rate float64, d time.Duration, size int) (int, time.Duration, error) {
	total := int(rate*d.Seconds() + 0.5)
	interval := time.Duration(float64(time.Second) / rate)
	seq := make([]uint64, rooms)
	var behind time.Duration
	buf := make([]byte, 0, 256+size)
	start := time.Now()
	for i := range total {
		if ctx.Err() != nil {
			return i, behind, ctx.Err()
		}
		target := start.Add(time.Duration(i) * interval)
		if wait := time.Until(target); wait > 0 {
			time.Sleep(wait)
		} else {
			behind = max(behind, -wait)
		}
		room := i % rooms
		seq[room]++
		buf = appendPublish(buf[:0], room, seq[room], time.Now().UnixNano(), size)
		// Send keeps the slice until it is written: give it its own copy.
		if err := p.c.Send(ctx, json.RawMessage(append([]byte(nil), buf...))); err != nil {
			return i, behind, fmt.Errorf("bench: publish: %w", err)
		}
	}
	return total, behind, nil
}

// appendPublish appends a publish of exactly size bytes of data (when size
// leaves room for the fields) to room.
func appendPublish(b []byte, room int, seq uint64, sent int64, size int) []byte {
	b = append(b, `{"type":"message","room":"`...)
	b = append(b, roomName(room)...)
	b = append(b, `","data":`...)
	start := len(b)
	b = append(b, `{"s":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"p":"`...)
	for pad := size - (len(b) - start) - 2; pad > 0; pad-- {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}
