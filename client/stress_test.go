package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// cutKinds are the ways the stress test ends a connection.
var cutKinds = [...]string{"kill (1006)", "server close 1012", "server close 4005"}

// TestRecoveryStress is the proof of history-based recovery: a client
// publishes a numbered sequence to one room while it and 20 subscribers
// are cut again and again at random points (mid-replay included), by a
// dead socket or by the server. Every subscriber must end with exactly the
// whole sequence, in order, once: each reconnect re-subscribes with the
// last event id seen, the server replays the gap, and the publisher's
// retried publishes are deduplicated.
func TestRecoveryStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const (
		receivers = 20
		events    = 3000
		pace      = 3 * time.Millisecond // between publishes: spreads them over the cuts
		maxCuts   = 250                  // per client
		budget    = 40 * time.Second     // for the publishing phase
	)
	// Join/leave notices are off: thousands of reconnects would make them
	// most of the traffic, and they are not what is under test.
	ts := startServer(t, "", server.Config{Hub: hub.Options{History: engine.HistoryPolicy{Size: 100000}, NoJoinLeave: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := func() *Options {
		return &Options{InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
	}

	recs := make([]*recorder, receivers)
	clients := make([]*Client, receivers)
	for i := range clients {
		clients[i] = connect(t, ts.url(), opts())
		recs[i] = newRecorder()
		if _, err := clients[i].Subscribe(ctx, "stress", recs[i].handle); err != nil {
			t.Fatal(err)
		}
	}
	pub := connect(t, ts.url(), opts())

	var pubDone atomic.Bool
	var cuts [len(cutKinds)]atomic.Int64
	start := time.Now()
	cutter := func(c *Client, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 7))
		for i := 0; i < maxCuts && !pubDone.Load() && time.Since(start) < budget; i++ {
			time.Sleep(time.Duration(r.Int64N(int64(15 * time.Millisecond))))
			connID, opens, st := c.connInfo()
			if st != StateOpen {
				continue
			}
			kind := r.IntN(len(cutKinds))
			switch kind {
			case 0:
				c.killConn()
			case 1:
				_ = ts.srv.Hub.DisconnectConn(ctx, connID, protocol.NewDisconnect(protocol.CloseServiceRestart, ""))
			case 2:
				_ = ts.srv.Hub.DisconnectConn(ctx, connID, protocol.NewDisconnect(protocol.CloseSlowConsumer, ""))
			}
			cuts[kind].Add(1)
			// Wait for the next connection (its re-subscription may still be
			// under way: the next cut can land mid-replay).
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, o, st := c.connInfo(); o > opens && st == StateOpen {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("client did not reconnect within 10 s of a %s", cutKinds[kind])
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
	}
	var wg sync.WaitGroup
	for i, c := range append(append([]*Client(nil), clients...), pub) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cutter(c, uint64(i))
		}()
	}

	var dupAcks int
	for n := 1; n <= events; n++ {
		ack, err := pub.Publish(ctx, "stress", "message", map[string]int{"n": n})
		if err != nil {
			t.Fatalf("publish %d: %v", n, err)
		}
		if ack.Duplicate {
			dupAcks++
		}
		time.Sleep(pace)
	}
	pubDone.Store(true)
	publishTime := time.Since(start)
	wg.Wait()

	totalOpens, dupes := 0, uint64(0)
	for i, c := range clients {
		ev := recs[i].wait(t, fmt.Sprintf("all %d events at client %d", events, i), countMessages(events))
		checkSequence(t, fmt.Sprintf("client %d", i), numbers(t, ev), 1, events)
		for _, e := range ev {
			if e.RecoveryFailed {
				t.Errorf("client %d got a RecoveryFailed notice; the history holds every event", i)
				break
			}
		}
		_, opens, _ := c.connInfo()
		totalOpens += opens
		c.mu.Lock()
		dupes += c.dupes
		c.mu.Unlock()
	}
	_, pubOpens, _ := pub.connInfo()
	reconnects := totalOpens - receivers + pubOpens - 1
	if reconnects < 1000 {
		t.Errorf("only %d reconnects; the test is meant to make thousands", reconnects)
	}
	t.Logf("%d events to %d subscribers in %s; cuts: %s %d, %s %d, %s %d; reconnects %d (publisher %d); "+
		"publishes acked as duplicate after a re-send %d; events dropped by the client as already seen %d",
		events, receivers, publishTime.Round(time.Millisecond),
		cutKinds[0], cuts[0].Load(), cutKinds[1], cuts[1].Load(), cutKinds[2], cuts[2].Load(),
		reconnects, pubOpens-1, dupAcks, dupes)
}

// TestRecoveryStressHeartbeat cuts clients by heartbeat timeout: each in
// turn stops answering the server's pings, the server closes with 4008
// after its pong timeout, and the client reconnects and recovers.
func TestRecoveryStressHeartbeat(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const (
		receivers = 4
		rounds    = 2 // heartbeat cuts per client
	)
	ts := startServer(t, "", server.Config{Hub: hub.Options{History: engine.HistoryPolicy{Size: 100000}}, Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type rc struct {
		c      *Client
		rec    *recorder
		states *stateLog
	}
	var all []rc
	for range receivers {
		states := newStateLog()
		c := connect(t, ts.url(), fast(&Options{OnState: states.record}))
		rec := newRecorder()
		if _, err := c.Subscribe(ctx, "hb", rec.handle); err != nil {
			t.Fatal(err)
		}
		all = append(all, rc{c, rec, states})
	}

	stop := make(chan struct{})
	published := make(chan int)
	go func() { // a steady stream from the server API throughout
		n := 0
		defer func() { published <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			n++
			ts.publish("hb", map[string]int{"n": n})
		}
	}()

	var wg sync.WaitGroup
	for i, x := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 1; round <= rounds; round++ {
				if !x.c.ignorePings() {
					t.Errorf("client %d: no connection to make deaf to pings", i)
					return
				}
				err := x.states.waitFor(t, StateReconnecting, round)
				if code := closeCodeOf(err); code != protocol.CloseHeartbeatTimeout {
					t.Errorf("client %d round %d: reconnecting after %v, want close 4008", i, round, err)
				}
				x.states.waitFor(t, StateOpen, round+1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := <-published
	for i, x := range all {
		ev := x.rec.wait(t, fmt.Sprintf("all %d events at client %d", n, i), countMessages(n))
		checkSequence(t, fmt.Sprintf("client %d", i), numbers(t, ev), 1, n)
	}
	t.Logf("%d heartbeat-timeout cuts (close 4008) across %d clients; %d events each received exactly once, in order",
		receivers*rounds, receivers, n)
}
