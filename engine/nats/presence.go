package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/internal/broker"
)

// Presence lives in a memory stream with one subject per entry,
// P.pres.ROOM.USER.CONN, holding one message (MaxMsgsPerSubject 1) whose
// age limit (MaxAge) is PresenceTTL. The node that added an entry
// republishes it every PresenceTTL/3; entries of a node that stops doing
// so age out. PresenceStats asks the stream for the subjects under the
// room (one request, no message bodies): their number is the connection
// count, their distinct USER tokens the user count. Removal purges the
// entry's subject, which leaves nothing behind to count.
//
// In core-only mode presence is this node's only (there is nowhere shared
// to keep it).

// presenceEntry is a local connection's entry. mu orders its refreshes and
// its removal, so a refresh cannot bring a removed entry back.
type presenceEntry struct {
	mu      sync.Mutex
	removed bool
	subj    string
	data    []byte
	info    engine.ClientInfo
}

// localPresence is what this node added and has not removed.
type localPresence struct {
	mu    sync.Mutex
	rooms map[string]map[string]*presenceEntry // room -> connection id -> entry
}

// presenceRecord is the JSON of one entry.
type presenceRecord struct {
	UserID       string          `json:"user_id"`
	ConnectionID string          `json:"connection_id"`
	Info         json.RawMessage `json:"info,omitempty"`
	Node         string          `json:"node"` // the node that refreshes it
}

func (e *Engine) presRoomPrefix(room string) string { return e.presPrefix + token(room) + "." }

// AddPresence implements engine.Presence. The entry is remembered and
// refreshed even if this call fails, so it appears once NATS is back.
func (e *Engine) AddPresence(ctx context.Context, room string, info engine.ClientInfo) error {
	b, err := e.box()
	if err != nil {
		return err
	}
	data, err := json.Marshal(presenceRecord{UserID: info.UserID, ConnectionID: info.ConnectionID, Info: info.Info, Node: e.opts.NodeID})
	if err != nil {
		return fmt.Errorf("nats: presence entry of %q: %w", info.ConnectionID, err)
	}
	ent := &presenceEntry{subj: e.presRoomPrefix(room) + token(info.UserID) + "." + token(info.ConnectionID), data: data, info: info}
	ent.mu.Lock()
	defer ent.mu.Unlock()
	e.presence.mu.Lock()
	conns := e.presence.rooms[room]
	if conns == nil {
		conns = make(map[string]*presenceEntry, 1)
		e.presence.rooms[room] = conns
	}
	old := conns[info.ConnectionID]
	conns[info.ConnectionID] = ent
	e.presence.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		old.removed = true
		old.mu.Unlock()
	}
	if b.js == nil {
		return nil
	}
	if old != nil && old.subj != ent.subj { // the connection's user changed
		if err := e.purgePresence(ctx, b, old.subj); err != nil {
			return fmt.Errorf("nats: add presence in %q: %w", room, err)
		}
	}
	if err := e.putPresence(ctx, b, ent); err != nil {
		return fmt.Errorf("nats: add presence in %q: %w", room, err)
	}
	return nil
}

func (e *Engine) putPresence(ctx context.Context, b *connBox, ent *presenceEntry) error {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	_, err := b.js.PublishMsg(ctx, &natsgo.Msg{Subject: ent.subj, Data: ent.data})
	return err
}

func (e *Engine) purgePresence(ctx context.Context, b *connBox, filter string) error {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	return b.pres.Purge(ctx, jetstream.WithPurgeSubject(filter))
}

// RemovePresence implements engine.Presence. It removes the entry whatever
// node added it.
func (e *Engine) RemovePresence(ctx context.Context, room, connID string) error {
	e.presence.mu.Lock()
	var ent *presenceEntry
	if conns := e.presence.rooms[room]; conns != nil {
		ent = conns[connID]
		delete(conns, connID)
		if len(conns) == 0 {
			delete(e.presence.rooms, room)
		}
	}
	e.presence.mu.Unlock()
	if ent != nil {
		ent.mu.Lock()
		defer ent.mu.Unlock()
		ent.removed = true
	}
	b, err := e.box()
	if err != nil {
		return err
	}
	if b.js == nil {
		return nil
	}
	// The user is not needed: any entry of the connection in the room goes.
	if err := e.purgePresence(ctx, b, e.presRoomPrefix(room)+"*."+token(connID)); err != nil {
		return fmt.Errorf("nats: remove presence in %q: %w", room, err)
	}
	return nil
}

