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

// ErrHistoryDisabled is returned for rooms whose namespace keeps no history.
var ErrHistoryDisabled = errors.New("history is off for this room")

// History reads a page of room's history.
func (h *Hub) History(ctx context.Context, room string, req protocol.HistoryRequest) (protocol.HistoryPage, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return protocol.HistoryPage{}, e
	}
	rs := h.settings(room)
	if !rs.history.Enabled() {
		return protocol.HistoryPage{}, ErrHistoryDisabled
	}
	var q engine.HistoryQuery
	if req.Since != "" {
		p, ok := protocol.ParseEventID(req.Since)
		if !ok {
			return protocol.HistoryPage{}, protocol.Errorf(protocol.ErrBadRequest, "", "since %q is not an event id (EPOCH-OFFSET)", req.Since)
		}
		q.Since = p
	}
	switch {
	case req.Limit < 0:
		return protocol.HistoryPage{}, protocol.Errorf(protocol.ErrBadRequest, "", "limit must not be negative")
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
		return protocol.HistoryPage{}, fmt.Errorf("hub: history of %q: %w", room, err)
	}
	page := protocol.HistoryPage{Events: make([]json.RawMessage, 0, len(res.Publications)), Position: res.Latest.EventID(), Complete: res.Complete}
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
	var req protocol.HistoryRequest
	if !c.roomRequest(env, &req, `history data must be {"since": event id, "limit": number}`,
		func(p *Permissions) Permission { return p.History }, "read the history of") {
		return
	}
	page, err := c.hub.History(ctx, env.Room, req)
	if err != nil {
		c.sendError(requestError(err, env.ID))
		return
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeHistoryResult, ID: env.ID, Room: env.Room, Data: protocol.EncodeData(page)})
}

// roomRequest decodes a room request's optional data into req (shape says
// what it must look like) and checks the client's permission for the room,
// which perm picks from the room's permissions; it answers the client and
// returns false when either fails. An invalid room is left to the hub's
// call, which names the rule it breaks.
func (c *Client) roomRequest(env *protocol.Envelope, req any, shape string, perm func(*Permissions) Permission, what string) bool {
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, req); err != nil {
			c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "%s: %v", shape, err))
			return false
		}
	}
	if env.Room != "" && protocol.ValidateRoom(env.Room) == nil {
		rs := c.hub.settings(env.Room)
		if !c.allowed(perm(&rs.perms), env.Room, false) {
			c.violation(protocol.Errorf(protocol.ErrForbidden, env.ID, "not allowed to %s room %q", what, env.Room))
			return false
		}
	}
	return true
}

// ErrClosed is returned, wrapped, by calls that reach the engine after it
// was closed: the node is shutting down. It is engine.ErrClosed, so that
// the hub's callers (api) need not know the engine.
var ErrClosed = engine.ErrClosed

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
