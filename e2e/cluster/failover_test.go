package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// TestNodeKilledClientsRecover: a node dies (SIGKILL) while events are
// being published through the API of another. Its clients reconnect to
// the surviving nodes, resubscribe with their last event id and recover:
// every client ends with the whole sequence, in order, each event once,
// and every re-subscription was answered recovered:true. Clients of the
// surviving nodes never notice.
func TestNodeKilledClientsRecover(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const room, total, killAt = "failover:stream", 600, 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Clients of the doomed node know every node, starting with theirs;
	// half of them fail over to n1 first, half to n2.
	var victims, bystanders []*roamer
	for i := range 4 {
		urls := []string{n3.wsURL(), n1.wsURL(), n2.wsURL()}
		if i%2 == 1 {
			urls[1], urls[2] = urls[2], urls[1]
		}
		victims = append(victims, newRoamer(room, urls...))
	}
	bystanders = append(bystanders, newRoamer(room, n1.wsURL(), n2.wsURL()), newRoamer(room, n2.wsURL(), n1.wsURL()))
	var stopped []<-chan struct{}
	for _, r := range append(victims, bystanders...) {
		done, err := r.run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stopped = append(stopped, done)
	}
	defer func() {
		cancel()
		for _, d := range stopped {
			<-d
		}
	}()

	// The publisher: steady, on n1, through the API, with idempotency keys
	// (a retry after a timeout would not duplicate).
	killed := make(chan struct{})
	pubErr := make(chan error, 1)
	go func() {
		for i := range total {
			if i == killAt {
				close(killed)
			}
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			_, status, b, err := broadcast(pctx, n1, room, "seq", seqData{N: i}, fmt.Sprintf("failover-%d", i))
			pcancel()
			if err != nil || status != http.StatusOK {
				pubErr <- fmt.Errorf("publish %d: HTTP %d %s (%v)", i, status, b, err)
				return
			}
			time.Sleep(3 * time.Millisecond)
		}
		pubErr <- nil
	}()
	select {
	case <-killed:
	case err := <-pubErr:
		t.Fatalf("publisher stopped before the kill: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher did not reach the kill point within 60 s")
	}
	n3.kill()
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}

	all := append(victims, bystanders...)
	if err := pollUntil(30*time.Second, 50*time.Millisecond, func() bool {
		for _, r := range all {
			if r.count() < total {
				return false
			}
		}
		return true
	}); err != nil {
		for i, r := range all {
			_, subs, nodes, errs := r.snapshot()
			t.Logf("client %d: %d events, nodes %v, resubscriptions %+v, errors %v", i, r.count(), nodes, subs, errs)
		}
		t.Fatalf("not every client got all %d events within 30 s of the last publish", total)
	}
	// Anything still in flight (a duplicate) would come before this.
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	if _, status, b, err := broadcast(fctx, n2, room, "fence", nil, ""); err != nil || status != http.StatusOK {
		t.Fatalf("fence: HTTP %d %s (%v)", status, b, err)
	}
	if err := pollUntil(waitTimeout, 20*time.Millisecond, func() bool {
		for _, r := range all {
			evs, _, _, _ := r.snapshot()
			if len(evs) == 0 || evs[len(evs)-1].Type != "fence" {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal("the fence did not reach every client")
	}

	for i, r := range victims {
		evs, subs, nodes, errs := r.snapshot()
		who := fmt.Sprintf("client %d of node %s (connected to %v)", i, n3.name, nodes)
		checkSequence(t, who, evs[:len(evs)-1], total)
		if len(nodes) < 2 || nodes[0] != n3.name || nodes[1] == n3.name {
			t.Errorf("%s: want a first connection to %s and then to a survivor", who, n3.name)
		}
		if len(subs) == 0 {
			t.Errorf("%s: never re-subscribed", who)
		}
		for _, s := range subs {
			if s.Recovered == nil || !*s.Recovered {
				t.Errorf("%s: re-subscription answered %+v, want recovered:true", who, s)
			}
		}
		if len(errs) > 0 {
			t.Errorf("%s: errors %v", who, errs)
		}
		t.Logf("%s: %d re-subscription(s), replayed %v", who, len(subs), replayed(subs))
	}
	for i, r := range bystanders {
		evs, subs, nodes, errs := r.snapshot()
		who := fmt.Sprintf("bystander %d (connected to %v)", i, nodes)
		checkSequence(t, who, evs[:len(evs)-1], total)
		if len(nodes) != 1 || len(subs) != 0 || len(errs) > 0 {
			t.Errorf("%s: reconnected or failed (resubscriptions %+v, errors %v); a client of a surviving node must not notice", who, subs, errs)
		}
	}
}

func replayed(subs []subscribed) []int {
	out := make([]int, len(subs))
	for i, s := range subs {
		out[i] = s.Replayed
	}
	return out
}

// errorCode returns the code of an `error` message.
func errorCode(m msg) string {
	var d struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(m.Data, &d)
	return d.Code
}

// TestRedisRestart: the Redis the cluster shares dies (SIGKILL) and comes
// back empty (no persistence). What the cluster guarantees, and what this
// test holds it to:
//
//   - clients stay connected: nodes do not drop their connections;
//   - /readyz answers 503 on every node while Redis is away, 200 after;
//   - nothing is acknowledged that was not stored: an API publish answers
//     an error status, a socket publish gets `error` internal and no ack;
//   - once Redis is back, delivery resumes across nodes for the connected
//     clients, in a new epoch (the streams were lost with Redis's data);
//   - a client that reconnects with an event id from before the restart
//     is told recovered:false (its history is gone), never replayed a
//     wrong stream.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	r := startPrivateRedis(t, false)
	cfg := nodeConfig{redis: r.addr(), prefix: "sbe2e:restart:"}
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = launchNode(t, fmt.Sprintf("n%d", i+1), cfg)
	}
	for _, n := range nodes {
		n.waitReady(startTimeout)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const room = "restart:room"
	m2 := mustDial(t, n2.wsURL(), dialOptions{})
	m3 := mustDial(t, n3.wsURL(), dialOptions{})
	pub := mustDial(t, n1.wsURL(), dialOptions{})
	for _, m := range []*wsConn{m2, m3} {
		m.subscribe(room, "")
	}
	ctx := context.Background()
	var before []string
	for i := range 5 {
		a, status, b, err := broadcast(ctx, n1, room, "seq", seqData{N: i}, "")
		if err != nil || status != http.StatusOK {
			t.Fatalf("publish before the restart: HTTP %d %s (%v)", status, b, err)
		}
		before = append(before, a.EventID)
	}
	for _, m := range []*wsConn{m2, m3} {
		checkSequence(t, "member on node "+m.node(), m.waitEvents(room, 5), 5)
	}
	oldPos, _ := protocol.ParseEventID(before[len(before)-1])

	r.kill()
	for _, n := range nodes {
		n.waitReadyz(http.StatusServiceUnavailable, 30*time.Second)
	}
	// Publishing fails, and says so.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, status, body, err := broadcast(pctx, n1, room, "seq", seqData{N: 100}, "during-outage")
	cancel()
	if err != nil {
		t.Fatalf("API publish during the outage: %v (want an error answer, not a hung request)", err)
	}
	if status != http.StatusInternalServerError && status != http.StatusServiceUnavailable {
		t.Errorf("API publish during the outage answered HTTP %d %s, want 500 or 503", status, body)
	}
	t.Logf("API publish during the outage: HTTP %d %s", status, body)
	ans := pub.request("seq", room, seqData{N: 101})
	if ans.Type != "error" || errorCode(ans) != protocol.ErrInternal {
		t.Errorf("socket publish during the outage answered %s %s, want error internal", ans.Type, ans.Data)
	}
	// Nor can user-level commands go to the other nodes.
	uctx, ucancel := context.WithTimeout(ctx, 30*time.Second)
	status, body, err = apiCall(uctx, n1, http.MethodPost, "/api/users/someone/send", map[string]any{"type": "dm"}, nil)
	ucancel()
	if err != nil || (status != http.StatusInternalServerError && status != http.StatusServiceUnavailable) {
		t.Errorf("user send during the outage: HTTP %d %s (%v), want 500 or 503", status, body, err)
	}
	// A new subscription cannot be made without Redis either.
	sub := mustDial(t, n2.wsURL(), dialOptions{})
	if ans := sub.request("subscribe", "restart:other", nil); ans.Type != "error" || errorCode(ans) != protocol.ErrInternal {
		t.Errorf("subscribe during the outage answered %s %s, want error internal", ans.Type, ans.Data)
	}
	// The connections themselves are fine.
	for _, c := range []*wsConn{m2, m3, pub} {
		if m := c.request("ping", "", nil); m.Type != "pong" {
			t.Errorf("node %s during the outage: ping answered %s", c.node(), m.Type)
		}
	}

	r.start()
	for _, n := range nodes {
		n.waitReady(30 * time.Second)
	}
	// A node's command connections from before the restart may not all be
	// known dead yet: the engine retries a keyed publish once on a fresh
	// connection. Without a key a publish right after the restart may
	// still fail, and the client retries.
	var after publishAnswer
	if err := pollUntil(20*time.Second, 200*time.Millisecond, func() bool {
		var status int
		after, status, _, err = broadcast(ctx, n1, room, "seq", seqData{N: 0}, "after-restart")
		return err == nil && status == http.StatusOK
	}); err != nil {
		t.Fatal("publishing did not work again within 20 s of Redis being back")
	}
	newPos, ok := protocol.ParseEventID(after.EventID)
	if !ok || newPos.Epoch == oldPos.Epoch || newPos.Offset != 1 {
		t.Errorf("first event after the restart has id %s; want offset 1 in a new epoch (the old one was %s)", after.EventID, oldPos.Epoch)
	}
	for _, m := range []*wsConn{m2, m3} {
		evs := m.waitEvents(room, 6)
		if len(evs) != 6 || evs[5].ID != after.EventID {
			t.Errorf("member on node %s: events %v, want the 5 from before and then %s", m.node(), ids(evs), after.EventID)
		}
	}
	// The failed publishes were not stored. n3 has not talked to the new
	// Redis yet, and the first request on one of its command connections
	// from before the restart can still fail (EOF) even though /readyz
	// said 200: a client retries such an `internal` error, and so do we.
	var hist struct {
		Events []msg `json:"events"`
	}
	var transient []string
	if err := pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
		status, b, err := apiCall(ctx, n3, http.MethodGet, "/api/rooms/"+room+"/history", nil, &hist)
		if err != nil || status != http.StatusOK {
			transient = append(transient, fmt.Sprintf("HTTP %d %s %v", status, b, err))
			return false
		}
		return true
	}); err != nil {
		t.Fatalf("history on node %s kept failing after the restart: %v", n3.name, transient)
	}
	if len(transient) > 0 {
		t.Logf("history on node %s failed %d time(s) right after the restart before it worked: %v", n3.name, len(transient), transient)
	}
	if got := ids(hist.Events); len(got) != 1 || got[0] != after.EventID {
		t.Errorf("history after the restart: %v, want only %s", got, after.EventID)
	}

	// A client that lost its connection meanwhile comes back with an id of
	// the old epoch: its history is gone, and it is told so.
	late := mustDial(t, n3.wsURL(), dialOptions{})
	s := late.subscribe(room, before[len(before)-1])
	if s.Recovered == nil || *s.Recovered || s.Position != after.EventID {
		t.Errorf("re-subscribe with %s after the restart: %+v, want recovered:false at %s", before[len(before)-1], s, after.EventID)
	}
	// Join with the new stream and go on: the connected members still get
	// everything, in order.
	if err := pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
		_, status, _, err := broadcast(ctx, n2, room, "seq", seqData{N: 1}, "after-restart-2")
		return err == nil && status == http.StatusOK
	}); err != nil {
		t.Fatalf("publishing on node %s kept failing after the restart", n2.name)
	}
	for _, m := range []*wsConn{m2, m3} {
		evs := m.waitEvents(room, 7)
		checkSequence(t, "member on node "+m.node()+" after the restart", evs[5:], 2)
	}
	if evs := late.waitEvents(room, 1); len(evs) != 1 || evs[0].seq(t).N != 1 {
		t.Errorf("the late client got %v, want the event after its subscription", ids(evs))
	}
}

