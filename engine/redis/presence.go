package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
)

// Presence lives in three keys per room (see scripts.go): the entries, a
// zset of their expiry times, and a count of connections per user, which
// makes PresenceStats two HLENs. Each node remembers the entries it added
// and refreshes them every PresenceTTL/3; entries of a node that stops
// refreshing them expire and are swept by the next presence call on that
// room. After Redis lost its data, the next refresh puts this node's
// entries back.

// refreshBatch is how many entries one pipelined refresh round carries.
const refreshBatch = 256

// presenceEntry is a local connection's entry: its user and the JSON
// stored in Redis (without the expiry, which the script adds).
type presenceEntry struct {
	user string
	json string
}

// localPresence is what this node added and has not removed.
type localPresence struct {
	mu    sync.Mutex
	rooms map[string]map[string]presenceEntry // room -> connection id -> entry
}

// presenceRecord is the JSON of one entry in Redis.
type presenceRecord struct {
	UserID       string          `json:"user_id"`
	ConnectionID string          `json:"connection_id"`
	Info         json.RawMessage `json:"info,omitempty"`
	Node         string          `json:"node"`          // the node that refreshes it
	Exp          int64           `json:"exp,omitempty"` // Unix ms, Redis clock
}

func (e *Engine) presenceKeys(room string) []string {
	return []string{e.key(room, ":p"), e.key(room, ":pz"), e.key(room, ":pu")}
}

// AddPresence implements engine.Presence. The entry is remembered and
// refreshed even if this call fails, so it reappears once Redis is back.
func (e *Engine) AddPresence(ctx context.Context, room string, info engine.ClientInfo) error {
	c, err := e.redis()
	if err != nil {
		return err
	}
	b, err := json.Marshal(presenceRecord{UserID: info.UserID, ConnectionID: info.ConnectionID, Info: info.Info, Node: e.opts.NodeID})
	if err != nil {
		return fmt.Errorf("redis: presence entry of %q: %w", info.ConnectionID, err)
	}
	ent := presenceEntry{user: info.UserID, json: string(b)}
	e.presence.mu.Lock()
	conns := e.presence.rooms[room]
	if conns == nil {
		conns = make(map[string]presenceEntry, 1)
		e.presence.rooms[room] = conns
	}
	conns[info.ConnectionID] = ent
	e.presence.mu.Unlock()
	if err := presenceAddScript.Exec(ctx, c, e.presenceKeys(room), e.presenceAddArgs(info.ConnectionID, ent)).Error(); err != nil {
		return fmt.Errorf("redis: add presence in %q: %w", room, err)
	}
	return nil
}

func (e *Engine) presenceAddArgs(conn string, ent presenceEntry) []string {
	return []string{conn, ent.user, ent.json, ms(e.opts.PresenceTTL)}
}

// RemovePresence implements engine.Presence.
func (e *Engine) RemovePresence(ctx context.Context, room, connID string) error {
	e.presence.mu.Lock()
	if conns := e.presence.rooms[room]; conns != nil {
		delete(conns, connID)
		if len(conns) == 0 {
			delete(e.presence.rooms, room)
		}
	}
	e.presence.mu.Unlock()
	c, err := e.redis()
	if err != nil {
		return err
	}
	if err := presenceRemoveScript.Exec(ctx, c, e.presenceKeys(room), []string{connID}).Error(); err != nil {
		return fmt.Errorf("redis: remove presence in %q: %w", room, err)
	}
	return nil
}

// PresenceList implements engine.Presence. Entries are sorted by user and
// connection id, as the memory engine does.
func (e *Engine) PresenceList(ctx context.Context, room string) ([]engine.ClientInfo, error) {
	c, err := e.redis()
	if err != nil {
		return nil, err
	}
	vals, err := presenceListScript.Exec(ctx, c, e.presenceKeys(room), nil).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis: presence of %q: %w", room, err)
	}
	out := make([]engine.ClientInfo, 0, len(vals))
	for _, v := range vals {
		var r presenceRecord
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("redis: presence of %q: bad entry: %w", room, err)
		}
		out = append(out, engine.ClientInfo{UserID: r.UserID, ConnectionID: r.ConnectionID, Info: r.Info})
	}
	broker.SortPresence(out)
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// PresenceStats implements engine.Presence: two HLENs, plus sweeping the
// entries that expired since the last presence call on room.
func (e *Engine) PresenceStats(ctx context.Context, room string) (engine.PresenceStats, error) {
	c, err := e.redis()
	if err != nil {
		return engine.PresenceStats{}, err
	}
	n, err := presenceStatsScript.Exec(ctx, c, e.presenceKeys(room), nil).AsIntSlice()
	if err != nil || len(n) != 2 {
		return engine.PresenceStats{}, fmt.Errorf("redis: presence stats of %q: %w (%d values)", room, err, len(n))
	}
	return engine.PresenceStats{Clients: int(n[0]), Users: int(n[1])}, nil
}

// presenceLoop refreshes this node's entries every PresenceTTL/3, so that
// one missed round (a slow Redis, a reconnect) does not expire them.
func (e *Engine) presenceLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.refreshPresence(ctx)
		}
	}
}

// presenceExecs lists this node's entries as script calls of s.
func (e *Engine) presenceExecs(remove bool) []rueidis.LuaExec {
	e.presence.mu.Lock()
	defer e.presence.mu.Unlock()
	var out []rueidis.LuaExec
	for room, conns := range e.presence.rooms {
		keys := e.presenceKeys(room)
		for conn, ent := range conns {
			args := []string{conn}
			if !remove {
				args = e.presenceAddArgs(conn, ent)
			}
			out = append(out, rueidis.LuaExec{Keys: keys, Args: args})
		}
	}
	return out
}

// refreshPresence re-adds every local entry, pipelined in batches. Errors
// are left for the next round: the entries are still remembered.
func (e *Engine) refreshPresence(ctx context.Context) {
	c, err := e.redis()
	if err != nil {
		return
	}
	execs := e.presenceExecs(false)
	for i := 0; i < len(execs) && ctx.Err() == nil; i += refreshBatch {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		presenceAddScript.ExecMulti(cctx, c, execs[i:min(i+refreshBatch, len(execs))]...)
		cancel()
	}
	e.refreshOccupancy(ctx, c)
}

// removeAllPresence removes this node's entries at Close, so other nodes
// do not list them until they expire. Best effort, a few seconds at most.
func (e *Engine) removeAllPresence() {
	b := e.client.Load()
	if b == nil || e.closed.Load() {
		return
	}
	execs := e.presenceExecs(true)
	if len(execs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for i := 0; i < len(execs) && ctx.Err() == nil; i += refreshBatch {
		presenceRemoveScript.ExecMulti(ctx, b.c, execs[i:min(i+refreshBatch, len(execs))]...)
	}
	e.presence.mu.Lock()
	clear(e.presence.rooms)
	e.presence.mu.Unlock()
}
