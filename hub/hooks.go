package hub

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/switchboard-rt/switchboard/protocol"
)

// ConnectionInfo describes a connection to hooks.
type ConnectionInfo struct {
	ConnectionID string
	UserID       string
	Anonymous    bool
	RemoteAddr   string
	// Info is the connection's info from its credentials, if any.
	Info json.RawMessage
	// CloseCode and CloseReason say how the connection ended; they are set
	// for OnDisconnect only (0 when the transport did not say).
	CloseCode   protocol.CloseCode
	CloseReason string
}

// PublishedEvent is a room event the engine accepted, as OnPublished sees
// it.
type PublishedEvent struct {
	Room    string
	Type    string
	EventID string // "EPOCH-OFFSET"
	Data    json.RawMessage
	// UserID and ClientID name the publishing connection; both are empty
	// for events published through the server API.
	UserID   string
	ClientID string
}

// Hooks let an embedding application watch and steer the protocol. Every
// hook is optional and runs on the connection's goroutine: keep hooks
// fast, or hand work to your own goroutines. Hooks that return an error
// refuse the request: an *protocol.Error chooses the error code the client
// gets (forbidden otherwise), and the refusal counts as a violation.
type Hooks struct {
	// OnConnect runs when a connection is established (authenticated or
	// anonymous), before any of its requests.
	OnConnect func(ConnectionInfo)
	// OnDisconnect runs once when a connection has ended and left its
	// rooms.
	OnDisconnect func(ConnectionInfo)
	// OnSubscribe runs after the permission checks, before the connection
	// joins room.
	OnSubscribe func(ctx context.Context, c ConnectionInfo, room string) error
	// OnSubscribeData runs after OnSubscribe (the server's subscribe proxy
	// uses it). It sees the subscribe's data as the client sent it and may
	// refuse like OnSubscribe; non-nil data it returns (valid JSON) goes
	// to the client in subscribed.data.data.
	OnSubscribeData func(ctx context.Context, c ConnectionInfo, room string, data json.RawMessage) (json.RawMessage, error)
	// OnPublish runs after the permission checks, before a client's event
	// is published. It may replace the event's data by returning non-nil
	// data (valid JSON); nil keeps it.
	OnPublish func(ctx context.Context, c ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error)

	// The hooks below only watch. They run while the room's membership is
	// locked (OnJoin, OnLeave, OnRoomOccupied, OnRoomVacated) or on the
	// publisher's goroutine (OnPublished), so they must not block: queue
	// the work (package webhook does) and return.

	// OnJoin runs when a connection has joined a room, OnLeave when it has
	// left it (unsubscribe or disconnect), on the connection's node.
	OnJoin  func(room string, c ConnectionInfo)
	OnLeave func(room string, c ConnectionInfo)
	// OnRoomOccupied runs when room gets its first member in the cluster
	// and OnRoomVacated when it loses its last, on the node whose join or
	// leave made that change, so once per cluster. generation numbers the
	// room's occupied periods (a vacated event carries its occupied
	// event's). They run only with an engine that implements
	// engine.Occupancy (memory and redis do), before OnJoin and after
	// OnLeave respectively.
	OnRoomOccupied func(room string, generation uint64)
	OnRoomVacated  func(room string, generation uint64)
	// OnPublished runs on the publishing node after the engine accepted a
	// room event from a connection or the server API. Retried duplicates
	// and join/leave notices do not run it. Two events published to one
	// room at the same moment may run it out of EventID order.
	OnPublished func(PublishedEvent)
}

func (c *Client) connectionInfo() ConnectionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := ConnectionInfo{ConnectionID: c.id, UserID: c.userID, Anonymous: c.anonymous, RemoteAddr: c.remote}
	if c.creds != nil {
		ci.Info = c.creds.Info
	}
	return ci
}

// hookRefused turns a hook's error into the client's error event. A
// refusal counts as a violation; a hook that failed (unavailable,
// internal) is not the client's fault and does not.
func (c *Client) hookRefused(err error, ref string) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		e := *pe
		e.Ref = ref
		if e.Code == protocol.ErrUnavailable || e.Code == protocol.ErrInternal {
			c.sendError(&e)
			return
		}
		c.violation(&e)
		return
	}
	c.violation(protocol.Errorf(protocol.ErrForbidden, ref, "%v", err))
}