// PresenceList implements engine.Presence. Entries are sorted by user and
// connection id, as the memory engine does.
func (e *Engine) PresenceList(ctx context.Context, room string) ([]engine.ClientInfo, error) {
	b, err := e.box()
	if err != nil {
		return nil, err
	}
	var out []engine.ClientInfo
	if b.js == nil {
		e.presence.mu.Lock()
		for _, ent := range e.presence.rooms[room] {
			out = append(out, ent.info)
		}
		e.presence.mu.Unlock()
	} else {
		ctx, cancel := e.opCtx(ctx)
		defer cancel()
		msgs, err := e.readSubject(ctx, b, e.presStream, e.presRoomPrefix(room)+">", 1, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("nats: presence of %q: %w", room, err)
		}
		out = make([]engine.ClientInfo, 0, len(msgs))
		for _, m := range msgs {
			var r presenceRecord
			if err := json.Unmarshal(m.data, &r); err != nil {
				return nil, fmt.Errorf("nats: presence of %q: bad entry: %w", room, err)
			}
			out = append(out, engine.ClientInfo{UserID: r.UserID, ConnectionID: r.ConnectionID, Info: r.Info})
		}
	}
	broker.SortPresence(out)
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// PresenceStats implements engine.Presence: one stream info request that
// lists the room's entry subjects, no entry is read.
func (e *Engine) PresenceStats(ctx context.Context, room string) (engine.PresenceStats, error) {
	b, err := e.box()
	if err != nil {
		return engine.PresenceStats{}, err
	}
	if b.js == nil {
		e.presence.mu.Lock()
		defer e.presence.mu.Unlock()
		conns := e.presence.rooms[room]
		users := make(map[string]struct{}, len(conns))
		for _, ent := range conns {
			users[ent.info.UserID] = struct{}{}
		}
		return engine.PresenceStats{Clients: len(conns), Users: len(users)}, nil
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	prefix := e.presRoomPrefix(room)
	subjects, err := e.subjectCounts(ctx, b, e.presStream, prefix+">")
	if err != nil {
		return engine.PresenceStats{}, fmt.Errorf("nats: presence stats of %q: %w", room, err)
	}
	users := make(map[string]struct{}, len(subjects))
	for subj := range subjects {
		user, _, _ := strings.Cut(strings.TrimPrefix(subj, prefix), ".")
		users[user] = struct{}{}
	}
	return engine.PresenceStats{Clients: len(subjects), Users: len(users)}, nil
}

type streamInfoRequest struct {
	SubjectsFilter string `json:"subjects_filter"`
	Offset         int    `json:"offset,omitempty"`
}

type streamInfoResponse struct {
	Total int `json:"total"`
	State struct {
		Subjects map[string]uint64 `json:"subjects"`
	} `json:"state"`
	Error *jetstream.APIError `json:"error"`
}

// subjectCounts returns the subjects of stream that match filter, with
// their message counts. (A plain request rather than jetstream's
// Stream.Info, which updates the shared stream handle without a lock.)
func (e *Engine) subjectCounts(ctx context.Context, b *connBox, stream, filter string) (map[string]uint64, error) {
	out := make(map[string]uint64)
	for page := 0; page < 10_000; page++ {
		req, err := json.Marshal(streamInfoRequest{SubjectsFilter: filter, Offset: len(out)})
		if err != nil {
			return nil, err
		}
		resp, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+stream, req)
		if err != nil {
			return nil, err
		}
		var r streamInfoResponse
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return nil, err
		}
		if r.Error != nil {
			return nil, r.Error
		}
		before := len(out)
		for s, n := range r.State.Subjects {
			out[s] = n
		}
		if len(out) >= r.Total || len(out) == before {
			break
		}
	}
	return out, nil
}

// presenceLoop refreshes this node's entries every PresenceTTL/3, so that
// one missed round (a slow server, a reconnect) does not expire them.
func (e *Engine) presenceLoop() {
	if e.opts.CoreOnly {
		return
	}
	t := time.NewTicker(e.opts.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.refreshPresence()
			e.refreshOccupancy()
		}
	}
}

func (e *Engine) localEntries() []*presenceEntry {
	e.presence.mu.Lock()
	defer e.presence.mu.Unlock()
	var out []*presenceEntry
	for _, conns := range e.presence.rooms {
		for _, ent := range conns {
			out = append(out, ent)
		}
	}
	return out
}

// refreshPresence republishes every local entry. Errors are left for the
// next round: the entries are still remembered.
func (e *Engine) refreshPresence() {
	b := e.conn.Load()
	if b == nil || b.js == nil {
		return
	}
	for _, ent := range e.localEntries() {
		if e.ctx.Err() != nil {
			return
		}
		ent.mu.Lock()
		if !ent.removed {
			_ = e.putPresence(e.ctx, b, ent)
		}
		ent.mu.Unlock()
	}
}

// removeAllPresence removes this node's entries at Close, so other nodes
// do not list them until they expire. Best effort, a few seconds at most.
func (e *Engine) removeAllPresence() {
	b := e.conn.Load()
	if b == nil || b.js == nil || e.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, ent := range e.localEntries() {
		if ctx.Err() != nil {
			break
		}
		ent.mu.Lock()
		ent.removed = true
		_ = e.purgePresence(ctx, b, ent.subj)
		ent.mu.Unlock()
	}
	e.presence.mu.Lock()
	clear(e.presence.rooms)
	e.presence.mu.Unlock()
}
