package hub

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// room is the local membership of one room. Members sit in a slice so that
// fan-out walks contiguous memory; index gives O(1) removal.
type room struct {
	name    string
	mu      sync.RWMutex
	members []*member
	index   map[*Client]int
}

// member is one connection's subscription. While a subscribe or sync
// replays history, live events are parked in pending instead of being sent,
// so that the seam between history and live has no gap and no duplicate.
type member struct {
	c         *Client
	buffering atomic.Bool
	// start is the stream position the subscription began after: events at
	// or before it were replayed or predate the subscription. An engine
	// may deliver an event after Publish returned (a broker does), so its
	// live copy can arrive after the history read that already included
	// it; fan-out drops those.
	start   atomic.Pointer[protocol.StreamPosition]
	mu      sync.Mutex // guards pending
	pending []pendingEvent
}

// seen reports whether pos is at or before the member's start.
func (m *member) seen(pos protocol.StreamPosition) bool {
	if pos.Offset == 0 {
		return false // ephemeral events have no position
	}
	st := m.start.Load()
	return st != nil && pos.Offset <= st.Offset && pos.Epoch == st.Epoch
}

type pendingEvent struct {
	pos protocol.StreamPosition
	f   *protocol.Frame
}

// maxPending bounds what one recovering member may park. A room busy
// enough to exceed it while one history read runs is a slow consumer.
const maxPending = 10000

// fanout queues f to every member except the connection skip. It returns
// the number of connections it queued to.
func (r *room) fanout(f *protocol.Frame, pos protocol.StreamPosition, skip string) int {
	n := 0
	r.mu.RLock()
	for _, m := range r.members {
		if skip != "" && m.c.id == skip || m.seen(pos) {
			continue
		}
		if m.send(pos, f) {
			n++
		}
	}
	r.mu.RUnlock()
	return n
}

// send queues f, or parks it while the member's history is replayed.
func (m *member) send(pos protocol.StreamPosition, f *protocol.Frame) bool {
	if m.buffering.Load() && m.park(pos, f) {
		return true
	}
	return m.c.sink.Send(f)
}

// fanoutGap queues a stream_gap notice whose last missing position is
// until to every member whose subscription started before it.
func (r *room) fanoutGap(f *protocol.Frame, until protocol.StreamPosition) int {
	n := 0
	r.mu.RLock()
	for _, m := range r.members {
		if st := m.start.Load(); until.Epoch != "" && st != nil && st.Epoch == until.Epoch && st.Offset >= until.Offset {
			continue // subscribed after the gap: its own read covered it
		}
		if m.send(until, f) {
			n++
		}
	}
	r.mu.RUnlock()
	return n
}

// park holds a live event while history is replayed. It returns false if
// buffering ended meanwhile (the caller then sends directly).
func (m *member) park(pos protocol.StreamPosition, f *protocol.Frame) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.buffering.Load() {
		return false
	}
	if len(m.pending) >= maxPending {
		m.pending = nil
		m.buffering.Store(false)
		m.c.sink.Close(protocol.NewDisconnect(protocol.CloseSlowConsumer, "too many events during recovery"))
		return true
	}
	m.pending = append(m.pending, pendingEvent{pos, f})
	return true
}

// release sends the parked events that come after last (or all of them if
// they belong to another epoch) and switches the member to live delivery.
func (m *member) release(last protocol.StreamPosition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last.Epoch != "" {
		m.start.Store(&last)
	}
	for _, p := range m.pending {
		if m.seen(p.pos) {
			continue // already part of the replayed history
		}
		m.c.sink.Send(p.f)
	}
	m.pending = nil
	m.buffering.Store(false)
}

func (h *Hub) lookupRoom(name string) *room {
	sh := h.roomShard(name)
	sh.mu.RLock()
	r := sh.rooms[name]
	sh.mu.RUnlock()
	return r
}

// RoomSize returns the number of local connections in room.
func (h *Hub) RoomSize(name string) int {
	r := h.lookupRoom(name)
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.members)
}

