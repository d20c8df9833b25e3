package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/webhook"
)

// TestDrainSendsClosedEvents: a node that drains sends its connections'
// connection.closed events (code 1012) before Serve returns.
func TestDrainSendsClosedEvents(t *testing.T) {
	var mu sync.Mutex
	var got []webhook.Event
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify("drain-secret", r.Header, body, time.Minute, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var b struct{ Events []webhook.Event }
		_ = json.Unmarshal(body, &b)
		mu.Lock()
		got = append(got, b.Events...)
		mu.Unlock()
	}))
	defer rc.Close()
	n := wstest.Start(t, server.Config{NodeID: "d1", Webhook: webhook.Options{URLs: []string{rc.URL}, Secrets: []string{"drain-secret"},
		MaxDelay: 500 * time.Millisecond}})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:drain"})
	c.Expect("subscribed")
	n.Stop() // returns once Serve has
	mu.Lock()
	defer mu.Unlock()
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
		if e.Type == webhook.ConnectionClosed && (e.Code == nil || *e.Code != 1012) {
			t.Errorf("closed event %+v, want code 1012", e)
		}
	}
	want := []string{webhook.ConnectionOpened, webhook.RoomOccupied, webhook.MemberAdded, webhook.MemberRemoved, webhook.RoomVacated, webhook.ConnectionClosed}
	if len(types) != len(want) {
		t.Fatalf("events at drain = %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Errorf("events at drain = %v, want %v", types, want)
			break
		}
	}
}
