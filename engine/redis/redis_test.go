package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestEngineSuite runs the shared engine contract against Redis, each
// subtest under its own key prefix.
func TestEngineSuite(t *testing.T) {
	testRedisAddr(t)
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{})
	})
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // substring of the error; "" = valid
	}{
		{"zero value", Options{}, ""},
		{"sentinel", Options{SentinelMasterSet: "m", SentinelAddrs: []string{"127.0.0.1:26379"}}, ""},
		{"cluster", Options{ClusterAddrs: []string{"127.0.0.1:7000"}}, ""},
		{"sentinel without addrs", Options{SentinelMasterSet: "m"}, "go together"},
		{"sentinel addrs without set", Options{SentinelAddrs: []string{"x:1"}}, "go together"},
		{"sentinel and cluster", Options{SentinelMasterSet: "m", SentinelAddrs: []string{"x:1"}, ClusterAddrs: []string{"y:1"}}, "not both"},
		{"cluster with DB", Options{ClusterAddrs: []string{"y:1"}, DB: 2}, "database 0"},
		{"negative DB", Options{DB: -1}, "negative"},
		{"negative position TTL", Options{PositionTTL: -time.Second}, "negative"},
		{"presence TTL too short", Options{PresenceTTL: 500 * time.Millisecond}, "minimum"},
		{"CA file without TLS", Options{TLSCAFile: "/x.pem"}, "needs TLS"},
		{"TLS with system roots", Options{TLS: true}, ""},
		{"hash tag in prefix", Options{KeyPrefix: "sb{x}:"}, "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				e.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	o := e.opts
	if o.Addr != DefaultAddr || o.KeyPrefix != DefaultKeyPrefix || o.PresenceTTL != DefaultPresenceTTL ||
		o.PositionTTL != DefaultPositionTTL || o.ConnectTimeout != DefaultConnectTimeout || o.NodeID == "" {
		t.Errorf("defaults not applied: %+v", o)
	}
}

func TestMethodsBeforeRun(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.Publish(ctx, "r", &engine.Publication{}, engine.PublishOptions{}); err == nil {
		t.Error("Publish before Run succeeded")
	}
	if err := e.Subscribe(ctx, "r"); err == nil {
		t.Error("Subscribe before Run succeeded")
	}
	if err := e.Ready(ctx); err == nil {
		t.Error("Ready before Run = nil")
	}
}

func TestTLSCAFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.pem"
	mustNoErr(t, writeFile(bad, "not a certificate"), "write")
	tests := []struct{ name, file, want string }{
		{"missing", dir + "/none.pem", "read TLS CA file"},
		{"not PEM", bad, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{TLS: true, TLSCAFile: tt.file})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRunFailsWithoutRedis(t *testing.T) {
	// A loopback port nobody listens on: Run must give up after
	// ConnectTimeout with the cause, not hang.
	p := freePort(t)
	e, err := New(Options{Addr: p, ConnectTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = e.Run(context.Background(), enginetest.NewRecorder())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run = %v, want a connection error", err)
	}
	if err := e.Ready(context.Background()); err == nil {
		t.Error("Ready = nil without Redis")
	}
}

func TestRunTwice(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	if err := e.Run(context.Background(), enginetest.NewRecorder()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestTwoNodes checks what crosses between nodes sharing a Redis: room
// events only to nodes that subscribed, ephemeral events, control
// messages to every node.
func TestTwoNodes(t *testing.T) {
	prefix := testPrefix()
	a, b := newTestEngine(t, Options{KeyPrefix: prefix}), newTestEngine(t, Options{KeyPrefix: prefix})
	ra, rb := enginetest.NewRecorder(), enginetest.NewRecorder()
	startEngine(t, a, ra)
	startEngine(t, b, rb)
	ctx := context.Background()
	room := "chat:1"
	mustNoErr(t, a.Subscribe(ctx, room), "subscribe a")

	res, err := b.Publish(ctx, room, &engine.Publication{Type: "message", Data: json.RawMessage(`{"x":1}`), UserID: "u"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
	mustNoErr(t, err, "publish from b")
	eph := &engine.Publication{Type: protocol.TypeUserJoined, UserID: "u", ClientID: "c", Ephemeral: true}
	_, err = b.Publish(ctx, room, eph, engine.PublishOptions{})
	mustNoErr(t, err, "ephemeral from b")
	waitFor(t, 5*time.Second, "a to get both events", func() bool { return ra.Count(room) >= 2 })
	got := ra.Get(room)
	if got[0].Position != res.Position || string(got[0].Data) != `{"x":1}` || got[0].UserID != "u" {
		t.Errorf("a got %+v, want the event at %+v", got[0], res.Position)
	}
	if !got[1].Ephemeral || got[1].Type != protocol.TypeUserJoined || got[1].ClientID != "c" || got[1].Time <= 0 {
		t.Errorf("a got ephemeral %+v", got[1])
	}

	// Both nodes see a's history (it is in Redis, not in a).
	h, err := b.History(ctx, room, engine.HistoryQuery{}, engine.HistoryPolicy{Size: 10})
	mustNoErr(t, err, "history on b")
	if len(h.Publications) != 1 || h.Latest != res.Position {
		t.Errorf("history on b = %+v", h)
	}

	msg := []byte(`{"op":"kick"}`)
	mustNoErr(t, a.PublishControl(ctx, msg), "control")
	waitFor(t, 5*time.Second, "control on both nodes", func() bool { return ra.HasControl(msg) && rb.HasControl(msg) })

	// b never subscribed the room: barrier on a room b subscribes shows
	// nothing of room was queued for b.
	mustNoErr(t, b.Subscribe(ctx, "barrier"), "subscribe barrier")
	_, err = a.Publish(ctx, "barrier", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	mustNoErr(t, err, "publish barrier")
	waitFor(t, 5*time.Second, "barrier on b", func() bool { return rb.Count("barrier") == 1 })
	if n := rb.Count(room); n != 0 {
		t.Errorf("b got %d events of a room it did not subscribe", n)
	}
}

// TestEpochLivesInRedis: a new engine (a restarted node) continues the
// same stream; losing the stream's keys starts a new epoch and History
// reports old positions as unrecoverable.
func TestEpochLivesInRedis(t *testing.T) {
	prefix := testPrefix()
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 10}
	a := newTestEngine(t, Options{KeyPrefix: prefix})
	startEngine(t, a, enginetest.NewRecorder())
	r1, err := a.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
	mustNoErr(t, err, "publish")
	a.Close()

	b := newTestEngine(t, Options{KeyPrefix: prefix})
	startEngine(t, b, enginetest.NewRecorder())
	r2, err := b.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
	mustNoErr(t, err, "publish")
	if r2.Position != (protocol.StreamPosition{Offset: 2, Epoch: r1.Position.Epoch}) {
		t.Fatalf("after an engine restart: %+v, want offset 2 in epoch %q", r2.Position, r1.Position.Epoch)
	}

	// Redis loses the room's keys.
	c := rawClient(t, b.opts.Addr)
	mustNoErr(t, c.Do(ctx, c.B().Del().Key(b.key("r", ":m"), b.key("r", ":h")).Build()).Error(), "del")
	r3, err := b.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy})
	mustNoErr(t, err, "publish")
	if r3.Position.Offset != 1 || r3.Position.Epoch == r1.Position.Epoch || r3.Position.Epoch == "" {
		t.Fatalf("after losing the stream: %+v, want offset 1 in a new epoch", r3.Position)
	}
	h, err := b.History(ctx, "r", engine.HistoryQuery{Since: r2.Position}, policy)
	mustNoErr(t, err, "history")
	if h.Complete || h.Latest != r3.Position {
		t.Errorf("History since a lost position = %+v, want incomplete, latest %+v", h, r3.Position)
	}
}

// TestStoredKeys checks the Redis side: history trimmed (approximately:
// whole stream nodes of 100 entries) while reads see exactly Size events,
// and every key with a TTL so that idle rooms cost nothing forever.
func TestStoredKeys(t *testing.T) {
	e := newTestEngine(t, Options{PositionTTL: time.Hour})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	c := rawClient(t, e.opts.Addr)
	policy := engine.HistoryPolicy{Size: 7, TTL: time.Minute}
	for i := 0; i < 250; i++ {
		_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: policy, IdempotencyKey: "k" + strconv.Itoa(i), IdempotencyTTL: 30 * time.Second})
		mustNoErr(t, err, "publish")
	}
	n, err := c.Do(ctx, c.B().Xlen().Key(e.key("r", ":h")).Build()).AsInt64()
	mustNoErr(t, err, "xlen")
	if n < 7 || n > 7+100 {
		t.Errorf("history stream holds %d entries, want Size=7 up to one stream node (100) more", n)
	}
	h, err := e.History(ctx, "r", engine.HistoryQuery{}, policy)
	mustNoErr(t, err, "history")
	if len(h.Publications) != 7 || h.Publications[0].Position.Offset != 244 {
		t.Errorf("history returns %d events from offset %d, want the newest 7 (244..250)", len(h.Publications), h.Publications[0].Position.Offset)
	}
	tests := []struct {
		key      string
		min, max time.Duration
	}{
		{e.key("r", ":m"), 59 * time.Minute, time.Hour},
		{e.key("r", ":h"), 59 * time.Second, time.Minute},
		{e.key("r", ":i:k0"), time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		ms, err := c.Do(ctx, c.B().Pttl().Key(tt.key).Build()).AsInt64()
		mustNoErr(t, err, "pttl")
		if d := time.Duration(ms) * time.Millisecond; d < tt.min || d > tt.max {
			t.Errorf("%s: TTL %s, want within [%s, %s]", tt.key, d, tt.min, tt.max)
		}
	}

	// History turned off for the room: the stream goes.
	_, err = e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	mustNoErr(t, err, "publish")
	if n, _ := c.Do(ctx, c.B().Exists().Key(e.key("r", ":h")).Build()).AsInt64(); n != 0 {
		t.Error("history stream kept after a publish with history off")
	}
}

// TestHistoryPolicyShrinks: a smaller Size on read hides events beyond it
// even before the next publish trims the stream.
func TestHistoryPolicyShrinks(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	ctx := context.Background()
	var last engine.PublishResult
	for i := 0; i < 10; i++ {
		var err error
		last, err = e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
		mustNoErr(t, err, "publish")
	}
	small := engine.HistoryPolicy{Size: 3}
	h, err := e.History(ctx, "r", engine.HistoryQuery{}, small)
	mustNoErr(t, err, "history")
	if len(h.Publications) != 3 || h.Publications[0].Position.Offset != 8 {
		t.Errorf("newest with Size 3: %d events from %+v", len(h.Publications), h.Publications)
	}
	h, err = e.History(ctx, "r", engine.HistoryQuery{Since: protocol.StreamPosition{Offset: 5, Epoch: last.Position.Epoch}}, small)
	mustNoErr(t, err, "history")
	if h.Complete {
		t.Error("since 5 with Size 3: Complete = true, want false")
	}
	h, err = e.History(ctx, "r", engine.HistoryQuery{Since: protocol.StreamPosition{Offset: 7, Epoch: last.Position.Epoch}}, small)
	mustNoErr(t, err, "history")
	if !h.Complete || len(h.Publications) != 3 {
		t.Errorf("since 7 with Size 3: %+v, want the 3 kept events", h)
	}
}

// TestGapFill drives the delivery logic directly: a room whose live
// stream skips offsets (messages lost while the pub/sub connection was
// down) gets the missing events from history first, each exactly once.
func TestGapFill(t *testing.T) {
	ctx := context.Background()
	policy := engine.HistoryPolicy{Size: 100}
	type step struct {
		live   uint64 // deliver the stored event at this offset live; 0 = resync
		expect []uint64
	}
	const (
		known   = iota // the tracker's baseline is offset from
		none           // the room had no stream when subscribed
		unknown        // no baseline
	)
	tests := []struct {
		name    string
		state   int
		from    uint64 // the baseline's offset when known
		oldEp   bool   // the baseline is in an epoch the stream no longer has
		history bool
		steps   []step
		gaps    []string // declared: "AFTER-OFFSET..UNTIL-OFFSET REASON"
	}{
		{"gap before a live event", known, 1, false, true, []step{{5, []uint64{2, 3, 4, 5}}, {5, nil}, {6, []uint64{6}}}, nil},
		{"no gap", known, 4, false, true, []step{{5, []uint64{5}}}, nil},
		{"duplicate after fill", known, 1, false, true, []step{{3, []uint64{2, 3}}, {2, nil}, {3, nil}}, nil},
		{"resync after reconnect", known, 2, false, true, []step{{0, []uint64{3, 4, 5, 6}}, {6, nil}}, nil},
		{"room had no stream", none, 0, false, true, []step{{3, []uint64{1, 2, 3}}}, nil},
		{"resync, room had no stream", none, 0, false, true, []step{{0, []uint64{1, 2, 3, 4, 5, 6}}}, nil},
		{"stream lost while away", known, 9, true, true, []step{{0, []uint64{1, 2, 3, 4, 5, 6}}}, []string{"9..0 stream_lost"}},
		{"new epoch seen live", known, 9, true, true, []step{{2, []uint64{1, 2}}}, []string{"9..0 stream_lost"}},
		{"unknown baseline takes events as they come", unknown, 0, false, true, []step{{4, []uint64{4}}, {6, []uint64{5, 6}}}, nil},
		{"history off: deliver and declare", known, 1, false, false, []step{{4, []uint64{4}}, {5, []uint64{5}}}, []string{"1..3 evicted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, Options{})
			rec := enginetest.NewRecorder()
			startEngine(t, e, rec)
			room := "gap"
			var stored []*engine.Publication
			for i := 1; i <= 6; i++ {
				p := &engine.Publication{Type: "m", Data: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`)}
				_, err := e.Publish(ctx, room, p, engine.PublishOptions{History: policy})
				mustNoErr(t, err, "publish")
				stored = append(stored, p)
			}
			epoch := stored[0].Position.Epoch
			if !tt.history {
				c := rawClient(t, e.opts.Addr)
				mustNoErr(t, c.Do(ctx, c.B().Del().Key(e.key(room, ":h")).Build()).Error(), "del history")
			}
			// Not registered in e.rooms: only this goroutine touches rs.
			rs := &roomSub{room: room, channel: e.channel(room)}
			rs.active.Store(true)
			switch tt.state {
			case known:
				p := protocol.StreamPosition{Offset: tt.from, Epoch: epoch}
				if tt.oldEp {
					p.Epoch = "gone"
				}
				rs.tr.Baseline(p)
			case none:
				rs.tr.Baseline(protocol.StreamPosition{})
			}
			var want []uint64
			for _, s := range tt.steps {
				if s.live == 0 {
					e.handle(item{kind: itemResync, rs: rs})
				} else {
					e.deliver(rs, stored[s.live-1])
				}
				want = append(want, s.expect...)
			}
			got := rec.Get(room)
			var offs []uint64
			for _, p := range got {
				offs = append(offs, p.Position.Offset)
			}
			if !equalOffsets(offs, want) {
				t.Fatalf("delivered offsets %v, want %v", offs, want)
			}
			for _, p := range got {
				if p.Position.Epoch != epoch || p.Type != "m" {
					t.Errorf("delivered %+v, want a stored event of epoch %q", p, epoch)
				}
			}
			var gaps []string
			for _, g := range rec.Gaps(room) {
				gaps = append(gaps, fmt.Sprintf("%d..%d %s", g.After.Offset, g.Until.Offset, g.Reason))
			}
			if fmt.Sprint(gaps) != fmt.Sprint(tt.gaps) {
				t.Errorf("declared gaps %v, want %v", gaps, tt.gaps)
			}
		})
	}
}

func equalOffsets(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUnsubscribeDropsQueued: messages of a subscription that ended are
// not delivered even if they were already queued, and a new subscription
// of the same room starts clean.
func TestUnsubscribeDropsQueued(t *testing.T) {
	e := newTestEngine(t, Options{})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx := context.Background()
	mustNoErr(t, e.Subscribe(ctx, "r"), "subscribe")
	e.roomsMu.RLock()
	old := e.rooms[e.channel("r")]
	e.roomsMu.RUnlock()
	mustNoErr(t, e.Unsubscribe(ctx, "r"), "unsubscribe")
	if old.active.Load() {
		t.Fatal("subscription still active after Unsubscribe")
	}
	// A message of the old subscription, still in a worker's queue.
	e.enqueue(old.worker, item{kind: itemPub, rs: old, msg: encodeEphemeral(&engine.Publication{Type: "late", Ephemeral: true})})
	mustNoErr(t, e.Subscribe(ctx, "r"), "subscribe again")
	_, err := e.Publish(ctx, "r", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	mustNoErr(t, err, "publish")
	waitFor(t, 5*time.Second, "the new event", func() bool { return rec.Count("r") >= 1 })
	for _, p := range rec.Get("r") {
		if p.Type == "late" {
			t.Error("a message queued for an ended subscription was delivered")
		}
	}
}

// TestSubscribeFailureLeavesNothing: a Subscribe that fails (here: its
// context is cancelled) leaves no room registered and no subscription in
// Redis, so a later Subscribe starts clean.
func TestSubscribeFailureLeavesNothing(t *testing.T) {
	e := newTestEngine(t, Options{})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Subscribe(ctx, "r"); err == nil {
		t.Fatal("Subscribe with a cancelled context succeeded")
	}
	e.roomsMu.RLock()
	n := len(e.rooms)
	e.roomsMu.RUnlock()
	if n != 0 {
		t.Errorf("%d rooms registered after a failed Subscribe", n)
	}
	c := rawClient(t, e.opts.Addr)
	res, err := c.Do(context.Background(), c.B().PubsubNumsub().Channel(e.channel("r")).Build()).AsIntMap()
	mustNoErr(t, err, "numsub")
	if res[e.channel("r")] != 0 {
		t.Errorf("Redis still has %d subscribers on the room's channel", res[e.channel("r")])
	}
	mustNoErr(t, e.Subscribe(context.Background(), "r"), "subscribe")
	_, err = e.Publish(context.Background(), "r", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	mustNoErr(t, err, "publish")
	waitFor(t, 5*time.Second, "delivery after a clean Subscribe", func() bool { return rec.Count("r") == 1 })
}

func TestClientName(t *testing.T) {
	tests := []struct{ node, want string }{
		{"abc123", "switchboard-abc123"},
		{"node 1\n", "switchboard-node_1_"},
		{"é", "switchboard-__"},
	}
	for _, tt := range tests {
		if got := clientName(tt.node); got != tt.want {
			t.Errorf("clientName(%q) = %q, want %q", tt.node, got, tt.want)
		}
	}
	// Such a name is accepted by Redis (a refused CLIENT SETNAME would fail
	// every connection).
	e := newTestEngine(t, Options{NodeID: "my node\t1"})
	startEngine(t, e, enginetest.NewRecorder())
	mustNoErr(t, e.Ready(context.Background()), "ready")
}
