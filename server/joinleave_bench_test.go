package server_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// BenchmarkJoinLeaveChurn measures what join/leave churn costs the other
// members of a room: five connections subscribe and unsubscribe as fast as
// their rate limit (200 messages/s) allows, while a bystander in the room
// publishes and times each event's way back to it (publish -> receive, one
// op). Twenty more members just read. "unlimited" announces every join and
// leave at once (the behaviour before announcements were limited);
// "limited" is the default. Reported: the bystander's p50/p99 latency and
// the join/leave frames it received per second.
//
//	go test -run '^$' -bench JoinLeaveChurn -benchtime 300x ./server/
func BenchmarkJoinLeaveChurn(b *testing.B) {
	for _, tc := range []struct {
		name string
		rate int
	}{{"unlimited", -1}, {"limited", 0}} {
		b.Run(tc.name, func(b *testing.B) { benchChurn(b, tc.rate) })
	}
}

func benchChurn(b *testing.B, rate int) {
	const (
		room     = "chat:churn"
		churners = 5
		members  = 20
		limit    = 200
	)
	n := wstest.Start(b, server.Config{Hub: hub.Options{JoinLeaveRate: rate, MaxMessagesPerSecond: limit}, NoDemo: true, NoAdmin: true})
	dial := func() *wstest.Conn {
		c := n.MustDial(b, "", nil)
		c.Expect("connection_established")
		return c
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for i := 0; i < members; i++ {
		c := dial()
		c.Send(map[string]any{"type": "subscribe", "id": "s", "room": room})
		wg.Add(1)
		go func() { // read everything, so the member is never a slow consumer
			defer wg.Done()
			for !stop.Load() {
				c.WS.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, _, err := c.WS.ReadMessage(); err != nil {
					return // closed, or quiet for 200 ms (gorilla cannot read on after a timeout)
				}
			}
		}()
	}
	by := dial()
	by.Send(map[string]any{"type": "subscribe", "id": "s", "room": room})
	by.Expect("subscribed")
	sub := []byte(`{"type":"subscribe","room":"` + room + `"}`)
	unsub := []byte(`{"type":"unsubscribe","room":"` + room + `"}`)
	for i := 0; i < churners; i++ {
		c := dial()
		wg.Add(2)
		go func() { // the answers are not needed, but must be read
			defer wg.Done()
			for !stop.Load() {
				if _, _, err := c.WS.ReadMessage(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer c.WS.Close()
			step := time.Second / (limit * 95 / 100) // just under the limit
			start := time.Now()
			for k := 0; !stop.Load() && k < 10_000_000; k++ {
				time.Sleep(time.Until(start.Add(time.Duration(k) * step)))
				f := sub
				if k%2 == 1 {
					f = unsub
				}
				if c.WS.WriteMessage(websocket.TextMessage, f) != nil {
					return
				}
			}
		}()
	}
	time.Sleep(time.Second) // let the churn reach its pace

	lat := make([]time.Duration, 0, b.N)
	presence := 0
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sent := time.Now()
		id := fmt.Sprint(i)
		by.Send(map[string]any{"type": "message", "room": room, "data": id})
		for k := 0; ; k++ {
			if k > 1_000_000 {
				b.Fatal("event did not come back")
			}
			by.WS.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, raw, err := by.WS.ReadMessage()
			if err != nil {
				b.Fatalf("bystander: %v", err)
			}
			var m struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(raw, &m)
			if m.Type == "user_joined" || m.Type == "user_left" {
				presence++
				continue
			}
			if m.Type == "message" && string(m.Data) == `"`+id+`"` {
				lat = append(lat, time.Since(sent))
				break
			}
		}
		time.Sleep(time.Until(sent.Add(20 * time.Millisecond))) // 50 publishes/s
	}
	b.StopTimer()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(float64(presence)/elapsed.Seconds(), "joinleave-frames/s")
	b.ReportMetric(0, "ns/op") // paced: time per op is the pace, not a cost
}
