package hub

import (
	"context"
	"encoding/json"
	"testing"
)

// A publish retried with its idempotency key is one event and is counted
// once.
func TestDuplicatePublishCountedOnce(t *testing.T) {
	h := newHub(t, Options{})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := h.Publish(ctx, "feed:1", "tick", json.RawMessage(`1`), PublishOptions{IdempotencyKey: "k1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.Stats().Publications; n != 1 {
		t.Errorf("publications = %d after one publish and two retries, want 1", n)
	}
}
