package redis

import (
	"context"
	"testing"
	"time"
)

func TestNodeStats(t *testing.T) {
	a, b := startPair(t, Options{})
	ctx := context.Background()
	if err := a.ReportNode(ctx, "node-a", []byte(`{"connections":3}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.ReportNode(ctx, "node-b", []byte(`{"connections":4}`), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || string(nodes["node-a"]) != `{"connections":3}` || string(nodes["node-b"]) != `{"connections":4}` {
		t.Fatalf("nodes = %q", nodes)
	}
	// node-b stops reporting: it drops out once its entry expires.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if nodes, err = a.Nodes(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := nodes["node-b"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired node still listed: %q", nodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(nodes) != 1 {
		t.Errorf("nodes after expiry = %q", nodes)
	}
}
