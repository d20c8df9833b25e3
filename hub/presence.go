package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// ErrPresenceDisabled is returned for rooms whose namespace has no presence.
var ErrPresenceDisabled = errors.New("presence is off for this room")

// Presence returns who is in room across the cluster.
func (h *Hub) Presence(ctx context.Context, room string, countsOnly bool) (protocol.PresenceInfo, error) {
	if e := protocol.ValidateRoom(room); e != nil {
		return protocol.PresenceInfo{}, e
	}
	if !h.settings(room).presence {
		return protocol.PresenceInfo{}, ErrPresenceDisabled
	}
	st, err := h.eng.PresenceStats(ctx, room)
	if err != nil {
		h.stats.engineErrors.Add(1)
		return protocol.PresenceInfo{}, fmt.Errorf("hub: presence of %q: %w", room, err)
	}
	info := protocol.PresenceInfo{Clients: st.Clients, Users: st.Users}
	if !countsOnly {
		list, err := h.eng.PresenceList(ctx, room)
		if err != nil {
			h.stats.engineErrors.Add(1)
			return protocol.PresenceInfo{}, fmt.Errorf("hub: presence of %q: %w", room, err)
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
	var req protocol.PresenceRequest
	if !c.roomRequest(env, &req, `presence data must be {"counts_only": bool}`,
		func(p *Permissions) Permission { return p.Presence }, "see the presence of") {
		return
	}
	info, err := c.hub.Presence(ctx, env.Room, req.CountsOnly)
	if err != nil {
		c.sendError(requestError(err, env.ID))
		return
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypePresenceResult, ID: env.ID, Room: env.Room, Data: protocol.EncodeData(info)})
}

// joined records a new member's presence and announces it (see join).
func (h *Hub) joined(room string, c *Client) {
	if h.settings(room).presence {
		ctx, cancel := h.engineContext()
		defer cancel()
		if err := h.eng.AddPresence(ctx, room, engine.ClientInfo{UserID: c.userID, ConnectionID: c.id, Info: c.info()}); err != nil {
			h.stats.engineErrors.Add(1)
		}
	}
	h.joinLeave(room, protocol.TypeUserJoined, c)
	if hook := h.opts.Hooks.OnJoin; hook != nil {
		hook(room, c.connectionInfo())
	}
}

// left undoes a membership's presence and announces it.
func (h *Hub) left(room string, c *Client) {
	rs := h.settings(room)
	if rs.presence {
		ctx, cancel := h.engineContext()
		defer cancel()
		if err := h.eng.RemovePresence(ctx, room, c.id); err != nil {
			h.stats.engineErrors.Add(1)
		}
	}
	h.joinLeave(room, protocol.TypeUserLeft, c)
	if hook := h.opts.Hooks.OnLeave; hook != nil {
		hook(room, c.connectionInfo())
	}
}
