package redis

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

// startCluster starts a three-master Redis Cluster on free loopback ports
// and returns its addresses.
func startCluster(t *testing.T) []string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli not on PATH and CI is set: %v", err)
		}
		t.Skipf("redis-cli not on PATH (%v): needed to form a test cluster", err)
	}
	var addrs []string
	for i := 0; i < 3; i++ {
		// The bus port is explicit: Redis's default, port+10000, lands in
		// the ephemeral range, where any outgoing connection may take it.
		bus := strings.TrimPrefix(freePort(t), "127.0.0.1:")
		r := startPrivateRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", // in its --dir
			"--cluster-port", bus)
		addrs = append(addrs, r.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		_, port, _ := strings.Cut(a, ":")
		waitFor(t, 30*time.Second, "cluster state ok on "+a, func() bool {
			out, err := exec.Command(cli, "-p", port, "cluster", "info").Output()
			return err == nil && strings.Contains(string(out), "cluster_state:ok")
		})
	}
	return addrs
}

// TestCluster runs the shared suite and a cross-node check against a real
// Redis Cluster: keys of a room share a slot ({room} hash tag), room
// channels use sharded pub/sub, the control channel classic pub/sub.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a Redis Cluster; skipped with -short")
	}
	addrs := startCluster(t)
	t.Run("Suite", func(t *testing.T) {
		enginetest.Run(t, func(t *testing.T) engine.Engine {
			return newTestEngine(t, Options{ClusterAddrs: addrs})
		})
	})
	t.Run("TwoNodes", func(t *testing.T) {
		prefix := testPrefix()
		a := newTestEngine(t, Options{ClusterAddrs: addrs, KeyPrefix: prefix})
		b := newTestEngine(t, Options{ClusterAddrs: addrs[1:], KeyPrefix: prefix})
		ra, rb := enginetest.NewRecorder(), enginetest.NewRecorder()
		startEngine(t, a, ra)
		startEngine(t, b, rb)
		ctx := context.Background()
		// Enough rooms to land on every shard.
		rooms := []string{"r:a", "r:b", "r:c", "r:d", "r:e", "r:f", "r:g", "r:h"}
		for _, room := range rooms {
			mustNoErr(t, a.Subscribe(ctx, room), "subscribe %s", room)
		}
		for _, room := range rooms {
			for i := 0; i < 3; i++ {
				_, err := b.Publish(ctx, room, &engine.Publication{Type: "m"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
				mustNoErr(t, err, "publish %s", room)
			}
		}
		for _, room := range rooms {
			waitFor(t, 5*time.Second, "events of "+room, func() bool { return ra.Count(room) == 3 })
			got := ra.Get(room)
			checkOffsets(t, got, got[0].Position.Epoch, 3)
		}
		msg := []byte("cluster-control")
		mustNoErr(t, b.PublishControl(ctx, msg), "control")
		waitFor(t, 5*time.Second, "control on both nodes", func() bool { return ra.HasControl(msg) && rb.HasControl(msg) })
		mustNoErr(t, a.AddPresence(ctx, "r:a", engine.ClientInfo{UserID: "u", ConnectionID: "c"}), "presence")
		if st, err := b.PresenceStats(ctx, "r:a"); err != nil || st != (engine.PresenceStats{Clients: 1, Users: 1}) {
			t.Errorf("presence across nodes: %+v, %v", st, err)
		}
		for _, room := range rooms {
			mustNoErr(t, a.Unsubscribe(ctx, room), "unsubscribe %s", room)
		}
		mustNoErr(t, a.Subscribe(ctx, "r:a"), "subscribe again")
		_, err := b.Publish(ctx, "r:a", &engine.Publication{Type: "m"}, engine.PublishOptions{})
		mustNoErr(t, err, "publish")
		waitFor(t, 5*time.Second, "the event after resubscribing", func() bool { return ra.Count("r:a") == 4 })
	})
}

// TestSentinel: the engine finds the master through a sentinel and works
// as on a plain Redis.
func TestSentinel(t *testing.T) {
	master := startPrivateRedis(t)
	s := startSentinel(t, master)

	prefix := testPrefix()
	a := newTestEngine(t, Options{SentinelMasterSet: "sbmaster", SentinelAddrs: []string{s.addr()}, KeyPrefix: prefix})
	b := newTestEngine(t, Options{SentinelMasterSet: "sbmaster", SentinelAddrs: []string{s.addr()}, KeyPrefix: prefix})
	ra := enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, enginetest.NewRecorder())
	ctx := context.Background()
	mustNoErr(t, a.Subscribe(ctx, "room"), "subscribe")
	res, err := b.Publish(ctx, "room", &engine.Publication{Type: "m"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
	mustNoErr(t, err, "publish")
	waitFor(t, 5*time.Second, "the event via sentinel", func() bool { return ra.Count("room") == 1 })
	// It is the master that holds the data.
	n, err := master.do("EXISTS", prefix+"{room}:h")
	mustNoErr(t, err, "exists")
	if v, _ := n.AsInt64(); v != 1 {
		t.Errorf("history of %+v not on the master", res.Position)
	}
	mustNoErr(t, a.Ready(ctx), "ready")
}
