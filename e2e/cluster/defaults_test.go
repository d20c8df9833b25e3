package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/natstest"
)

// natsPrefix returns a NATS prefix of the test's own and deletes its
// streams and buckets when the test ends.
func natsPrefix(tb testing.TB, u string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "sbe2e_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		natstest.DeleteStreams(u, "SWITCHBOARD_"+p, "SWITCHBOARD_"+p+"_IDEM", "SWITCHBOARD_"+p+"_PRESENCE", "KV_SWITCHBOARD_"+p+"_BANS", "KV_SWITCHBOARD_"+p+"_OCC")
	})
	return p
}

// defaultNode starts `switchboard serve` with no flags at all. Only the
// environment says where to listen (a free loopback port, not :8080, which
// other programs on the machine may hold), that logs are JSON (so the test
// can read them) and which engine to use; nothing about history.
func defaultNode(t *testing.T, name string, env ...string) *node {
	t.Helper()
	env = append(env, "SWITCHBOARD_LISTEN=127.0.0.1:0", "SWITCHBOARD_LOG_FORMAT=json", "SWITCHBOARD_NODE_ID="+name)
	return startNode(t, name, nodeConfig{exact: []string{"serve"}, env: env})
}

// startedRecord returns the node's "switchboard started" log record.
func startedRecord(t *testing.T, n *node) map[string]any {
	t.Helper()
	b, err := os.ReadFile(n.log.path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "switchboard started" {
			return rec
		}
	}
	t.Fatalf("node %s logged no \"switchboard started\" record:\n%s", n.name, n.log.tail(4000))
	return nil
}

// TestDefaultHistoryTTL starts the real binary with no flags on each engine
// and checks the history policy it applies is the documented one: 100
// events for 5 minutes (docs/protocol.md §4, docs/api.md). With Redis the
// test reads the TTL the publish script put on the room's history stream,
// which is what decides how old a replayed event can be.
func TestDefaultHistoryTTL(t *testing.T) {
	checkLog := func(t *testing.T, n *node) {
		t.Helper()
		rec := startedRecord(t, n)
		if rec["history_ttl"] != "5m0s" || rec["history_size"] != float64(100) {
			t.Errorf("node %s started with history_size=%v history_ttl=%v, want 100 and 5m0s", n.name, rec["history_size"], rec["history_ttl"])
		}
	}
	t.Run("memory", func(t *testing.T) {
		n := defaultNode(t, "ttl-memory")
		checkLog(t, n)
		if rec := startedRecord(t, n); rec["engine"] != "memory" {
			t.Fatalf("engine %v, want memory", rec["engine"])
		}
	})
	t.Run("redis", func(t *testing.T) {
		addr := sharedRedis(t)
		prefix := keyPrefix(t, addr)
		n := defaultNode(t, "ttl-redis", "SWITCHBOARD_ENGINE=redis", "SWITCHBOARD_REDIS_ADDR="+addr, "SWITCHBOARD_REDIS_KEY_PREFIX="+prefix)
		checkLog(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		room := "ttl:room"
		if _, status, b, err := broadcast(ctx, n, room, "tick", map[string]int{"n": 1}, ""); err != nil || status != 200 {
			t.Fatalf("publish: HTTP %d %s (%v)", status, b, err)
		}
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		key := prefix + "{" + room + "}:h"
		ms, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		// 5 minutes less the moments since the publish; a TTL of 0 in the
		// policy would leave the stream the 24 h position expiry instead.
		if ms <= 4*60*1000 || ms > 5*60*1000 {
			t.Fatalf("the room's history stream expires in %d ms, want just under 300000 (5 min)", ms)
		}
	})
	t.Run("nats", func(t *testing.T) {
		u := natstest.URL(t)
		n := defaultNode(t, "ttl-nats", "SWITCHBOARD_ENGINE=nats", "SWITCHBOARD_NATS_URL="+u, "SWITCHBOARD_NATS_PREFIX="+natsPrefix(t, u))
		checkLog(t, n)
	})
}
