package nats

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// benchParallelism * GOMAXPROCS publishers run at once.
const benchParallelism = 32

const benchRooms = 16

var benchData = json.RawMessage(`{"text":"hello, this is a chat message of typical size","n":12345}`)

// countingHandler counts deliveries.
type countingHandler struct{ n atomic.Int64 }

func (h *countingHandler) HandlePublication(string, *engine.Publication) { h.n.Add(1) }
func (h *countingHandler) HandleControl([]byte)                          {}
func (h *countingHandler) HandleGap(string, engine.Gap)                  {}

// BenchmarkPublish measures events/s: with JetStream one conditional
// append per event (plus a reread when another publisher got there first,
// which many publishers per room make frequent), in core-only mode one
// core NATS message.
func BenchmarkPublish(b *testing.B) {
	history := engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}
	cases := []struct {
		name      string
		core      bool
		opts      engine.PublishOptions
		idem      bool
		subscribe bool // this node subscribed: wait until all are delivered back
	}{
		{"jetstream/history", false, engine.PublishOptions{History: history}, false, false},
		{"jetstream/history+idempotency", false, engine.PublishOptions{History: history}, true, false},
		{"jetstream/history+delivered", false, engine.PublishOptions{History: history}, false, true},
		{"core/delivered", true, engine.PublishOptions{}, false, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			e := newTestEngine(b, Options{CoreOnly: tc.core})
			h := &countingHandler{}
			startEngine(b, e, h)
			ctx := context.Background()
			rooms := make([]string, benchRooms)
			for i := range rooms {
				rooms[i] = "bench:" + strconv.Itoa(i)
				if tc.subscribe {
					mustNoErr(b, e.Subscribe(ctx, rooms[i]), "subscribe")
				}
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					opts := tc.opts
					if tc.idem {
						opts.IdempotencyKey = "k" + strconv.FormatUint(n, 10)
					}
					pub := &engine.Publication{Type: "message", Data: benchData, UserID: "user-42", ClientID: "conn-abcdef"}
					if _, err := e.Publish(ctx, rooms[n%benchRooms], pub, opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if tc.subscribe {
				deadline := time.Now().Add(time.Minute)
				for h.n.Load() < int64(b.N) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if got := h.n.Load(); got != int64(b.N) {
					b.Fatalf("delivered %d of %d", got, b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkHistoryRead measures History: the recovery read (the events
// after a position), the read every subscribe does (Limit 1, for the
// stream's top), and an up-to-date client's check.
func BenchmarkHistoryRead(b *testing.B) {
	e := newTestEngine(b, Options{})
	startEngine(b, e, &countingHandler{})
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}
	var last engine.PublishResult
	for i := 0; i < 100; i++ {
		var err error
		last, err = e.Publish(ctx, "hist", &engine.Publication{Type: "message", Data: benchData, UserID: "user-42"}, engine.PublishOptions{History: policy})
		mustNoErr(b, err, "publish")
	}
	cases := []struct {
		name string
		q    engine.HistoryQuery
		want int
	}{
		{"since-50", engine.HistoryQuery{Since: protocol.StreamPosition{Offset: 50, Epoch: last.Position.Epoch}}, 50},
		{"latest-limit-1", engine.HistoryQuery{Limit: 1}, 1},
		{"up-to-date", engine.HistoryQuery{Since: last.Position}, 0},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := e.History(ctx, "hist", tc.q, policy)
					if err != nil {
						b.Error(err)
						return
					}
					if len(res.Publications) != tc.want || !res.Complete {
						b.Errorf("got %d events (complete %v), want %d", len(res.Publications), res.Complete, tc.want)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
