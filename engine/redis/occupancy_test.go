package redis

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

// startPair starts two engines on one fresh key prefix: two nodes.
func startPair(t *testing.T, opts Options) (*Engine, *Engine) {
	t.Helper()
	opts.KeyPrefix = testPrefix()
	a := newTestEngine(t, opts)
	startEngine(t, a, enginetest.NewRecorder())
	b := newTestEngine(t, opts)
	startEngine(t, b, enginetest.NewRecorder())
	return a, b
}

func TestOccupancy(t *testing.T) {
	a, b := startPair(t, Options{})
	enginetest.CheckOccupancy(t, a, b)
}

// TestOccupancyOfACrashedNode: a node that stops refreshing its entry
// drops out after the presence TTL, so the room can be occupied again; a
// live node's refresh keeps it in.
func TestOccupancyOfACrashedNode(t *testing.T) {
	ttl := time.Second
	live, other := startPair(t, Options{PresenceTTL: ttl})
	enginetest.CheckOccupancyExpiry(t, live, other, ttl, func(room string) {
		// "crashed" occupies through the script directly: no engine refreshes it.
		c, _ := other.redis()
		if err := occupyScript.Exec(context.Background(), c, other.occupancyKeys(room), []string{"crashed", ms(ttl), ms(generationTTL)}).Error(); err != nil {
			t.Fatal(err)
		}
	})
}
