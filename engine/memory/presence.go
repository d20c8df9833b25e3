package memory

import (
	"context"
	"sync"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
)

// presenceRoom is one room's presence: entries by connection, and a count
// per user so that PresenceStats is O(1).
type presenceRoom struct {
	clients map[string]engine.ClientInfo
	users   map[string]int
}

type presenceShard struct {
	mu    sync.Mutex
	rooms map[string]*presenceRoom
}

func (e *Engine) presenceShard(room string) *presenceShard {
	return &e.presence[e.shardIndex(room)]
}

// AddPresence implements engine.Presence.
func (e *Engine) AddPresence(ctx context.Context, room string, info engine.ClientInfo) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	sh := e.presenceShard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	pr := sh.rooms[room]
	if pr == nil {
		pr = &presenceRoom{clients: make(map[string]engine.ClientInfo, 1), users: make(map[string]int, 1)}
		sh.rooms[room] = pr
	}
	if old, ok := pr.clients[info.ConnectionID]; ok {
		pr.decUser(old.UserID)
	}
	pr.clients[info.ConnectionID] = info
	pr.users[info.UserID]++
	return nil
}

func (pr *presenceRoom) decUser(user string) {
	if pr.users[user] <= 1 {
		delete(pr.users, user)
	} else {
		pr.users[user]--
	}
}

// RemovePresence implements engine.Presence.
func (e *Engine) RemovePresence(ctx context.Context, room, connID string) error {
	sh := e.presenceShard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	pr := sh.rooms[room]
	if pr == nil {
		return nil
	}
	if old, ok := pr.clients[connID]; ok {
		delete(pr.clients, connID)
		pr.decUser(old.UserID)
	}
	if len(pr.clients) == 0 {
		delete(sh.rooms, room)
	}
	return nil
}

// PresenceList implements engine.Presence. Entries are sorted by user and
// connection id so answers are stable.
func (e *Engine) PresenceList(ctx context.Context, room string) ([]engine.ClientInfo, error) {
	if e.closed.Load() {
		return nil, engine.ErrClosed
	}
	sh := e.presenceShard(room)
	sh.mu.Lock()
	pr := sh.rooms[room]
	var out []engine.ClientInfo
	if pr != nil {
		out = make([]engine.ClientInfo, 0, len(pr.clients))
		for _, ci := range pr.clients {
			out = append(out, ci)
		}
	}
	sh.mu.Unlock()
	broker.SortPresence(out)
	return out, nil
}

// PresenceStats implements engine.Presence.
func (e *Engine) PresenceStats(ctx context.Context, room string) (engine.PresenceStats, error) {
	if e.closed.Load() {
		return engine.PresenceStats{}, engine.ErrClosed
	}
	sh := e.presenceShard(room)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	pr := sh.rooms[room]
	if pr == nil {
		return engine.PresenceStats{}, nil
	}
	return engine.PresenceStats{Clients: len(pr.clients), Users: len(pr.users)}, nil
}
