package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// counters are the hub's running totals. Fan-out adds once per publication,
// not once per recipient, so the counters are not a contention point.
type counters struct {
	connections      atomic.Int64
	connectionsTotal atomic.Uint64
	rooms            atomic.Int64
	messagesIn       atomic.Uint64
	messagesOut      atomic.Uint64
	bytesIn          atomic.Uint64
	bytesOut         atomic.Uint64
	writes           atomic.Uint64
	publications     atomic.Uint64
	clientErrors     atomic.Uint64
	engineErrors     atomic.Uint64
	queueDrops       atomic.Uint64
	slowConsumers    atomic.Uint64
	recovered        atomic.Uint64
	recoveryFailed   atomic.Uint64
	fanout           histogram
	authFailures     atomic.Uint64
	forbidden        atomic.Uint64
	throttled        atomic.Uint64

	closesMu   sync.Mutex
	closes     map[protocol.CloseCode]uint64
	handshakes map[int]uint64    // by HTTP status (101 for accepted)
	rpcCalls   map[string]uint64 // by outcome
}

// rpc counts an RPC call by outcome: ok, error, not_found, timeout,
// backend_failure, rejected.
func (s *counters) rpc(outcome string) {
	s.closesMu.Lock()
	if s.rpcCalls == nil {
		s.rpcCalls = make(map[string]uint64)
	}
	s.rpcCalls[outcome]++
	s.closesMu.Unlock()
}

// Stats is a snapshot of the hub's counters on this node.
type Stats struct {
	Node                    string            `json:"node"`
	Connections             int64             `json:"connections"`
	ConnectionsTotal        uint64            `json:"connections_total"`
	Rooms                   int64             `json:"rooms"`
	MessagesIn              uint64            `json:"messages_in"`
	MessagesOut             uint64            `json:"messages_out"`
	BytesIn                 uint64            `json:"bytes_in"`
	BytesOut                uint64            `json:"bytes_out"`
	Writes                  uint64            `json:"writes"`
	Publications            uint64            `json:"publications"`
	ClientErrors            uint64            `json:"client_errors"`
	EngineErrors            uint64            `json:"engine_errors"`
	QueueDrops              uint64            `json:"queue_drops"`
	SlowConsumerDisconnects uint64            `json:"slow_consumer_disconnects"`
	Recovered               uint64            `json:"recovered"`
	RecoveryFailed          uint64            `json:"recovery_failed"`
	AuthFailures            uint64            `json:"auth_failures"`
	Forbidden               uint64            `json:"forbidden"`
	Throttled               uint64            `json:"throttled"`
	Closes                  map[string]uint64 `json:"closes"`     // by close code
	Handshakes              map[string]uint64 `json:"handshakes"` // by HTTP status, 101 = accepted
	RPCCalls                map[string]uint64 `json:"rpc_calls"`  // by outcome
}

// Stats returns a snapshot of this node's counters.
func (h *Hub) Stats() Stats {
	s := &h.stats
	out := Stats{
		Node:                    h.opts.NodeID,
		Connections:             s.connections.Load(),
		ConnectionsTotal:        s.connectionsTotal.Load(),
		Rooms:                   s.rooms.Load(),
		MessagesIn:              s.messagesIn.Load(),
		MessagesOut:             s.messagesOut.Load(),
		BytesIn:                 s.bytesIn.Load(),
		BytesOut:                s.bytesOut.Load(),
		Writes:                  s.writes.Load(),
		Publications:            s.publications.Load(),
		ClientErrors:            s.clientErrors.Load(),
		EngineErrors:            s.engineErrors.Load(),
		QueueDrops:              s.queueDrops.Load(),
		SlowConsumerDisconnects: s.slowConsumers.Load(),
		Recovered:               s.recovered.Load(),
		RecoveryFailed:          s.recoveryFailed.Load(),
		AuthFailures:            s.authFailures.Load(),
		Forbidden:               s.forbidden.Load(),
		Throttled:               s.throttled.Load(),
		Closes:                  map[string]uint64{},
		Handshakes:              map[string]uint64{},
		RPCCalls:                map[string]uint64{},
	}
	s.closesMu.Lock()
	for code, n := range s.closes {
		out.Closes[itoa(int(code))] = n
	}
	for status, n := range s.handshakes {
		out.Handshakes[itoa(status)] = n
	}
	for outcome, n := range s.rpcCalls {
		out.RPCCalls[outcome] = n
	}
	s.closesMu.Unlock()
	return out
}

// Meter is how a transport reports what only it sees. All methods are
// safe for concurrent use.
type Meter struct{ h *Hub }

// Meter returns the hub's meter for transports.
func (h *Hub) Meter() Meter { return Meter{h} }

// BytesIn adds n bytes read from clients.
func (m Meter) BytesIn(n int) { m.h.stats.bytesIn.Add(uint64(n)) }

// Written adds n bytes written to clients in the given number of write
// system calls.
func (m Meter) Written(n, calls int) {
	m.h.stats.bytesOut.Add(uint64(n))
	m.h.stats.writes.Add(uint64(calls))
}

// QueueDrop counts n messages dropped by the drop-oldest policy.
func (m Meter) QueueDrop(n int) { m.h.stats.queueDrops.Add(uint64(n)) }

// SlowConsumer counts a slow-consumer disconnect.
func (m Meter) SlowConsumer() { m.h.stats.slowConsumers.Add(1) }

// Closed counts a finished connection by the close code that ended it
// (1006 when the peer vanished without a close frame).
func (m Meter) Closed(code protocol.CloseCode) {
	s := &m.h.stats
	s.closesMu.Lock()
	if s.closes == nil {
		s.closes = make(map[protocol.CloseCode]uint64)
	}
	s.closes[code]++
	s.closesMu.Unlock()
}

// Handshake counts a WebSocket handshake by the HTTP status it got.
func (m Meter) Handshake(status int) {
	s := &m.h.stats
	s.closesMu.Lock()
	if s.handshakes == nil {
		s.handshakes = make(map[int]uint64)
	}
	s.handshakes[status]++
	s.closesMu.Unlock()
}

// fanoutBuckets are the upper bounds, in seconds, of the fan-out latency
// histogram: how long one publication's fan-out loop takes on this node,
// from encoding to having queued it for every local recipient.
var fanoutBuckets = [...]float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5}

// histogram is a fixed-bucket latency histogram with atomic counters, so
// observing costs one add per publication and no lock.
type histogram struct {
	counts [len(fanoutBuckets) + 1]atomic.Uint64 // last: above every bound
	sumNs  atomic.Uint64
}

func (hg *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(fanoutBuckets) && s > fanoutBuckets[i] {
		i++
	}
	hg.counts[i].Add(1)
	hg.sumNs.Add(uint64(d.Nanoseconds()))
}

// FanoutHistogram returns the fan-out latency histogram: cumulative counts
// per bucket of fanoutBuckets, the total count and the sum in seconds.
func (h *Hub) FanoutHistogram() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(fanoutBuckets))
	var cum uint64
	for i, ub := range fanoutBuckets {
		cum += h.stats.fanout.counts[i].Load()
		buckets[ub] = cum
	}
	count = cum + h.stats.fanout.counts[len(fanoutBuckets)].Load()
	return buckets, count, float64(h.stats.fanout.sumNs.Load()) / 1e9
}
