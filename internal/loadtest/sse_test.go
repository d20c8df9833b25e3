package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// TestWorkerSSE runs a worker's SSE subscribers against a real server:
// they connect, count their `subscribed`, and account for the bench
// publications they receive over GET /sse.
func TestWorkerSSE(t *testing.T) {
	n := wstest.Start(t, server.Config{NoDemo: true})
	ctx := context.Background()
	w := &worker{cfg: workerConfig{URL: n.URL(), Conns: 4, Rooms: 2, DialConcurrency: 2, Timeout: time.Minute, Transport: TransportSSE}, host: n.Addr}
	defer w.closeAll()
	if ev := w.connect(ctx); ev.OK != 4 || ev.Failed != 0 {
		t.Fatalf("connect: %+v", ev)
	}
	if ev := w.subscribe(ctx, 10*time.Second); ev.OK != 4 {
		t.Fatalf("subscribe: %+v", ev)
	}
	for seq := uint64(1); seq <= 6; seq++ {
		room := int(seq) % 2
		b := appendPublish(nil, room, seq/2+seq%2, time.Now().UnixNano(), 128)
		i := bytes.Index(b, []byte(`"data":`))
		data := b[i+len(`"data":`) : len(b)-1]
		if _, err := n.Srv.Hub.Publish(ctx, roomName(room), "message", json.RawMessage(data), hub.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := w.report(ctx, []uint64{3, 3}, 10*time.Second)
	if r.Delivered != 12 || r.Expected != 12 || r.Lost != 0 || r.Undelivered != 0 || r.OutOfOrder != 0 || r.Open != 4 {
		t.Errorf("report %+v, want 12 of 12 delivered on 4 open streams", r)
	}
	if r.ErrorEvents != 0 || r.FirstError != "" {
		t.Errorf("errors: %d, %q", r.ErrorEvents, r.FirstError)
	}
}
