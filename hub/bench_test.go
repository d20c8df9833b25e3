package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// countSink only counts frames, so a benchmark measures the hub's own
// per-recipient cost. One room is published from one goroutine at a time
// (the engine serializes a room's deliveries), so the count needs no lock.
type countSink struct{ n int }

func (s *countSink) Send(*protocol.Frame) bool { s.n++; return true }
func (s *countSink) Close(protocol.Disconnect) {}

func BenchmarkFanout(b *testing.B) {
	for _, members := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			h := newHub(b, Options{NoJoinLeave: true, NoPresence: true})
			sinks := make([]*countSink, members)
			sub := []byte(`{"type":"subscribe","room":"chat:bench"}`)
			for i := range sinks {
				sinks[i] = &countSink{}
				c := h.Connect(sinks[i], ConnectOptions{UserID: fmt.Sprintf("u%d", i), Heartbeat: 25 * time.Second})
				c.HandleMessage(sub)
			}
			if h.RoomSize("chat:bench") != members {
				b.Fatalf("room has %d members", h.RoomSize("chat:bench"))
			}
			data := json.RawMessage(`{"text":"hello, world"}`)
			ctx := context.Background()
			before := sinks[0].n
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := h.Publish(ctx, "chat:bench", "message", data, PublishOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := sinks[members-1].n - before; got != b.N {
				b.Fatalf("last member got %d frames, want %d", got, b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(members), "ns/recipient")
		})
	}
}

func BenchmarkHandleMessagePublish(b *testing.B) {
	for _, tc := range []struct{ name, frame string }{
		{"no-id", `{"type":"message","room":"chat:bench","data":{"text":"hello, world"}}`},
		{"with-id", ""}, // a fresh id per message: ack + idempotency key
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHub(b, Options{NoJoinLeave: true, NoPresence: true})
			sender := h.Connect(&countSink{}, ConnectOptions{UserID: "sender"})
			other := h.Connect(&countSink{}, ConnectOptions{UserID: "other"})
			sub := []byte(`{"type":"subscribe","room":"chat:bench"}`)
			sender.HandleMessage(sub)
			other.HandleMessage(sub)
			// HandleMessage does not keep the frame, so one buffer serves.
			buf := []byte(tc.frame)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if tc.frame == "" {
					buf = append(buf[:0], `{"type":"message","room":"chat:bench","id":"m-`...)
					buf = strconv.AppendInt(buf, int64(i), 10)
					buf = append(buf, `","data":{"text":"hello, world"}}`...)
				}
				sender.HandleMessage(buf)
				i++
			}
		})
	}
}
