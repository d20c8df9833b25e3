package hubtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// closeSink is a sink that records the close code.
type closeSink struct {
	sink
	mu   sync.Mutex
	code protocol.CloseCode
}

func (s *closeSink) Close(d protocol.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.code == 0 {
		s.code = d.Code
	}
}

func (s *closeSink) closed() protocol.CloseCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

// RunBansAcrossNodes checks bans kept by an engine.BanStore: a ban made on
// one node closes the user's connection on another, holds on a node that
// starts after it (a restarted node), lifts everywhere, and ends by itself
// at its expiry, also for nodes that never heard of it.
func RunBansAcrossNodes(t *testing.T, newEngine func(t *testing.T) engine.Engine) {
	probe := newEngine(t)
	_, ok := probe.(engine.BanStore)
	_ = probe.Close()
	if !ok {
		t.Fatal("the engine is not an engine.BanStore")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := newHub(t, newEngine), newHub(t, newEngine)
	sb := &closeSink{}
	ub := b.Connect(sb, hub.ConnectOptions{UserID: "mallory"})
	defer ub.Gone()

	mustNoErr(t, a.Ban(ctx, "mallory", time.Minute), "Ban")
	waitFor(t, 5*time.Second, "mallory's connection on the other node to close", func() bool { return sb.closed() != 0 })
	if c := sb.closed(); c != protocol.CloseBanned {
		t.Errorf("closed with %d, want 4004", c)
	}

	// A node that starts now (or restarted since) knows the ban from the
	// engine alone.
	c := newHub(t, newEngine)
	if !c.Banned("mallory") {
		t.Fatal("a node started after the ban does not see it")
	}
	sc := &closeSink{}
	uc := c.Connect(sc, hub.ConnectOptions{UserID: "mallory"})
	defer uc.Gone()
	if code := sc.closed(); code != protocol.CloseBanned {
		t.Errorf("a new connection on the new node: close %d, want 4004", code)
	}
	if c.Banned("trent") {
		t.Error("a user nobody banned is banned")
	}

	// Lifted from the new node: no node, old or new, has it any more.
	mustNoErr(t, c.Ban(ctx, "mallory", 0), "lift")
	waitFor(t, 5*time.Second, "the lift to reach the first nodes", func() bool { return !a.Banned("mallory") && !b.Banned("mallory") })
	if d := newHub(t, newEngine); d.Banned("mallory") {
		t.Error("a node started after the lift still sees the ban")
	}

	// A short ban expires in the store too: a node that starts after the
	// expiry never sees it.
	mustNoErr(t, a.Ban(ctx, "eve", 1500*time.Millisecond), "short ban")
	if e := newHub(t, newEngine); !e.Banned("eve") {
		t.Fatal("a node started during a short ban does not see it")
	}
	time.Sleep(2 * time.Second)
	if f := newHub(t, newEngine); f.Banned("eve") {
		t.Error("a ban outlived its expiry in the store")
	}
}
