package hub

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

// control is a node-to-node command carried by Engine.PublishControl, so
// that user-level sends and disconnects reach every node of a cluster.
type control struct {
	Op     string          `json:"op"` // broadcast, user_send, user_disconnect, conn_disconnect, ban, session_send, session_reply
	User   string          `json:"user,omitempty"`
	Conn   string          `json:"conn,omitempty"`
	Type   string          `json:"type,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Code   uint16          `json:"code,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Until  int64           `json:"until,omitempty"` // ban: Unix ms; 0 lifts it
	// session_send and session_reply (emulation.go)
	Secret string            `json:"secret,omitempty"`
	Frames []json.RawMessage `json:"frames,omitempty"`
	Req    string            `json:"req,omitempty"`
	Node   string            `json:"node,omitempty"` // the asking node
	Status string            `json:"status,omitempty"`
}

// Broadcast sends an event to every connection on every node.
func (h *Hub) Broadcast(ctx context.Context, typ string, data json.RawMessage) error {
	if err := checkEvent(typ, data); err != nil {
		return err
	}
	return h.sendControl(ctx, &control{Op: "broadcast", Type: typ, Data: data})
}

// SendToUser sends an event to every connection of user, on every node.
func (h *Hub) SendToUser(ctx context.Context, user, typ string, data json.RawMessage) error {
	if user == "" {
		return protocol.Errorf(protocol.ErrBadRequest, "", "user id is empty")
	}
	if err := checkEvent(typ, data); err != nil {
		return err
	}
	return h.sendControl(ctx, &control{Op: "user_send", User: user, Type: typ, Data: data})
}

// DisconnectUser closes every connection of user, on every node, with d.
func (h *Hub) DisconnectUser(ctx context.Context, user string, d protocol.Disconnect) error {
	return h.sendControl(ctx, &control{Op: "user_disconnect", User: user, Code: uint16(d.Code), Reason: d.Reason})
}

// DisconnectConn closes one connection, wherever it is, with d.
func (h *Hub) DisconnectConn(ctx context.Context, connID string, d protocol.Disconnect) error {
	return h.sendControl(ctx, &control{Op: "conn_disconnect", Conn: connID, Code: uint16(d.Code), Reason: d.Reason})
}

// SendToConn sends an event to one connection on this node; it reports
// whether the connection was found here.
func (h *Hub) SendToConn(connID, typ string, data json.RawMessage) (bool, error) {
	if err := checkEvent(typ, data); err != nil {
		return false, err
	}
	sh := h.connShard(connID)
	sh.mu.RLock()
	c := sh.byID[connID]
	sh.mu.RUnlock()
	if c == nil {
		return false, nil
	}
	c.sendEnvelope(&protocol.Envelope{Type: typ, Data: data})
	h.stats.messagesOut.Add(1)
	return true, nil
}

func checkEvent(typ string, data json.RawMessage) error {
	if typ == "" {
		return protocol.Errorf(protocol.ErrBadRequest, "", "event type is empty")
	}
	if e := protocol.ValidateType(typ); e != nil {
		return e
	}
	if len(data) > 0 && !json.Valid(data) {
		return protocol.Errorf(protocol.ErrBadJSON, "", "data is not valid JSON")
	}
	return nil
}

func (h *Hub) sendControl(ctx context.Context, cmd *control) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("hub: encode control: %w", err)
	}
	if err := h.eng.PublishControl(ctx, b); err != nil {
		h.stats.engineErrors.Add(1)
		return fmt.Errorf("hub: %s: %w", cmd.Op, err)
	}
	return nil
}

func (h *Hub) applyControl(cmd *control) {
	switch cmd.Op {
	case "broadcast":
		f := protocol.NewFrame(protocol.Encode(&protocol.Envelope{Type: cmd.Type, Data: cmd.Data}))
		n := 0
		for _, c := range h.allClients() {
			if c.sink.Send(f) {
				n++
			}
		}
		h.stats.messagesOut.Add(uint64(n))
	case "user_send":
		f := protocol.NewFrame(protocol.Encode(&protocol.Envelope{Type: cmd.Type, Data: cmd.Data}))
		n := 0
		for _, c := range h.userClients(cmd.User) {
			if c.sink.Send(f) {
				n++
			}
		}
		h.stats.messagesOut.Add(uint64(n))
	case "user_disconnect":
		d := protocol.NewDisconnect(protocol.CloseCode(cmd.Code), cmd.Reason)
		for _, c := range h.userClients(cmd.User) {
			c.sink.Close(d)
		}
	case "conn_disconnect":
		sh := h.connShard(cmd.Conn)
		sh.mu.RLock()
		c := sh.byID[cmd.Conn]
		sh.mu.RUnlock()
		if c != nil {
			c.sink.Close(protocol.NewDisconnect(protocol.CloseCode(cmd.Code), cmd.Reason))
		}
	case "ban":
		h.applyBan(cmd.User, cmd.Until)
	case "session_send":
		h.applySessionSend(cmd)
	case "session_reply":
		h.applySessionReply(cmd)
	default:
		h.log.Warn("hub: unknown control op", "op", cmd.Op)
	}
}

func (h *Hub) userClients(user string) []*Client {
	sh := h.connShard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	out := make([]*Client, 0, len(sh.users[user]))
	for c := range sh.users[user] {
		out = append(out, c)
	}
	return out
}

// UserConnections returns the number of connections user has on this node.
func (h *Hub) UserConnections(user string) int {
	sh := h.connShard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.users[user])
}
