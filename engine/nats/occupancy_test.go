package nats

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

func TestOccupancy(t *testing.T) {
	a, b, _, _ := twoNodes(t, Options{})
	enginetest.CheckOccupancy(t, a, b)
}

func TestOccupancyMemoryStorage(t *testing.T) {
	a, b, _, _ := twoNodes(t, Options{MemoryStorage: true})
	enginetest.CheckOccupancy(t, a, b)
}

// TestOccupancyOfACrashedNode: a node that stops refreshing its entry
// drops out after the presence TTL, so the room can be occupied again; a
// live node's refresh keeps it in.
func TestOccupancyOfACrashedNode(t *testing.T) {
	ttl := time.Second
	live, other, _, _ := twoNodes(t, Options{PresenceTTL: ttl})
	enginetest.CheckOccupancyExpiry(t, live, other, ttl, func(room string) {
		// "crashed" is written into the record directly: no engine refreshes it.
		ctx := context.Background()
		kv, err := other.bucket(ctx, &other.occ, "room occupancy", occBucketConfig(other))
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := json.Marshal(occRecord{Generation: 1, Nodes: map[string]int64{"crashed": time.Now().Add(ttl).UnixMilli()}})
		if _, err := kv.Put(ctx, token(room), rec); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOccupancyCoreOnly: without JetStream there is nowhere to count.
func TestOccupancyCoreOnly(t *testing.T) {
	e := newTestEngine(t, Options{CoreOnly: true})
	startEngine(t, e, enginetest.NewRecorder())
	if _, err := e.Occupy(context.Background(), "occ:core", "n"); err == nil {
		t.Error("Occupy in core-only mode succeeded")
	}
}
