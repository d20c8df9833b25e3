package hub

import (
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Join/leave announcements are rate-limited per room and per causing
// connection in that room. Within both budgets a user_joined or user_left
// goes out at once, as it always has. Beyond either, it is held and sent
// with the room's other held announcements at the end of a window; a join
// and a leave of one connection held in the same window cancel out. So a
// few connections churning through subscribe and unsubscribe cost each
// member about the room's rate plus one announcement per churner per
// window, instead of one per subscribe and one per unsubscribe. A
// connection joining many rooms (a reconnect re-subscribing) uses one
// announcement of each room's budget and is not held.

// Defaults for join/leave announcement limits.
const (
	// DefaultJoinLeaveRate is how many announcements per second one room
	// sends at once (burst twice that).
	DefaultJoinLeaveRate = 20
	// DefaultJoinLeaveWindow is how long held announcements wait.
	DefaultJoinLeaveWindow = time.Second
)

// A connection may cause connBurst announcements in one room at once (two
// joins and two leaves), and one more every connEvery.
const (
	connBurst = 4
	connEvery = 2 * time.Second
)

// joinLeaveLimiter holds the budgets and held announcements. Its methods
// are called with the room's subLock held, which keeps a room's
// announcements in order; mu guards the map and the connections' budgets.
type joinLeaveLimiter struct {
	h      *Hub
	rate   float64 // per room per second; 0: no limit
	window time.Duration

	mu    sync.Mutex
	rooms map[string]*jlRoom
}

// jlRoom is one room's announcement budget and what it holds back.
type jlRoom struct {
	tokens  float64
	last    time.Time
	held    map[string]int // connection id -> index in order
	order   []heldJL
	conns   map[string]*jlBudget // per causing connection; dropped once full again
	armed   bool
	expired bool // the timer found nothing to do: drop the entry next time
}

type heldJL struct {
	typ    string
	c      *Client
	cancel bool // cancelled by the connection's opposite announcement
}

// jlBudget is a connection's announcement budget in one room.
type jlBudget struct {
	tokens float64
	last   time.Time
}

func newJoinLeaveLimiter(h *Hub, opts Options) *joinLeaveLimiter {
	l := &joinLeaveLimiter{h: h, rooms: make(map[string]*jlRoom), window: opts.JoinLeaveWindow}
	if opts.JoinLeaveRate > 0 {
		l.rate = float64(opts.JoinLeaveRate)
	}
	return l
}

func refill(tokens *float64, last *time.Time, rate, burst float64, now time.Time) {
	if last.IsZero() {
		*tokens = burst
	} else {
		*tokens = min(*tokens+now.Sub(*last).Seconds()*rate, burst)
	}
	*last = now
}

// admit decides c's announcement typ in room: true to send it now; false
// when it was held (or cancelled a held opposite one).
func (l *joinLeaveLimiter) admit(room, typ string, c *Client, now time.Time) bool {
	if l.rate == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		r = &jlRoom{}
		l.rooms[room] = r
	}
	r.expired = false
	refill(&r.tokens, &r.last, l.rate, 2*l.rate, now)
	b := r.conns[c.id]
	if b == nil {
		if r.conns == nil {
			r.conns = make(map[string]*jlBudget)
		}
		b = &jlBudget{}
		r.conns[c.id] = b
	}
	refill(&b.tokens, &b.last, 1/connEvery.Seconds(), connBurst, now)
	if i, ok := r.held[c.id]; ok {
		// Held announcements of c go out in order; an opposite one
		// cancels: members saw neither, and the membership is as before.
		if r.order[i].typ != typ {
			r.order[i].cancel = true
			delete(r.held, c.id)
			return false
		}
	}
	if r.tokens >= 1 && b.tokens >= 1 && len(r.held) == 0 {
		r.tokens--
		b.tokens--
		l.arm(room, r)
		return true
	}
	if r.held == nil {
		r.held = make(map[string]int)
	}
	r.held[c.id] = len(r.order)
	r.order = append(r.order, heldJL{typ: typ, c: c})
	l.arm(room, r)
	return false
}

// arm starts the room's window timer unless it runs; it also retires the
// room's entry once a window passes with nothing sent or held.
func (l *joinLeaveLimiter) arm(room string, r *jlRoom) {
	if !r.armed {
		r.armed = true
		time.AfterFunc(l.window, func() { l.flush(room) })
	}
}

// flush sends what room held, under the room's subLock like any other
// announcement.
func (l *joinLeaveLimiter) flush(room string) {
	h := l.h
	sl := &h.subLocks[h.hash(room)%numSubLocks]
	sl.Lock()
	defer sl.Unlock()
	l.mu.Lock()
	r := l.rooms[room]
	if r == nil {
		l.mu.Unlock()
		return
	}
	order := r.order
	r.order, r.held, r.armed = nil, nil, false
	now := time.Now()
	for id, b := range r.conns { // forget connections that earned their burst back
		if refill(&b.tokens, &b.last, 1/connEvery.Seconds(), connBurst, now); b.tokens >= connBurst {
			delete(r.conns, id)
		}
	}
	if len(order) == 0 {
		if r.expired {
			delete(l.rooms, room) // a whole window without announcements
		} else {
			r.expired = true
			l.arm(room, r)
		}
	} else {
		r.expired = false
		l.arm(room, r)
	}
	l.mu.Unlock()
	if h.closing.Load() {
		return
	}
	for _, a := range order {
		if !a.cancel {
			h.publishJoinLeave(room, a.typ, a.c)
		}
	}
}

// publishJoinLeave sends one announcement to the room on every node. It is
// best effort: a failure is counted, not returned.
func (h *Hub) publishJoinLeave(room, typ string, c *Client) {
	ctx, cancel := h.engineContext()
	defer cancel()
	_, err := h.eng.Publish(ctx, room, &engine.Publication{
		Type: typ, UserID: c.userID, ClientID: c.id, Ephemeral: true,
		Data: protocol.EncodeData(JoinLeaveData{ConnectionID: c.id}),
	}, engine.PublishOptions{})
	if err != nil {
		h.stats.engineErrors.Add(1)
	}
}