// join adds c to room name, subscribing the engine when it is the room's
// first local member. With buffering set, live events are parked until
// member.release. It returns the member, the local member count, and
// whether c was already a member. A new member's presence entry and
// user_joined notice go out before the room's lock is released, so a
// connection joining right after counts it either in its members or
// through the notice, never both.
func (h *Hub) join(ctx context.Context, c *Client, name string, buffering bool) (*member, int, bool, error) {
	l := &h.subLocks[h.hash(name)%numSubLocks]
	l.Lock()
	defer l.Unlock()
	sh := h.roomShard(name)
	sh.mu.RLock()
	r := sh.rooms[name]
	sh.mu.RUnlock()
	if r == nil {
		// Subscribe before the room is visible: no event published after
		// this member's position can then be missed by this node.
		if err := h.eng.Subscribe(ctx, name); err != nil {
			h.stats.engineErrors.Add(1)
			return nil, 0, false, err
		}
		r = &room{name: name, index: make(map[*Client]int)}
		sh.mu.Lock()
		sh.rooms[name] = r
		sh.mu.Unlock()
		h.stats.rooms.Add(1)
		h.occupancy(name, true)
	}
	r.mu.Lock()
	if i, ok := r.index[c]; ok {
		m := r.members[i]
		if buffering {
			m.buffering.Store(true)
		}
		n := len(r.members)
		r.mu.Unlock()
		return m, n, true, nil
	}
	m := &member{c: c}
	m.buffering.Store(buffering)
	r.index[c] = len(r.members)
	r.members = append(r.members, m)
	n := len(r.members)
	r.mu.Unlock()
	h.joined(name, c)
	return m, n, false, nil
}

// leave removes c from room name, unsubscribing the engine and freeing the
// room when it was the last local member. It reports whether c was in it.
// Like join, it withdraws presence and sends user_left under the room's
// lock.
func (h *Hub) leave(c *Client, name string) bool {
	l := &h.subLocks[h.hash(name)%numSubLocks]
	l.Lock()
	defer l.Unlock()
	sh := h.roomShard(name)
	sh.mu.RLock()
	r := sh.rooms[name]
	sh.mu.RUnlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	i, ok := r.index[c]
	if ok {
		last := len(r.members) - 1
		r.members[i] = r.members[last]
		r.index[r.members[i].c] = i
		r.members[last] = nil
		r.members = r.members[:last]
		delete(r.index, c)
	}
	empty := len(r.members) == 0
	r.mu.Unlock()
	if ok {
		h.left(name, c)
	}
	if ok && empty {
		sh.mu.Lock()
		delete(sh.rooms, name)
		sh.mu.Unlock()
		h.stats.rooms.Add(-1)
		h.occupancy(name, false)
		ctx, cancel := h.engineContext()
		err := h.eng.Unsubscribe(ctx, name)
		cancel()
		if err != nil {
			h.stats.engineErrors.Add(1)
			h.log.Warn("hub: engine unsubscribe failed", "room", name, "err", err)
		}
	}
	return ok
}

// occupancy tells the engine that room got its first member on this node
// (occupied) or lost its last, and runs OnRoomOccupied or OnRoomVacated
// when that changed the cluster's count. The caller holds the room's join
// lock, so one node's changes to a room reach the engine in order. It costs
// nothing unless one of the two hooks is set.
func (h *Hub) occupancy(room string, occupied bool) {
	hook := h.opts.Hooks.OnRoomVacated
	if occupied {
		hook = h.opts.Hooks.OnRoomOccupied
	}
	occ, ok := h.eng.(engine.Occupancy)
	if !ok || (h.opts.Hooks.OnRoomOccupied == nil && h.opts.Hooks.OnRoomVacated == nil) {
		return
	}
	ctx, cancel := h.engineContext()
	defer cancel()
	var ch engine.OccupancyChange
	var err error
	if occupied {
		ch, err = occ.Occupy(ctx, room, h.opts.NodeID)
	} else {
		ch, err = occ.Vacate(ctx, room, h.opts.NodeID)
	}
	if err != nil {
		h.stats.engineErrors.Add(1)
		h.log.Warn("hub: engine occupancy update failed", "room", room, "err", err)
		return
	}
	if ch.Changed && hook != nil {
		hook(room, ch.Generation)
	}
}

// RoomInfo describes one room on this node.
type RoomInfo struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// Rooms lists the rooms that have members on this node.
func (h *Hub) Rooms() []RoomInfo {
	var out []RoomInfo
	for i := range h.rooms {
		sh := &h.rooms[i]
		sh.mu.RLock()
		for name, r := range sh.rooms {
			r.mu.RLock()
			out = append(out, RoomInfo{Name: name, Members: len(r.members)})
			r.mu.RUnlock()
		}
		sh.mu.RUnlock()
	}
	return out
}

// MemberInfo describes one connection in a room.
type MemberInfo struct {
	UserID       string `json:"user_id"`
	ConnectionID string `json:"connection_id"`
}

// RoomMembers lists the local connections in room; ok is false if the room
// has no members on this node.
func (h *Hub) RoomMembers(name string) (out []MemberInfo, ok bool) {
	r := h.lookupRoom(name)
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, m := range r.members {
		out = append(out, MemberInfo{UserID: m.c.userID, ConnectionID: m.c.id})
	}
	return out, true
}
