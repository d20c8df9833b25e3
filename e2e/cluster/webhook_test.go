package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/natstest"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/webhook"
)

// hookReceiver is a real webhook receiver on loopback. It checks every
// delivery's signature against secret, answers 500 to the first failFirst
// requests, and keeps the events of the deliveries it accepted.
type hookReceiver struct {
	url    string
	secret string
	mu     sync.Mutex
	fail   int
	tries  map[string]int // batch id -> attempts seen
	events []webhook.Event
	bad    []string
}

func newHookReceiver(t *testing.T, secret string, failFirst int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{secret: secret, fail: failFirst, tries: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rc.url = "http://" + ln.Addr().String() + "/hooks"
	return rc
}

func (rc *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := webhook.Verify(rc.secret, r.Header, body, 300*time.Second, time.Now()); err != nil {
		rc.bad = append(rc.bad, err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.tries[r.Header.Get(webhook.HeaderID)]++
	if rc.fail > 0 {
		rc.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var b struct{ Events []webhook.Event }
	if err := json.Unmarshal(body, &b); err != nil {
		rc.bad = append(rc.bad, "body: "+err.Error())
	}
	rc.events = append(rc.events, b.Events...)
}

func (rc *hookReceiver) snapshot() []webhook.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.events)
}

// waitEvents waits until cond holds for the accepted events.
func (rc *hookReceiver) waitEvents(t *testing.T, what string, cond func([]webhook.Event) bool) []webhook.Event {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ev := rc.snapshot()
		if cond(ev) {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook receiver: no %s within %s; got %d events", what, waitTimeout, len(ev))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(ev []webhook.Event, typ, room string) int {
	n := 0
	for _, e := range ev {
		if e.Type == typ && e.Room == room {
			n++
		}
	}
	return n
}

// TestWebhooksAcrossNodes: two nodes on Redis send to one receiver, which
// refuses its first deliveries. Two users on the two nodes join one room
// at once: the room is occupied once and vacated once for the cluster;
// every event arrives exactly once, signed with the second of two
// secrets; each node's events about the room arrive in the order they
// happened, publications in offset order.
func TestWebhooksAcrossNodes(t *testing.T) {
	t.Parallel()
	rc := newHookReceiver(t, "new-secret-0123456789", 3)
	webhooksAcrossNodes(t, rc, startCluster(t, 2, webhookArgs(rc)...))
}

// TestWebhooksAcrossNATSNodes is TestWebhooksAcrossNodes on the NATS
// engine, whose occupancy is a key-value bucket.
func TestWebhooksAcrossNATSNodes(t *testing.T) {
	t.Parallel()
	rc := newHookReceiver(t, "new-secret-0123456789", 3)
	u := natstest.URL(t)
	cfg := nodeConfig{args: append([]string{"--engine", "nats", "--nats-url", u, "--nats-prefix", natsPrefix(t, u)}, webhookArgs(rc)...)}
	nodes := []*node{launchNode(t, "n1", cfg), launchNode(t, "n2", cfg)}
	for _, n := range nodes {
		n.waitReady(startTimeout)
	}
	webhooksAcrossNodes(t, rc, nodes)
}

func webhookArgs(rc *hookReceiver) []string {
	return []string{"--webhook-url", rc.url, "--webhook-secret", "old-secret-0123456789,new-secret-0123456789",
		"--webhook-publications", "chat", "--webhook-batch-delay", "20ms", "--webhook-batch-size", "7"}
}

func webhooksAcrossNodes(t *testing.T, rc *hookReceiver, nodes []*node) {
	const room, perNode = "chat:hooks", 15
	for round := range 2 { // two occupied periods: the generation moves on
		var wg sync.WaitGroup
		conns := make([]*wsConn, 2)
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conns[i] = mustDial(t, n.wsURL(), dialOptions{})
				conns[i].subscribe(room, "")
			}()
		}
		wg.Wait()
		for i, c := range conns {
			ids := make([]string, perNode)
			for k := range ids {
				ids[k] = fmt.Sprintf("hook-%d-%d-%d-%s", round, i, k, c.connID())
				c.mustSend(map[string]any{"type": "message", "id": ids[k], "room": room, "data": map[string]int{"n": k}})
			}
			waitAcks(t, c, room, ids)
		}
		for _, c := range conns {
			c.close()
		}
		rc.waitEvents(t, "room.vacated", func(ev []webhook.Event) bool { return count(ev, webhook.RoomVacated, room) == round+1 })
	}
	// Let any duplicate still in flight arrive before counting.
	time.Sleep(300 * time.Millisecond)
	ev := rc.waitEvents(t, "every event", func(ev []webhook.Event) bool {
		return count(ev, webhook.Publication, room) >= 4*perNode && count(ev, webhook.MemberRemoved, room) >= 4
	})
	rc.mu.Lock()
	if len(rc.bad) > 0 {
		t.Errorf("deliveries that did not verify: %v", rc.bad)
	}
	retried := 0
	for _, n := range rc.tries {
		if n > 1 {
			retried++
		}
	}
	rc.mu.Unlock()
	if retried == 0 {
		t.Error("no batch was retried after the receiver's 500s")
	}
	seen := map[string]bool{}
	for _, e := range ev {
		if seen[e.ID] {
			t.Errorf("event %s (%s) delivered twice", e.ID, e.Type)
		}
		seen[e.ID] = true
	}
	for typ, want := range map[string]int{webhook.RoomOccupied: 2, webhook.RoomVacated: 2, webhook.MemberAdded: 4,
		webhook.MemberRemoved: 4, webhook.Publication: 4 * perNode} {
		if got := count(ev, typ, room); got != want {
			t.Errorf("%s events for %s: %d, want %d", typ, room, got, want)
		}
	}
	if got := count(ev, webhook.ConnectionOpened, "") + count(ev, webhook.ConnectionClosed, ""); got != 8 {
		t.Errorf("connection events: %d, want 8 (4 opened, 4 closed)", got)
	}
	// Generations pair each occupied with its vacated and increase.
	var occ, vac []uint64
	for _, e := range ev {
		switch {
		case e.Type == webhook.RoomOccupied && e.Room == room:
			occ = append(occ, e.Generation)
		case e.Type == webhook.RoomVacated && e.Room == room:
			vac = append(vac, e.Generation)
		}
	}
	// The two periods' events may come from different nodes, and nodes
	// deliver independently: compare the sets, not the arrival order.
	slices.Sort(occ)
	slices.Sort(vac)
	if len(occ) == 2 && (occ[0] == 0 || occ[1] <= occ[0] || !slices.Equal(occ, vac)) {
		t.Errorf("generations: occupied %v, vacated %v", occ, vac)
	}
	// Per node and connection: added, then the publications in offset
	// order, then removed, then closed.
	for _, n := range nodes {
		stage := map[string]int{} // client -> 1 added, 2 removed, 3 closed
		advance := func(e webhook.Event, from, to int) {
			c := webhook.Str(e.Client)
			if stage[c] != from {
				t.Errorf("node %s: %s of %s at stage %d, want %d", n.name, e.Type, c, stage[c], from)
			}
			stage[c] = to
		}
		lastOff := map[string]uint64{}
		for _, e := range ev {
			if e.Node != n.name {
				continue
			}
			switch e.Type {
			case webhook.MemberAdded:
				advance(e, 0, 1)
			case webhook.Publication:
				advance(e, 1, 1)
				p, ok := protocol.ParseEventID(e.EventID)
				c := webhook.Str(e.Client)
				if !ok || p.Offset <= lastOff[c] {
					t.Errorf("node %s: publication %s after offset %d", n.name, e.EventID, lastOff[c])
				}
				lastOff[c] = p.Offset
				if !strings.HasPrefix(string(e.Data), `{"n":`) || e.EventType != "message" || e.User == nil || *e.User == "" {
					t.Errorf("publication event %+v", e)
				}
			case webhook.MemberRemoved:
				advance(e, 1, 2)
			case webhook.ConnectionClosed:
				advance(e, 2, 3)
				if e.Code == nil || *e.Code == 0 {
					t.Errorf("connection.closed without a close code: %+v", e)
				}
			}
		}
	}
}

// TestHangingWebhookReceiverSparesSockets: a node whose webhook receiver
// never answers delivers a bystander's events as fast as a node without
// webhooks, and counts what it drops. It logs the publish -> receive
// latencies of both, measured in the same run.
func TestHangingWebhookReceiverSparesSockets(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hangs until the test ends
		case <-hang:
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { close(hang); srv.Close() })
	hooked := startNode(t, "hooked", nodeConfig{args: []string{"--webhook-url", "http://" + ln.Addr().String() + "/hang",
		"--webhook-secret", "s3cret-s3cret-s3cret", "--webhook-publications", "*", "--webhook-timeout", "30s",
		"--webhook-queue-size", "100", "--webhook-batch-size", "10"}})
	plain := startNode(t, "plain", nodeConfig{})

	const n = 400
	measure := func(nd *node) []time.Duration {
		room := nextRoom("bystander")
		rcv := newReceiver(t, nd.wsURL(), room, n+1)
		pub := newSender(t, nd.wsURL())
		out := make([]time.Duration, 0, n)
		for i := range n {
			t0 := time.Now()
			if err := pub.publish(room, i); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-rcv.got:
				out = append(out, at.Sub(t0))
			case <-time.After(10 * time.Second):
				t.Fatalf("node %s: event %d did not arrive within 10 s", nd.name, i)
			}
		}
		slices.Sort(out)
		return out
	}
	// Interleave the runs so that both see the same machine load.
	var hooks, none []time.Duration
	for range 2 {
		hooks = append(hooks, measure(hooked)...)
		none = append(none, measure(plain)...)
	}
	slices.Sort(hooks)
	slices.Sort(none)
	t.Logf("bystander publish->receive over %d events: hanging webhook receiver p50 %s p99 %s; no webhooks p50 %s p99 %s",
		len(hooks), percentile(hooks, 50), percentile(hooks, 99), percentile(none, 50), percentile(none, 99))
	// A sanity bound only: a hook path blocked on the receiver would take
	// the 30 s request timeout.
	if p := percentile(hooks, 99); p > 2*time.Second {
		t.Errorf("p99 with a hanging receiver = %s", p)
	}
	body := metricsOf(t, hooked)
	dropped := metricValue(body, "switchboard_webhook_events_dropped_total")
	queued := metricValue(body, "switchboard_webhook_queue_depth")
	if dropped < 1 || queued > 100 {
		t.Errorf("metrics: dropped %v (want > 0), queue depth %v (want <= 100)", dropped, queued)
	}
}

func metricsOf(t *testing.T, n *node) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(n.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of an unlabelled metric (-1 if absent).
func metricValue(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
