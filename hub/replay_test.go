package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

// TestReplayFitsTheQueue: missed events that would not fit the outbound
// queue are not replayed (recovered:false, so the client reloads rather
// than loop on slow-consumer closes), and history pages stop early with
// has_more.
func TestReplayFitsTheQueue(t *testing.T) {
	h := newHub(t, Options{MaxReplayBytes: 10_000, MaxReplayMessages: 50})
	ctx := context.Background()
	big := json.RawMessage(`"` + strings.Repeat("x", 3000) + `"`)
	first, err := h.Publish(ctx, "feed:1", "big", big, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 9; i++ {
		if _, err := h.Publish(ctx, "feed:1", "big", big, PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, s := connect(t, h, "u")
	send(c, `{"type":"subscribe","id":"s","room":"feed:1","last_event_id":%q}`, first.EventID)
	sub := decodeData[protocol.SubscribedData](t, s.one(t, "subscribed"))
	if sub.Recovered == nil || *sub.Recovered || sub.Replayed != 0 || s.count(t, "big") != 0 {
		t.Fatalf("9 events of 3 KB with a 10 KB replay cap: recovered=%v replayed=%d frames=%d", sub.Recovered, sub.Replayed, s.count(t, "big"))
	}
	if len(s.closeList()) != 0 {
		t.Fatal("connection closed")
	}

	page, err := h.History(ctx, "feed:1", protocol.HistoryRequest{Since: first.EventID})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 3 || !page.HasMore || !page.Complete {
		t.Fatalf("page of 9 x 3 KB events under a 10 KB cap: %d events, has_more %v", len(page.Events), page.HasMore)
	}
	// Paging on from the last event gets the rest.
	got := len(page.Events)
	for page.HasMore && got < 20 {
		var last struct{ ID string }
		json.Unmarshal(page.Events[len(page.Events)-1], &last)
		if page, err = h.History(ctx, "feed:1", protocol.HistoryRequest{Since: last.ID}); err != nil {
			t.Fatal(err)
		}
		got += len(page.Events)
	}
	if got != 9 {
		t.Errorf("paged %d events, want 9", got)
	}

	// Under the cap, recovery replays everything.
	c2, s2 := connect(t, h, "v")
	mid := fmt.Sprintf("%s-%d", strings.Split(first.EventID, "-")[0], 8)
	send(c2, `{"type":"subscribe","id":"s","room":"feed:1","last_event_id":%q}`, mid)
	sub = decodeData[protocol.SubscribedData](t, s2.one(t, "subscribed"))
	if sub.Recovered == nil || !*sub.Recovered || sub.Replayed != 2 || s2.count(t, "big") != 2 {
		t.Fatalf("2 missed events: recovered=%v replayed=%d", sub.Recovered, sub.Replayed)
	}
}
