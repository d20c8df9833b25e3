// Package metrics exposes a node's counters to Prometheus. The collector
// reads hub.Stats when scraped, so the hot path pays nothing for metrics
// beyond the hub's own atomic counters. No label carries a room or a
// connection: cardinality stays fixed.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rt/switchboard/hub"
)

const ns = "switchboard"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
}

var (
	dConnections      = desc("connections", "Open WebSocket connections.")
	dConnectionsTotal = desc("connections_total", "Connections accepted since start.")
	dHandshakes       = desc("handshakes_total", "WebSocket handshakes by HTTP status (101 = accepted).", "status")
	dCloses           = desc("closes_total", "Finished connections by close code (1006 = ended without a close frame).", "code")
	dRooms            = desc("rooms", "Rooms with members on this node.")
	dMessagesIn       = desc("messages_in_total", "Frames received from clients.")
	dMessagesOut      = desc("messages_out_total", "Messages queued to clients (one per recipient).")
	dBytesIn          = desc("bytes_in_total", "Bytes read from client connections.")
	dBytesOut         = desc("bytes_out_total", "Bytes written to client connections.")
	dWrites           = desc("writes_total", "Write system calls to client connections; messages_out_total / writes_total is how many messages went out per call.")
	dPublications     = desc("publications_total", "Events published to rooms.")
	dFanout           = desc("fanout_duration_seconds", "Time one publication's fan-out loop takes on this node.")
	dQueueDrops       = desc("queue_drops_total", "Messages dropped by the drop_oldest slow-consumer policy.")
	dSlowConsumers    = desc("slow_consumer_disconnects_total", "Connections closed because their outbound queue overflowed.")
	dEngineErrors     = desc("engine_errors_total", "Failed engine operations.")
	dClientErrors     = desc("client_errors_total", "Error events sent to clients for bad requests.")
	dAuthFailures     = desc("auth_failures_total", "Rejected tokens in auth and refresh frames.")
	dForbidden        = desc("forbidden_total", "Requests refused by room permissions.")
	dThrottled        = desc("throttled_total", "Messages dropped by per-connection rate limits.")
	dRecoveries       = desc("recoveries_total", "Subscriptions that asked to recover missed events, by result.", "result")
	dRPC              = desc("rpc_calls_total", "Socket RPC calls by outcome.", "outcome")
)

// Collector is a prometheus.Collector for one hub.
type Collector struct{ h *hub.Hub }

// NewCollector returns a collector for h.
func NewCollector(h *hub.Hub) *Collector { return &Collector{h} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dConnections, dConnectionsTotal, dHandshakes, dCloses, dRooms, dMessagesIn,
		dMessagesOut, dBytesIn, dBytesOut, dWrites, dPublications, dFanout, dQueueDrops, dSlowConsumers, dEngineErrors,
		dClientErrors, dAuthFailures, dForbidden, dThrottled, dRecoveries, dRPC} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(dConnections, float64(s.Connections))
	counter(dConnectionsTotal, s.ConnectionsTotal)
	for status, n := range s.Handshakes {
		counter(dHandshakes, n, status)
	}
	for code, n := range s.Closes {
		counter(dCloses, n, code)
	}
	gauge(dRooms, float64(s.Rooms))
	counter(dMessagesIn, s.MessagesIn)
	counter(dMessagesOut, s.MessagesOut)
	counter(dBytesIn, s.BytesIn)
	counter(dBytesOut, s.BytesOut)
	counter(dWrites, s.Writes)
	counter(dPublications, s.Publications)
	counter(dQueueDrops, s.QueueDrops)
	counter(dSlowConsumers, s.SlowConsumerDisconnects)
	counter(dEngineErrors, s.EngineErrors)
	counter(dClientErrors, s.ClientErrors)
	counter(dAuthFailures, s.AuthFailures)
	counter(dForbidden, s.Forbidden)
	counter(dThrottled, s.Throttled)
	counter(dRecoveries, s.Recovered, "recovered")
	counter(dRecoveries, s.RecoveryFailed, "not_recovered")
	for outcome, n := range s.RPCCalls {
		counter(dRPC, n, outcome)
	}
	buckets, count, sum := c.h.FanoutHistogram()
	ch <- prometheus.MustNewConstHistogram(dFanout, count, sum, buckets)
}

// Handler serves the hub's metrics with the Go runtime and process
// collectors, and extra ones (such as the webhook sender's), in the
// Prometheus text format.
func Handler(h *hub.Hub, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(h),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
