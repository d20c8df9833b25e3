package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// History paging limits.
const (
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
)

// HistoryRequest is the data of a `history` request and the query of
// Hub.History.
type HistoryRequest struct {
	// Since is an event id; only later events are returned. Empty: the
	// newest Limit events.
	Since string `json:"since,omitempty"`
	// Limit caps the events returned (default 100, at most 1000).
	Limit int `json:"limit,omitempty"`
}

// HistoryPage is one page of a room's history.
type HistoryPage struct {
	// Events are encoded room events, oldest first, as live delivery
	// sends them.
	Events []json.RawMessage `json:"events"`
	// Position is the id of the room's newest event.
	Position string `json:"position"`
	// Complete is false when events after Since were already evicted (or
	// Since belongs to another epoch): the caller missed some for good.
	Complete bool `json:"complete"`
	// HasMore is true when later events exist beyond this page; ask again
	// with Since set to the last event's id.
	HasMore bool `json:"has_more"`
}

// ErrHistoryDisabled is returned for rooms whose namespace keeps no history.
var ErrHistoryDisabled = errors.New("history is off for this room")

// History reads a page of room's history.
func (h *Hub) History(ctx context.Context, room string, req HistoryRequest) (HistoryPage, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return HistoryPage{}, e
	}
	rs := h.settings(room)
	if !rs.history.Enabled() {
		return HistoryPage{}, ErrHistoryDisabled
	}
	var q engine.HistoryQuery
	if req.Since != "" {
		p, ok := protocol.ParseEventID(req.Since)
		if !ok {
			return HistoryPage{}, protocol.Errorf(protocol.ErrBadRequest, "", "since %q is not an event id (EPOCH-OFFSET)", req.Since)
		}
		q.Since = p
	}
	switch {
	case req.Limit < 0:
		return HistoryPage{}, protocol.Errorf(protocol.ErrBadRequest, "", "limit must not be negative")
	case req.Limit == 0:
		q.Limit = DefaultHistoryLimit
	case req.Limit > MaxHistoryLimit:
		q.Limit = MaxHistoryLimit
	default:
		q.Limit = req.Limit
	}
	res, err := h.eng.History(ctx, room, q, rs.history)
	if err != nil {
		h.stats.engineErrors.Add(1)
		return HistoryPage{}, fmt.Errorf("hub: history of %q: %w", room, err)
	}
	page := HistoryPage{Events: make([]json.RawMessage, 0, len(res.Publications)), Position: res.Latest.EventID(), Complete: res.Complete}
	size := 0
	for i, pub := range res.Publications {
		ev := encodePublication(room, pub)
		// A page must fit in the connection's outbound queue with room to
		// spare; the rest comes on the next page.
		if size += len(ev); i > 0 && size > h.opts.MaxReplayBytes {
			res.Publications = res.Publications[:i]
			break
		}
		page.Events = append(page.Events, ev)
	}
	if n := len(res.Publications); n > 0 && q.Since != (protocol.StreamPosition{}) {
		page.HasMore = res.Publications[n-1].Position.Offset < res.Latest.Offset
	}
	return page, nil
}

// replayFrames encodes missed events for a recovering subscription. ok is
// false when they would not fit in MaxReplayBytes or MaxReplayMessages:
// queueing them would only close the client as a slow consumer, and it
// would come back to the same replay; recovered:false tells it to reload
// its state (paging the history) instead.
func (h *Hub) replayFrames(room string, pubs []*engine.Publication) ([]*protocol.Frame, bool) {
	if len(pubs) > h.opts.MaxReplayMessages {
		return nil, false
	}
	frames := make([]*protocol.Frame, len(pubs))
	size := 0
	for i, pub := range pubs {
		frames[i] = protocol.NewFrame(encodePublication(room, pub))
		if size += len(frames[i].JSON); size > h.opts.MaxReplayBytes {
			return nil, false
		}
	}
	return frames, true
}