// TestRedisRestartPersistent: the same outage, with Redis keeping its data
// in an append-only file. The streams survive, so nothing changes epoch:
// connected clients go on where they were, and a client that missed
// events while disconnected recovers them (recovered:true).
func TestRedisRestartPersistent(t *testing.T) {
	t.Parallel()
	r := startPrivateRedis(t, true)
	cfg := nodeConfig{redis: r.addr(), prefix: "sbe2e:aof:"}
	n1, n2 := launchNode(t, "n1", cfg), launchNode(t, "n2", cfg)
	n1.waitReady(startTimeout)
	n2.waitReady(startTimeout)
	const room = "aof:room"
	live := mustDial(t, n2.wsURL(), dialOptions{})
	live.subscribe(room, "")
	leaver := mustDial(t, n2.wsURL(), dialOptions{})
	leaver.subscribe(room, "")
	ctx := context.Background()
	publish := func(i int) {
		t.Helper()
		// Keyed and retried: right after the restart a request may meet a
		// connection from before it (see TestRedisRestart).
		if err := pollUntil(20*time.Second, 100*time.Millisecond, func() bool {
			_, status, _, err := broadcast(ctx, n1, room, "seq", seqData{N: i}, fmt.Sprintf("aof-%d", i))
			return err == nil && status == http.StatusOK
		}); err != nil {
			t.Fatalf("publish %d kept failing", i)
		}
	}
	for i := range 5 {
		publish(i)
	}
	evs := leaver.waitEvents(room, 5)
	last := evs[4].ID
	leaver.close()

	r.kill()
	n1.waitReadyz(http.StatusServiceUnavailable, 30*time.Second)
	r.start()
	n1.waitReady(30 * time.Second)
	n2.waitReady(30 * time.Second)
	for i := 5; i < 10; i++ {
		publish(i)
	}
	checkSequence(t, "connected member", live.waitEvents(room, 10), 10)

	back := mustDial(t, n1.wsURL(), dialOptions{})
	s := back.subscribe(room, last)
	if s.Recovered == nil || !*s.Recovered || s.Replayed != 5 {
		t.Errorf("re-subscribe with %s after a persistent restart: %+v, want recovered:true, replayed 5", last, s)
	}
	got := back.waitEvents(room, 5)
	for i, e := range got {
		if e.seq(t).N != 5+i {
			t.Errorf("replayed event %d carries n=%d, want %d", i, e.seq(t).N, 5+i)
		}
	}
}
