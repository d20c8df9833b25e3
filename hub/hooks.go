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
	// OnPublish runs after the permission checks, before a client's event
	// is published. It may replace the event's data by returning non-nil
	// data (valid JSON); nil keeps it.
	OnPublish func(ctx context.Context, c ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error)
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

// hookRefused turns a hook's error into the client's error event.
func (c *Client) hookRefused(err error, ref string) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		e := *pe
		e.Ref = ref
		c.violation(&e)
		return
	}
	c.violation(protocol.Errorf(protocol.ErrForbidden, ref, "%v", err))
}