func (c *Client) history(ctx context.Context, env *protocol.Envelope) {
	var req HistoryRequest
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, &req); err != nil {
			c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "history data must be {\"since\": event id, \"limit\": number}: %v", err))
			return
		}
	}
	if env.Room != "" && protocol.ValidateRoom(env.Room) == nil && !c.allowed(c.hub.settings(env.Room).perms.History, env.Room, false) {
		c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "not allowed to read the history of room %q", env.Room))
		return
	}
	page, err := c.hub.History(ctx, env.Room, req)
	if err != nil {
		c.sendError(requestError(err, env.ID))
		return
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeHistoryResult, ID: env.ID, Room: env.Room, Data: protocol.EncodeData(page)})
}

// PresenceRequest is the data of a `presence` request.
type PresenceRequest struct {
	// CountsOnly skips the member list.
	CountsOnly bool `json:"counts_only,omitempty"`
}

// PresenceInfo is a room's presence.
type PresenceInfo struct {
	Clients int                 `json:"clients"`
	Users   int                 `json:"users"`
	Members []engine.ClientInfo `json:"members,omitempty"`
}

// ErrClosed is returned, wrapped, by calls that reach the engine after it
// was closed: the node is shutting down. It is engine.ErrClosed, so that
// the hub's callers (api) need not know the engine.
var ErrClosed = engine.ErrClosed

// ErrPresenceDisabled is returned for rooms whose namespace has no presence.
var ErrPresenceDisabled = errors.New("presence is off for this room")

// Presence returns who is in room across the cluster.
func (h *Hub) Presence(ctx context.Context, room string, countsOnly bool) (PresenceInfo, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return PresenceInfo{}, e
	}
	if !h.settings(room).presence {
		return PresenceInfo{}, ErrPresenceDisabled
	}
	st, err := h.eng.PresenceStats(ctx, room)
	if err != nil {
		h.stats.engineErrors.Add(1)
		return PresenceInfo{}, fmt.Errorf("hub: presence of %q: %w", room, err)
	}
	info := PresenceInfo{Clients: st.Clients, Users: st.Users}
	if !countsOnly {
		list, err := h.eng.PresenceList(ctx, room)
		if err != nil {
			h.stats.engineErrors.Add(1)
			return PresenceInfo{}, fmt.Errorf("hub: presence of %q: %w", room, err)
		}
		// Both counts come from the list itself: an entry that expired
		// between the two engine calls must not leave them disagreeing.
		info.Members = list
		info.Clients = len(list)
		users := make(map[string]struct{}, len(list))
		for _, m := range list {
			users[m.UserID] = struct{}{}
		}
		info.Users = len(users)
	}
	return info, nil
}

func (c *Client) presence(ctx context.Context, env *protocol.Envelope) {
	var req PresenceRequest
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, &req); err != nil {
			c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "presence data must be {\"counts_only\": bool}: %v", err))
			return
		}
	}
	if env.Room != "" && protocol.ValidateRoom(env.Room) == nil && !c.allowed(c.hub.settings(env.Room).perms.Presence, env.Room, false) {
		c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "not allowed to see the presence of room %q", env.Room))
		return
	}
	info, err := c.hub.Presence(ctx, env.Room, req.CountsOnly)
	if err != nil {
		c.sendError(requestError(err, env.ID))
		return
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypePresenceResult, ID: env.ID, Room: env.Room, Data: protocol.EncodeData(info)})
}

// requestError turns a hub error into the `error` event a client gets.
func requestError(err error, ref string) *protocol.Error {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		out := *pe
		out.Ref = ref
		return &out
	case errors.Is(err, ErrHistoryDisabled), errors.Is(err, ErrPresenceDisabled):
		return protocol.Errorf(protocol.ErrNotImplemented, ref, "%v", err)
	}
	return protocol.Errorf(protocol.ErrInternal, ref, "%v", err)
}
