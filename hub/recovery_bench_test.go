package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

// BenchmarkRecover1000 measures what a restarted node's clients cost when
// they all come back at once: 1,000 connections each subscribe with a
// last_event_id 50 events behind and get those 50 replayed, 8 at a time
// in parallel (as 8 read loops would). One op is all 1,000 recoveries;
// ns/op divided by 1,000 is the cost of one.
func BenchmarkRecover1000(b *testing.B) {
	const clients, behind = 1000, 50
	h := newHub(b, Options{})
	ctx := context.Background()
	var mid protocol.StreamPosition
	for i := 1; i <= 100; i++ {
		res, err := h.Publish(ctx, "match:1", "score_update", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), PublishOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if i == 100-behind {
			mid, _ = protocol.ParseEventID(res.EventID)
		}
	}
	frame := []byte(fmt.Sprintf(`{"type":"subscribe","id":"s","room":"match:1","last_event_id":%q}`, mid.EventID()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cs := make([]*Client, clients)
		sinks := make([]*countSink, clients)
		for j := range cs {
			sinks[j] = &countSink{}
			cs[j] = h.Connect(sinks[j], ConnectOptions{UserID: fmt.Sprint("u", j)})
		}
		b.StartTimer()
		var wg sync.WaitGroup
		next := make(chan *Client)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := range next {
					c.HandleMessage(frame)
				}
			}()
		}
		for _, c := range cs {
			next <- c
		}
		close(next)
		wg.Wait()
		b.StopTimer()
		for j, c := range cs {
			// connection_established, subscribed, 50 replayed events (join
			// notices of later joiners come on top).
			if n := sinks[j].n; n < 2+behind {
				b.Fatalf("client %d got %d frames, want at least %d", j, n, 2+behind)
			}
			c.Gone()
		}
		b.StartTimer()
	}
}
