package hub

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// presenceView replays the join/leave announcements a member received into
// the set of connections it believes are in the room.
func presenceView(t *testing.T, s *fakeSink, start map[string]bool) map[string]bool {
	t.Helper()
	view := make(map[string]bool, len(start))
	for k := range start {
		view[k] = true
	}
	for _, m := range s.msgs(t) {
		var d JoinLeaveData
		switch m.Type {
		case protocol.TypeUserJoined:
			_ = json.Unmarshal(m.Data, &d)
			view[d.ConnectionID] = true
		case protocol.TypeUserLeft:
			_ = json.Unmarshal(m.Data, &d)
			delete(view, d.ConnectionID)
		}
	}
	return view
}

// Five connections churning subscribe/unsubscribe in a room cost a member
// a bounded number of frames, not two per churn, and the member's view of
// who is in the room still ends up right.
func TestJoinLeaveChurnIsBounded(t *testing.T) {
	const churners, rounds = 5, 200
	window := 100 * time.Millisecond
	for _, tc := range []struct {
		name      string
		rate      int
		maxFrames int // announcements the bystander may get
	}{
		// Unlimited, as before: every subscribe and unsubscribe is sent.
		{"unlimited", -1, 2 * churners * rounds},
		// Each churner's 4 at once, within the room's burst (40), then at
		// most one per churner per window; the churn takes well under a
		// second here, so a generous bound of 40 + 20 (rate) + 5 per window
		// for 2 s.
		{"limited", 20, 40 + 20*2 + churners*int(2*time.Second/window)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t, Options{JoinLeaveRate: tc.rate, JoinLeaveWindow: window})
			by, bs := connect(t, h, "bystander")
			subscribe(t, by, bs, "chat:churn")
			var cs []*Client
			var sinks []*fakeSink
			for i := 0; i < churners; i++ {
				c, s := connect(t, h, fmt.Sprint("churner", i))
				cs, sinks = append(cs, c), append(sinks, s)
			}
			start := time.Now()
			for r := 0; r < rounds; r++ {
				for i, c := range cs {
					send(c, `{"type":"subscribe","id":"s","room":"chat:churn"}`)
					if r < rounds-1 || i%2 == 0 { // odd churners end outside the room
						send(c, `{"type":"unsubscribe","id":"u","room":"chat:churn"}`)
					}
				}
			}
			churn := time.Since(start)
			for i, s := range sinks {
				if n := s.count(t, protocol.TypeError); n != 0 {
					t.Fatalf("churner %d got %d errors: %s", i, n, s.dump(t))
				}
			}
			want := map[string]bool{}
			for i, c := range cs {
				if i%2 == 1 {
					want[c.ID()] = true
				}
			}
			// Held announcements go out within a window or two.
			deadline := time.Now().Add(5 * time.Second)
			var view map[string]bool
			for {
				view = presenceView(t, bs, nil)
				if fmt.Sprint(view) == fmt.Sprint(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(window / 2)
			}
			if fmt.Sprint(view) != fmt.Sprint(want) {
				t.Errorf("bystander's view of the room %v, want %v", view, want)
			}
			time.Sleep(2 * window) // nothing more arrives
			n := bs.count(t, protocol.TypeUserJoined) + bs.count(t, protocol.TypeUserLeft)
			t.Logf("%s: %d churns in %s, %d announcements to the bystander", tc.name, 2*churners*rounds, churn.Round(time.Millisecond), n)
			if n > tc.maxFrames {
				t.Errorf("bystander got %d announcements, want at most %d", n, tc.maxFrames)
			}
			if tc.rate > 0 && n >= churners*rounds/4 {
				t.Errorf("limited: %d announcements is not bounded", n)
			}
		})
	}
}

// At a normal pace every join and leave is announced at once, in order.
func TestJoinLeaveNormalPaceIsImmediate(t *testing.T) {
	h := newHub(t, Options{JoinLeaveWindow: time.Hour}) // a held announcement would never show
	by, bs := connect(t, h, "bystander")
	subscribe(t, by, bs, "chat:calm")
	for i := 0; i < 10; i++ { // within the room's and each connection's burst
		c, s := connect(t, h, fmt.Sprint("u", i))
		subscribe(t, c, s, "chat:calm")
		send(c, `{"type":"unsubscribe","id":"u","room":"chat:calm"}`)
	}
	if j, l := bs.count(t, protocol.TypeUserJoined), bs.count(t, protocol.TypeUserLeft); j != 10 || l != 10 {
		t.Errorf("%d user_joined and %d user_left at once, want 10 and 10", j, l)
	}
	if v := presenceView(t, bs, nil); len(v) != 0 {
		t.Errorf("view %v after everyone left", v)
	}
}

// A connection joining many rooms at once (a reconnect re-subscribing)
// costs each room one announcement: none is held.
func TestJoinLeaveManyRoomsIsImmediate(t *testing.T) {
	h := newHub(t, Options{JoinLeaveWindow: time.Hour})
	by, bs := connect(t, h, "bystander")
	c, s := connect(t, h, "mover")
	const rooms = 100
	for i := 0; i < rooms; i++ {
		subscribe(t, by, bs, fmt.Sprint("chat:", i))
	}
	for i := 0; i < rooms; i++ {
		subscribe(t, c, s, fmt.Sprint("chat:", i))
	}
	c.Gone()
	if j, l := bs.count(t, protocol.TypeUserJoined), bs.count(t, protocol.TypeUserLeft); j != rooms || l != rooms {
		t.Errorf("%d user_joined and %d user_left at once, want %d each", j, l, rooms)
	}
}
