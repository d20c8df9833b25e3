package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// jwtSecret is the HS256 secret the authenticated tests share between
// their nodes (32+ bytes, as the server requires).
const jwtSecret = "e2e-cluster-secret-0123456789abcdef"

// waitAcks returns the event ids of the acks c received for reqIDs, in the order
// of reqIDs (or "error: ..." for a refused publish); it waits for all of them.
func waitAcks(t *testing.T, c *wsConn, room string, reqIDs []string) []string {
	t.Helper()
	want := make(map[string]int, len(reqIDs))
	for i, id := range reqIDs {
		want[id] = i
	}
	out := make([]string, len(reqIDs))
	ok := c.waitUntil(waitTimeout, func(msgs []msg, _ bool) bool {
		n := 0
		for _, m := range msgs {
			if i, mine := want[m.ID]; mine && (m.Type == "ack" || m.Type == "error") {
				n++
				if m.Type == "ack" {
					var d struct {
						EventID string `json:"event_id"`
					}
					_ = json.Unmarshal(m.Data, &d)
					out[i] = d.EventID
				} else {
					out[i] = "error: " + string(m.Data)
				}
			}
		}
		return n == len(reqIDs)
	})
	if !ok {
		t.Fatalf("node %s: not every publish to %s was answered within %s", c.node(), room, waitTimeout)
	}
	return out
}

// fence publishes a last event through the API and waits until every
// member has it: events still in flight (a duplicate, say) would arrive
// before it, since a room's events arrive in stream order.
func fence(t *testing.T, n *node, room string, members []*wsConn, before int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, status, b, err := broadcast(ctx, n, room, "fence", nil, ""); err != nil || status != http.StatusOK {
		t.Fatalf("fence publish: HTTP %d %s (%v)", status, b, err)
	}
	for _, m := range members {
		evs := m.waitEvents(room, before+1)
		if last := evs[len(evs)-1]; last.Type != "fence" || len(evs) != before+1 {
			t.Fatalf("member on node %s: %d events, the last %s %s; want %d events then the fence", m.node(), len(evs), last.Type, last.ID, before)
		}
	}
}

// TestSequenceAcrossNodes: a numbered sequence published over a socket on
// node 1 reaches members on every node (node 1 included) in order, exactly
// once, with the ids the publisher was acknowledged.
func TestSequenceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	const room, total = "order:seq", 300
	var members []*wsConn
	for _, n := range nodes {
		for range 2 {
			m := mustDial(t, n.wsURL(), dialOptions{})
			m.subscribe(room, "")
			members = append(members, m)
		}
	}
	pub := mustDial(t, nodes[0].wsURL(), dialOptions{})
	reqIDs := make([]string, total)
	for i := range total {
		reqIDs[i] = fmt.Sprintf("seq-publish-%04d-%s", i, pub.connID())
		pub.mustSend(map[string]any{"type": "seq", "id": reqIDs[i], "room": room, "data": seqData{N: i}})
	}
	acked := waitAcks(t, pub, room, reqIDs)
	for _, m := range members {
		m.waitEvents(room, total)
	}
	fence(t, nodes[1], room, members, total)
	for _, m := range members {
		evs := m.events(room)[:total]
		who := "member on node " + m.node()
		checkSequence(t, who, evs, total)
		if got := ids(evs); !slices.Equal(got, acked) {
			t.Errorf("%s: event ids differ from the acknowledged ones (first: %s vs %s)", who, got[0], acked[0])
		}
	}
}

