package redis

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

// benchParallelism * GOMAXPROCS publishers run at once: enough in flight
// for rueidis to pipeline many scripts per round trip.
const benchParallelism = 32

const benchRooms = 16

var benchData = json.RawMessage(`{"text":"hello, this is a chat message of typical size","n":12345}`)

// countingHandler counts deliveries.
type countingHandler struct{ n atomic.Int64 }

func (h *countingHandler) HandlePublication(string, *engine.Publication) { h.n.Add(1) }
func (h *countingHandler) HandleControl([]byte)                          {}
func (h *countingHandler) HandleGap(string, engine.Gap)                  {}

// BenchmarkPublish measures events/s through Redis: one Lua script (offset,
// history append, PUBLISH) per event, from many goroutines at once.
func BenchmarkPublish(b *testing.B) {
	cases := []struct {
		name      string
		opts      engine.PublishOptions
		idem      bool
		subscribe bool // this node subscribed: wait until all are delivered back
	}{
		{"history", engine.PublishOptions{History: engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}}, false, false},
		{"no-history", engine.PublishOptions{}, false, false},
		{"history+idempotency", engine.PublishOptions{History: engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}}, true, false},
		{"history+delivered", engine.PublishOptions{History: engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}}, false, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			e := newTestEngine(b, Options{})
			h := &countingHandler{}
			startEngine(b, e, h)
			ctx := context.Background()
			rooms := make([]string, benchRooms)
			for i := range rooms {
				rooms[i] = "bench:" + strconv.Itoa(i)
				if tc.subscribe {
					if err := e.Subscribe(ctx, rooms[i]); err != nil {
						b.Fatal(err)
					}
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
// after a position) and the read every subscribe does (Limit 1, for the
// stream's top).
func BenchmarkHistoryRead(b *testing.B) {
	e := newTestEngine(b, Options{})
	startEngine(b, e, &countingHandler{})
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}
	var last engine.PublishResult
	for i := 0; i < 100; i++ {
		var err error
		last, err = e.Publish(ctx, "hist", &engine.Publication{Type: "message", Data: benchData, UserID: "user-42"}, engine.PublishOptions{History: policy})
		if err != nil {
			b.Fatal(err)
		}
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
