package cluster_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestBanAcrossNodesAndRestart runs two real nodes per engine: a ban made
// through one node's API closes the user's connection on the other node,
// refuses the user there, and still refuses them after that node is
// restarted (the ban is in Redis or NATS with its expiry, not only in the
// nodes' memory); other users are let in.
func TestBanAcrossNodesAndRestart(t *testing.T) {
	for _, eng := range clusterEngines("--jwt-secret", jwtSecret) {
		t.Run(eng.name, func(t *testing.T) {
			cfg := eng.cfg(t)
			n1, n2 := startPair(t, cfg)

			mallory := mustDial(t, n2.wsURL(), dialOptions{token: mintToken(t, jwtSecret, "mallory")})
			mustAPI(t, n1, http.MethodPost, "/api/users/mallory/ban", map[string]int{"seconds": 120}, nil)
			if code, ok := mallory.waitClosed(waitTimeout); !ok || code != 4004 {
				t.Fatalf("mallory's connection on the other node: closed=%v code %d, want 4004", ok, code)
			}
			refused := func(n *node) {
				t.Helper()
				_, resp, err := dialWS(t, n.wsURL(), dialOptions{token: mintToken(t, jwtSecret, "mallory")})
				if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
					status := 0
					if resp != nil {
						status = resp.StatusCode
					}
					t.Fatalf("mallory reconnecting to %s: err %v, HTTP %d; want 403 banned", n.name, err, status)
				}
			}
			refused(n2)

			// Restart n2: a new process with nothing in memory.
			n2.stop()
			n2b := startNode(t, "n2", cfg)
			refused(n2b)
			trent := mustDial(t, n2b.wsURL(), dialOptions{token: mintToken(t, jwtSecret, "trent")})
			if got := trent.request("ping", "", nil); got.Type != "pong" {
				t.Fatalf("trent got %s, want pong", got.Type)
			}

			// Lifted through the restarted node: both let mallory in.
			mustAPI(t, n2b, http.MethodPost, "/api/users/mallory/ban", map[string]int{"seconds": 0}, nil)
			for _, n := range []*node{n1, n2b} {
				deadline := time.Now().Add(waitTimeout)
				for i := 0; ; i++ {
					_, resp, err := dialWS(t, n.wsURL(), dialOptions{token: mintToken(t, jwtSecret, "mallory")})
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						status := 0
						if resp != nil {
							status = resp.StatusCode
						}
						t.Fatalf("after the lift, mallory still refused by %s (HTTP %d, %v) after %s tries", n.name, status, err, strconv.Itoa(i))
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
}
