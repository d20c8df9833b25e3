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
	ctx := context.Background()
	if ch, err := live.Occupy(ctx, "occ:live", "live"); err != nil || !ch.Changed {
		t.Fatalf("occupy: %+v %v", ch, err)
	}
	// "crashed" is written into the record directly: no engine refreshes it.
	kv, err := other.bucket(ctx, &other.occ, "room occupancy", occBucketConfig(other))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(occRecord{Generation: 1, Nodes: map[string]int64{"crashed": time.Now().Add(ttl).UnixMilli()}})
	if _, err := kv.Put(ctx, token("occ:dead"), rec); err != nil {
		t.Fatal(err)
	}
	if ch, err := other.Occupy(ctx, "occ:dead", "other"); err != nil || ch.Changed {
		t.Errorf("occupy beside the crashed node before it expired: %+v %v, want no change", ch, err)
	}
	if _, err := other.Vacate(ctx, "occ:dead", "other"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * ttl)
	if ch, err := other.Occupy(ctx, "occ:dead", "other"); err != nil || !ch.Changed || ch.Generation != 2 {
		t.Errorf("occupy after the crashed node expired: %+v %v, want a change to generation 2", ch, err)
	}
	if ch, err := other.Occupy(ctx, "occ:live", "other"); err != nil || ch.Changed {
		t.Errorf("occupy beside a live, refreshing node: %+v %v, want no change", ch, err)
	}
}

// TestOccupancyCoreOnly: without JetStream there is nowhere to count.
func TestOccupancyCoreOnly(t *testing.T) {
	e := newTestEngine(t, Options{CoreOnly: true})
	startEngine(t, e, enginetest.NewRecorder())
	if _, err := e.Occupy(context.Background(), "occ:core", "n"); err == nil {
		t.Error("Occupy in core-only mode succeeded")
	}
}
