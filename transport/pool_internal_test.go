package transport

import (
	"context"
	"math"
	"testing"
)

// TestFlushPoolQueueFitsConnections: a connection is queued at most once,
// so a queue as long as the connection limit never falls back to a
// goroutine per flush; without a limit, or past the cap, it is bounded.
func TestFlushPoolQueueFitsConnections(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct{ conns, want int }{
		{0, minFlushQueue},
		{100, minFlushQueue},
		{1_048_512, 1_048_512},
		{math.MaxInt, maxFlushQueue},
	} {
		if got := cap(newFlushPool(ctx, 1, tc.conns).ch); got != tc.want {
			t.Errorf("%d connections: queue of %d, want %d", tc.conns, got, tc.want)
		}
	}
}
