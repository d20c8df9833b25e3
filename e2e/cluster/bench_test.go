package cluster_test

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The cluster benchmarks run real nodes like the tests; their figures, and
// the commands that produced them, are in docs/benchmarks.md ("Cluster").
// Each sub-benchmark reuses one set of nodes across the runs the testing
// package makes of it, with a fresh room per run.

// benchRoom numbers rooms across benchmark runs.
var benchRoom atomic.Int64

func nextRoom(prefix string) string {
	return prefix + ":" + strconv.FormatInt(benchRoom.Add(1), 10)
}

// receiver is a bench subscriber: it reads every frame and hands the
// arrival time of each application event to got (frames are matched by
// their type, not decoded, to keep the reader cheap).
type receiver struct {
	ws  *websocket.Conn
	got chan time.Time
	n   atomic.Int64 // events read
}

var latType = []byte(`"type":"lat"`)

func newReceiver(tb testing.TB, url, room string, buf int) *receiver {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() { ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"s","room":"`+room+`"}`)); err != nil {
		tb.Fatal(err)
	}
	for { // connection_established, then subscribed
		_, b, err := ws.ReadMessage()
		if err != nil {
			tb.Fatalf("subscribe on %s: %v", url, err)
		}
		if bytes.Contains(b, []byte(`"type":"subscribed"`)) {
			break
		}
		if bytes.Contains(b, []byte(`"type":"error"`)) {
			tb.Fatalf("subscribe on %s: %s", url, b)
		}
	}
	r := &receiver{ws: ws, got: make(chan time.Time, buf)}
	go func() {
		defer close(r.got)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if bytes.Contains(b, latType) {
				r.n.Add(1)
				r.got <- time.Now()
			}
		}
	}()
	return r
}

// sender publishes over its own connection without ids (no acks).
type sender struct{ ws *websocket.Conn }

func newSender(tb testing.TB, url string) *sender {
	tb.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() { ws.Close() })
	go func() { // drain what the server sends (connection_established)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return &sender{ws: ws}
}

func (s *sender) publish(room string, i int) error {
	return s.ws.WriteMessage(websocket.TextMessage,
		[]byte(`{"type":"lat","room":"`+room+`","data":{"i":`+strconv.Itoa(i)+`,"pad":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}`))
}

// percentile returns the p-th percentile (0..100) of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p / 100)
	return d[i]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkDeliveryLatency: one event at a time, the time from writing the
// publish to reading the event, for a member on the publisher's node
// ("same") and one on another node ("cross"), with the Redis engine; and
// the same on one node with the memory engine, the baseline the cluster
// adds to. Every event of the Redis engine goes through Redis, even to
// members of the publisher's own node.
func BenchmarkDeliveryLatency(b *testing.B) {
	memory := startNode(b, "mem", nodeConfig{})
	cluster := startCluster(b, 3)
	b.Run("engine=memory/nodes=1", func(b *testing.B) {
		latencyRun(b, memory, nil)
	})
	b.Run("engine=redis/nodes=3", func(b *testing.B) {
		latencyRun(b, cluster[0], cluster[1])
	})
}

func latencyRun(b *testing.B, home, other *node) {
	room := nextRoom("lat")
	same := newReceiver(b, home.wsURL(), room, b.N+1)
	var cross *receiver
	if other != nil {
		cross = newReceiver(b, other.wsURL(), room, b.N+1)
	}
	pub := newSender(b, home.wsURL())
	sameLat := make([]time.Duration, 0, b.N)
	crossLat := make([]time.Duration, 0, b.N)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	wait := func(r *receiver, t0 time.Time) time.Duration {
		select {
		case at, ok := <-r.got:
			if !ok {
				b.Fatal("a member's connection ended")
			}
			return at.Sub(t0)
		case <-timeout.C:
			b.Fatal("an event did not arrive within a minute")
		}
		return 0
	}
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := pub.publish(room, i); err != nil {
			b.Fatal(err)
		}
		sameLat = append(sameLat, wait(same, t0))
		if cross != nil {
			crossLat = append(crossLat, wait(cross, t0))
		}
	}
	b.StopTimer()
	slices.Sort(sameLat)
	b.ReportMetric(micros(percentile(sameLat, 50)), "p50-same-µs")
	b.ReportMetric(micros(percentile(sameLat, 99)), "p99-same-µs")
	if cross != nil {
		slices.Sort(crossLat)
		b.ReportMetric(micros(percentile(crossLat, 50)), "p50-cross-µs")
		b.ReportMetric(micros(percentile(crossLat, 99)), "p99-cross-µs")
	}
}

// BenchmarkThroughput: publishers write events as fast as the members keep
// up (no acks to wait for; a publisher pauses while the slowest member is
// more than throughputWindow events behind, since a member whose queue of
// 1,024 overflows is disconnected as a slow consumer), and one member per
// node receives every event. events/s is events published and delivered to
// every member per second of the run. With the Redis engine every event is
// one Lua script (append to the history, PUBLISH) and one pub/sub message
// per node.
func BenchmarkThroughput(b *testing.B) {
	memory := startNode(b, "mem", nodeConfig{})
	cluster := startCluster(b, 3)
	b.Run("engine=memory/nodes=1/publishers=1", func(b *testing.B) {
		throughputRun(b, []*node{memory}, 1)
	})
	b.Run("engine=redis/nodes=3/publishers=1", func(b *testing.B) {
		throughputRun(b, cluster, 1)
	})
	b.Run("engine=redis/nodes=3/publishers=6", func(b *testing.B) {
		throughputRun(b, cluster, 6)
	})
	b.Run("engine=redis/nodes=3/publishers=24", func(b *testing.B) {
		throughputRun(b, cluster, 24)
	})
}

// throughputWindow is how far publishers may run ahead of the slowest
// member: a quarter of a connection's outbound queue.
const throughputWindow = 256

func throughputRun(b *testing.B, nodes []*node, pubs int) {
	room := nextRoom("tput")
	var members []*receiver
	for _, n := range nodes {
		members = append(members, newReceiver(b, n.wsURL(), room, b.N+1))
	}
	senders := make([]*sender, pubs)
	for i := range senders {
		senders[i] = newSender(b, nodes[i%len(nodes)].wsURL())
	}
	var published atomic.Int64
	slowest := func() int64 {
		n := members[0].n.Load()
		for _, m := range members[1:] {
			n = min(n, m.n.Load())
		}
		return n
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for p, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < b.N; i += pubs {
				for published.Load()-slowest() > throughputWindow {
					time.Sleep(50 * time.Microsecond)
				}
				published.Add(1)
				if err := s.publish(room, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var last time.Time
	deadline := time.After(2 * time.Minute)
	for _, m := range members {
		for range b.N {
			select {
			case at, ok := <-m.got:
				if !ok {
					b.Fatal("a member's connection ended (a slow consumer?)")
				}
				if at.After(last) {
					last = at
				}
			case <-deadline:
				b.Fatal("events did not all arrive within 2 minutes")
			}
		}
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/last.Sub(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N*len(members))/last.Sub(start).Seconds(), "deliveries/s")
}
