package interop_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// TestSeedStyleClient runs seed_client.py, a Python websockets client and
// backend written as the seeds' guides write them, against a node with a
// 5 s heartbeat: JSON pings answered with pongs (three of them, so it
// lives through several pong timeouts), exclude_self for the seeds'
// exclude=websocket, POST /broadcast/{room}.
func TestSeedStyleClient(t *testing.T) {
	requirePython(t)
	if testing.Short() {
		t.Skip("waits for three heartbeats (~15 s)")
	}
	url, srv := startServerWith(t, server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: time.Second}})

	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer pcancel()
	cmd := exec.CommandContext(pctx, python, "seed_client.py", url, "3")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("seed_client.py exited with %d:\n%s", ee.ExitCode(), out)
		}
		t.Fatalf("run seed_client.py: %v\n%s", err, out)
	}
	if n := srv.Hub.Stats().Closes["4008"]; n != 0 {
		t.Errorf("%d connections closed with 4008", n)
	}
	t.Logf("%s", out)
}