// TestTotalOrderAcrossNodes: publishers on all three nodes publish to one
// room at the same time. Every member, whatever its node, sees the same
// events in the same order (the same event ids), each publisher's events
// in the order it sent them, with no gap in the offsets.
func TestTotalOrderAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	const room, each = "order:interleaved", 150
	var members []*wsConn
	for _, n := range nodes {
		for range 2 {
			m := mustDial(t, n.wsURL(), dialOptions{})
			m.subscribe(room, "")
			members = append(members, m)
		}
	}
	pubs := make([]*wsConn, len(nodes))
	for i, n := range nodes {
		pubs[i] = mustDial(t, n.wsURL(), dialOptions{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(pubs))
	reqIDs := make([][]string, len(pubs))
	for p, c := range pubs {
		reqIDs[p] = make([]string, each)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("p%d-%04d-%s", p, i, c.connID())
				reqIDs[p][i] = id
				if err := c.send(map[string]any{"type": "seq", "id": id, "room": room, "data": seqData{Pub: "p" + strconv.Itoa(p), N: i}}); err != nil {
					errs <- fmt.Errorf("publisher %d: %w", p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p, c := range pubs {
		for _, a := range waitAcks(t, c, room, reqIDs[p]) {
			if _, ok := protocol.ParseEventID(a); !ok {
				t.Fatalf("publisher on node %s: %s", c.node(), a)
			}
		}
	}
	const total = 3 * each
	fence(t, nodes[2], room, members, total)

	reference := ids(members[0].events(room)[:total])
	for _, m := range members {
		who := "member on node " + m.node()
		evs := m.events(room)[:total]
		if got := ids(evs); !slices.Equal(got, reference) {
			for i := range got {
				if got[i] != reference[i] {
					t.Errorf("%s: event %d is %s, but a member on node %s has %s there: members disagree on the order", who, i, got[i], members[0].node(), reference[i])
					break
				}
			}
			continue
		}
		next := map[string]int{}
		var prev protocol.StreamPosition
		for i, e := range evs {
			d := e.seq(t)
			if d.N != next[d.Pub] {
				t.Errorf("%s: %s's event n=%d at position %d, want n=%d (per-publisher order)", who, d.Pub, d.N, i, next[d.Pub])
				break
			}
			next[d.Pub]++
			pos, _ := protocol.ParseEventID(e.ID)
			if i > 0 && (pos.Epoch != prev.Epoch || pos.Offset != prev.Offset+1) {
				t.Errorf("%s: %s follows %s: offsets must be consecutive", who, e.ID, prev.EventID())
				break
			}
			prev = pos
		}
	}
}

// presenceAPI asks n's API for room's presence.
func presenceAPI(t *testing.T, n *node, room string) presence {
	t.Helper()
	var api presence
	mustAPI(t, n, http.MethodGet, "/api/rooms/"+url.PathEscape(room)+"/presence", nil, &api)
	users := map[string]bool{}
	for _, m := range api.Members {
		users[m.UserID] = true
	}
	if api.Users != len(users) || api.Clients != len(api.Members) {
		t.Errorf("node %s: presence counts %d clients, %d users disagree with its own list %+v", n.name, api.Clients, api.Users, api.Members)
	}
	return api
}

// presenceVia asks n for room's presence twice, over a socket on n and
// through n's API, checks that both agree, and returns the answer. Use it
// only while presence is stable: an entry that expires between the two
// questions makes them differ.
func presenceVia(t *testing.T, n *node, c *wsConn, room string) presence {
	t.Helper()
	api := presenceAPI(t, n, room)
	m := c.request("presence", room, nil)
	if m.Type != "presence_result" {
		t.Fatalf("node %s: presence answered %s %s", n.name, m.Type, m.Data)
	}
	var sock presence
	if err := json.Unmarshal(m.Data, &sock); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(api.connIDs(), sock.connIDs()) || api.Users != sock.Users || api.Clients != sock.Clients {
		t.Errorf("node %s: the API says %+v, the socket %+v", n.name, api, sock)
	}
	return api
}

// TestPresenceAcrossNodes: every node reports the same presence for a
// room whose members are spread over the cluster; when a node is killed,
// its connections leave the presence of the others within the presence
// TTL (3 s here), while the survivors' entries, refreshed, stay.
func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "--jwt-secret", jwtSecret)
	const room = "presence:lobby"
	users := [][]string{{"alice", "bob"}, {"alice", "carol"}, {"dave", "erin"}} // per node
	conns := make([][]*wsConn, len(nodes))
	var all []string
	for i, n := range nodes {
		for _, u := range users[i] {
			c := mustDial(t, n.wsURL(), dialOptions{token: mintToken(t, jwtSecret, u)})
			c.subscribe(room, "")
			conns[i] = append(conns[i], c)
			all = append(all, c.connID())
		}
	}
	sortStrings(all)
	for i, n := range nodes {
		p := presenceVia(t, n, conns[i][0], room)
		if got := p.connIDs(); !slices.Equal(got, all) || p.Clients != 6 || p.Users != 5 {
			t.Errorf("node %s: presence %v (clients %d, users %d), want %v (6 clients, 5 users)", n.name, got, p.Clients, p.Users, all)
		}
		var counts presence
		mustAPI(t, n, http.MethodGet, "/api/rooms/"+url.PathEscape(room)+"/presence?counts_only=1", nil, &counts)
		if counts.Clients != 6 || counts.Users != 5 || len(counts.Members) != 0 {
			t.Errorf("node %s: counts_only answered %+v, want 6 clients, 5 users, no list", n.name, counts)
		}
	}

	var survivors []string
	for _, c := range append(conns[0], conns[1]...) {
		survivors = append(survivors, c.connID())
	}
	sortStrings(survivors)
	killed := time.Now()
	nodes[2].kill()
	// The entries expire 3 s after the dead node's last refresh; the bound
	// leaves room for a loaded machine.
	var last presence
	err := pollUntil(15*time.Second, 100*time.Millisecond, func() bool {
		// The API alone while entries expire (see presenceVia).
		last = presenceAPI(t, nodes[0], room)
		return slices.Equal(last.connIDs(), survivors)
	})
	if err != nil {
		t.Fatalf("15 s after node %s died its members are still present: %v", nodes[2].name, last.connIDs())
	}
	t.Logf("the killed node's connections left presence %s after SIGKILL (presence TTL 3 s)", time.Since(killed).Round(10*time.Millisecond))
	if last.Users != 3 {
		t.Errorf("users after the kill: %d, want 3 (alice, bob, carol)", last.Users)
	}
	// What the survivors were told (docs/scaling.md: no user_left comes
	// for a crashed node's connections).
	left := 0
	for _, m := range conns[0][0].all() {
		if m.Type == "user_left" {
			left++
		}
	}
	t.Logf("user_left notices a survivor got for the dead node's 2 connections: %d", left)
	// Survivors' entries outlive the TTL: their nodes refresh them.
	time.Sleep(4 * time.Second)
	for i, n := range nodes[:2] {
		if p := presenceVia(t, n, conns[i][0], room); !slices.Equal(p.connIDs(), survivors) {
			t.Errorf("node %s, 4 s later: presence %v, want %v", n.name, p.connIDs(), survivors)
		}
	}
}

// TestUserCommandsAcrossNodes: the API of one node sends to, and
// disconnects, a user's connections on the other nodes, and no one
// else's; a connection-level disconnect finds its connection wherever it
// is.
func TestUserCommandsAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "--jwt-secret", jwtSecret)
	alice2 := mustDial(t, nodes[1].wsURL(), dialOptions{token: mintToken(t, jwtSecret, "alice")})
	alice3 := mustDial(t, nodes[2].wsURL(), dialOptions{token: mintToken(t, jwtSecret, "alice")})
	bob2 := mustDial(t, nodes[1].wsURL(), dialOptions{token: mintToken(t, jwtSecret, "bob")})
	bob3 := mustDial(t, nodes[2].wsURL(), dialOptions{token: mintToken(t, jwtSecret, "bob")})

	var sent struct {
		Recipients int `json:"recipients"`
	}
	mustAPI(t, nodes[0], http.MethodPost, "/api/users/alice/send", map[string]any{"type": "dm", "data": map[string]string{"text": "for alice"}}, &sent)
	if sent.Recipients != 0 {
		t.Errorf("recipients %d on node %s, which holds none of alice's connections; want 0 (the count is local)", sent.Recipients, nodes[0].name)
	}
	mustAPI(t, nodes[0], http.MethodPost, "/api/users/bob/send", map[string]any{"type": "dm", "data": map[string]string{"text": "for bob"}}, nil)
	isDM := func(text string) func(msg) bool {
		return func(m msg) bool {
			var d struct {
				Text string `json:"text"`
			}
			return m.Type == "dm" && json.Unmarshal(m.Data, &d) == nil && d.Text == text
		}
	}
	for _, c := range []*wsConn{alice2, alice3} {
		if _, ok := c.waitMsg(waitTimeout, isDM("for alice")); !ok {
			t.Errorf("alice on node %s did not get her message: %v", c.node(), c.all())
		}
	}
	for _, c := range []*wsConn{bob2, bob3} {
		if _, ok := c.waitMsg(waitTimeout, isDM("for bob")); !ok {
			t.Errorf("bob on node %s did not get his message: %v", c.node(), c.all())
		}
		// Control commands arrive in order: alice's came first, so had bob
		// got it, it would be here by now.
		for _, m := range c.all() {
			if isDM("for alice")(m) {
				t.Errorf("bob on node %s got alice's message", c.node())
			}
		}
	}

	mustAPI(t, nodes[0], http.MethodPost, "/api/users/alice/disconnect", map[string]any{"code": 4006, "reason": "bye alice"}, nil)
	for _, c := range []*wsConn{alice2, alice3} {
		code, ok := c.waitClosed(waitTimeout)
		if !ok || code != 4006 {
			t.Errorf("alice on node %s: closed %v with code %d, want 4006", c.node(), ok, code)
		}
		d, ok := c.waitMsg(0, func(m msg) bool { return m.Type == "disconnect" })
		var dd struct {
			Code      int    `json:"code"`
			Reason    string `json:"reason"`
			Reconnect bool   `json:"reconnect"`
		}
		if !ok || json.Unmarshal(d.Data, &dd) != nil || dd.Code != 4006 || dd.Reason != "bye alice" || dd.Reconnect {
			t.Errorf("alice on node %s: disconnect event %v %s, want code 4006, reason \"bye alice\", reconnect false", c.node(), ok, d.Data)
		}
	}
	for _, c := range []*wsConn{bob2, bob3} {
		if m := c.request("ping", "", nil); m.Type != "pong" {
			t.Errorf("bob on node %s: ping answered %s after alice's disconnect", c.node(), m.Type)
		}
	}

	// One connection, by id, from a node it is not on.
	mustAPI(t, nodes[0], http.MethodPost, "/api/connections/"+bob3.connID()+"/disconnect", map[string]any{"code": 4000, "reason": "session replaced"}, nil)
	if code, ok := bob3.waitClosed(waitTimeout); !ok || code != 4000 {
		t.Errorf("bob on node %s: closed %v with code %d, want 4000", bob3.node(), ok, code)
	}
	if m := bob2.request("ping", "", nil); m.Type != "pong" {
		t.Errorf("bob's other connection, on node %s: ping answered %s", bob2.node(), m.Type)
	}
}

