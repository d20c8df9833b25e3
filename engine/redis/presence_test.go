package redis

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

func stats(t *testing.T, e *Engine, room string) engine.PresenceStats {
	t.Helper()
	st, err := e.PresenceStats(context.Background(), room)
	mustNoErr(t, err, "PresenceStats")
	return st
}

// TestPresenceAcrossNodes: entries added on one node are listed and
// counted on every node; a user with connections on two nodes counts once.
func TestPresenceAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	a, b := newTestEngine(t, Options{KeyPrefix: prefix, NodeID: "a"}), newTestEngine(t, Options{KeyPrefix: prefix, NodeID: "b"})
	startEngine(t, a, enginetest.NewRecorder())
	startEngine(t, b, enginetest.NewRecorder())
	ctx := context.Background()
	mustNoErr(t, a.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u1", ConnectionID: "c1", Info: json.RawMessage(`{"k":1}`)}), "add")
	mustNoErr(t, b.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u1", ConnectionID: "c2"}), "add")
	mustNoErr(t, b.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u0", ConnectionID: "c3"}), "add")
	for _, e := range []*Engine{a, b} {
		if st := stats(t, e, "r"); st != (engine.PresenceStats{Clients: 3, Users: 2}) {
			t.Errorf("node %s: stats %+v, want 3 clients, 2 users", e.opts.NodeID, st)
		}
		list, err := e.PresenceList(ctx, "r")
		mustNoErr(t, err, "list")
		want := []string{"u0/c3", "u1/c1", "u1/c2"} // sorted by user, then connection
		if len(list) != len(want) {
			t.Fatalf("node %s: list %+v", e.opts.NodeID, list)
		}
		for i, ci := range list {
			if ci.UserID+"/"+ci.ConnectionID != want[i] {
				t.Errorf("node %s: entry %d = %s/%s, want %s", e.opts.NodeID, i, ci.UserID, ci.ConnectionID, want[i])
			}
		}
		if string(list[1].Info) != `{"k":1}` {
			t.Errorf("info not kept: %q", list[1].Info)
		}
	}
	// A connection re-added under another user moves its count.
	mustNoErr(t, a.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u2", ConnectionID: "c1"}), "re-add")
	if st := stats(t, b, "r"); st != (engine.PresenceStats{Clients: 3, Users: 3}) {
		t.Errorf("after moving c1 to u2: %+v, want 3 clients, 3 users", st)
	}
	mustNoErr(t, b.RemovePresence(ctx, "r", "c2"), "remove")
	mustNoErr(t, b.RemovePresence(ctx, "r", "c2"), "remove twice")
	if st := stats(t, a, "r"); st != (engine.PresenceStats{Clients: 2, Users: 2}) {
		t.Errorf("after removing c2: %+v, want 2 clients, 2 users", st)
	}

	// Closing a node removes its entries at once.
	b.Close()
	if st := stats(t, a, "r"); st != (engine.PresenceStats{Clients: 1, Users: 1}) {
		t.Errorf("after node b closed: %+v, want only a's entry", st)
	}
}

// TestPresenceCrashedNode: the entries of a node that stops refreshing
// them (crashed, no Close) disappear after PresenceTTL, user counts
// included, while a live node's entries stay.
func TestPresenceCrashedNode(t *testing.T) {
	prefix := testPrefix()
	live := newTestEngine(t, Options{KeyPrefix: prefix, PresenceTTL: time.Second})
	crash := newTestEngine(t, Options{KeyPrefix: prefix, PresenceTTL: time.Second})
	startEngine(t, live, enginetest.NewRecorder())
	ctx, stop := context.WithCancel(context.Background())
	mustNoErr(t, crash.Run(ctx, enginetest.NewRecorder()), "run")
	t.Cleanup(func() { crash.Close() })
	mustNoErr(t, live.AddPresence(context.Background(), "r", engine.ClientInfo{UserID: "u1", ConnectionID: "live"}), "add")
	mustNoErr(t, crash.AddPresence(context.Background(), "r", engine.ClientInfo{UserID: "u1", ConnectionID: "dead1"}), "add")
	mustNoErr(t, crash.AddPresence(context.Background(), "r", engine.ClientInfo{UserID: "u2", ConnectionID: "dead2"}), "add")
	if st := stats(t, live, "r"); st != (engine.PresenceStats{Clients: 3, Users: 2}) {
		t.Fatalf("before the crash: %+v", st)
	}
	stop() // the crashed node's loops end; nothing is removed
	waitFor(t, 15*time.Second, "the crashed node's entries to expire", func() bool {
		return stats(t, live, "r") == engine.PresenceStats{Clients: 1, Users: 1}
	})
	list, err := live.PresenceList(context.Background(), "r")
	mustNoErr(t, err, "list")
	if len(list) != 1 || list[0].ConnectionID != "live" {
		t.Errorf("after expiry: %+v, want only the live node's entry", list)
	}
}

// TestPresenceRefreshRestores: after Redis lost the presence keys (a
// restart), the next refresh round puts this node's entries back; removed
// entries are not refreshed.
func TestPresenceRefreshRestores(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	mustNoErr(t, e.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u1", ConnectionID: "c1"}), "add")
	mustNoErr(t, e.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u2", ConnectionID: "c2"}), "add")
	mustNoErr(t, e.RemovePresence(ctx, "r", "c2"), "remove")
	c := rawClient(t, e.opts.Addr)
	mustNoErr(t, c.Do(ctx, c.B().Del().Key(e.presenceKeys("r")...).Build()).Error(), "del")
	if st := stats(t, e, "r"); st != (engine.PresenceStats{}) {
		t.Fatalf("after deleting the keys: %+v", st)
	}
	e.refreshPresence(ctx)
	if st := stats(t, e, "r"); st != (engine.PresenceStats{Clients: 1, Users: 1}) {
		t.Errorf("after refresh: %+v, want c1 back and c2 still gone", st)
	}
	// The entry says which node owns it and when it expires.
	raw, err := c.Do(ctx, c.B().Hget().Key(e.key("r", ":p")).Field("c1").Build()).ToString()
	mustNoErr(t, err, "hget")
	var rec presenceRecord
	mustNoErr(t, json.Unmarshal([]byte(raw), &rec), "entry %q", raw)
	if rec.Node != e.opts.NodeID || rec.Exp <= time.Now().UnixMilli() {
		t.Errorf("stored entry %s: want node %q and an expiry in the future", raw, e.opts.NodeID)
	}
}

func TestPresenceBadInfo(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	err := e.AddPresence(context.Background(), "r", engine.ClientInfo{UserID: "u", ConnectionID: "c", Info: json.RawMessage(`{bad`)})
	if err == nil {
		t.Fatal("AddPresence with invalid JSON info succeeded")
	}
	if st := stats(t, e, "r"); st != (engine.PresenceStats{}) {
		t.Errorf("a rejected entry was stored: %+v", st)
	}
}
