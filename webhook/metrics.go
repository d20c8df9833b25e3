package webhook

import "github.com/prometheus/client_golang/prometheus"

var (
	dSent     = prometheus.NewDesc("switchboard_webhook_events_sent_total", "Webhook events delivered (answered 2xx).", nil, nil)
	dFailed   = prometheus.NewDesc("switchboard_webhook_requests_failed_total", "Webhook delivery attempts that failed (non-2xx, error, timeout) and were retried or given up.", nil, nil)
	dDropped  = prometheus.NewDesc("switchboard_webhook_events_dropped_total", "Webhook events given up: queue full, retries exhausted or shutdown.", nil, nil)
	dRequests = prometheus.NewDesc("switchboard_webhook_requests_total", "Webhook delivery attempts.", nil, nil)
	dQueued   = prometheus.NewDesc("switchboard_webhook_queue_depth", "Webhook events waiting to be sent, over all URLs.", nil, nil)
)

// collector reads a Sender's counters when scraped.
type collector struct{ s *Sender }

// Collector returns a Prometheus collector of the Sender's counters.
func (s *Sender) Collector() prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dSent, dFailed, dDropped, dRequests, dQueued} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(dSent, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(dFailed, prometheus.CounterValue, float64(st.Failed))
	ch <- prometheus.MustNewConstMetric(dDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(dRequests, prometheus.CounterValue, float64(st.Requests))
	ch <- prometheus.MustNewConstMetric(dQueued, prometheus.GaugeValue, float64(st.Queued))
}