// statsAnswer is GET /api/stats.
type statsAnswer struct {
	Node struct {
		Node        string `json:"node"`
		Connections int64  `json:"connections"`
	} `json:"node"`
	Nodes []struct {
		Node        string `json:"node"`
		Connections int64  `json:"connections"`
	} `json:"nodes"`
	Cluster *struct {
		Nodes        int    `json:"nodes"`
		Connections  int64  `json:"connections"`
		Publications uint64 `json:"publications"`
	} `json:"cluster"`
}

// TestStatsAcrossNodes: each node's /api/stats reports its own
// connections, and lists every node of the cluster with cluster-wide
// totals (nodes report every 5 s, so the totals may lag that much).
func TestStatsAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	for i, n := range nodes {
		for range i + 1 { // 1, 2 and 3 connections
			mustDial(t, n.wsURL(), dialOptions{})
		}
	}
	for i, n := range nodes {
		var st statsAnswer
		mustAPI(t, n, http.MethodGet, "/api/stats", nil, &st)
		if st.Node.Node != n.name || st.Node.Connections != int64(i+1) {
			t.Errorf("node %s: stats of %q with %d connections, want %q with %d", n.name, st.Node.Node, st.Node.Connections, n.name, i+1)
		}
	}
	var st statsAnswer
	err := pollUntil(20*time.Second, 250*time.Millisecond, func() bool {
		st = statsAnswer{}
		mustAPI(t, nodes[0], http.MethodGet, "/api/stats", nil, &st)
		return st.Cluster != nil && st.Cluster.Nodes == 3 && st.Cluster.Connections == 6
	})
	if err != nil {
		t.Fatalf("node %s never reported the cluster: %+v (want 3 nodes, 6 connections)", nodes[0].name, st)
	}
	var names []string
	for _, s := range st.Nodes {
		names = append(names, s.Node)
	}
	sortStrings(names)
	if !slices.Equal(names, []string{"n1", "n2", "n3"}) {
		t.Errorf("nodes listed: %v, want n1 n2 n3", names)
	}
}
