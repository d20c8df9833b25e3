package protocol

import (
	"encoding/json"
	"fmt"
)

// The Data of each message type, defined once for the server, the Go
// client and the transports. docs/protocol.md section 3 shows each in
// its frame. Fields a side does not use are still decoded by the other.

// ConnectionEstablished is the data of connection_established, the first
// event on a connection (docs/protocol.md section 3.3).
type ConnectionEstablished struct {
	UserID            string `json:"user_id"`
	ConnectionID      string `json:"connection_id"`
	ServerTime        int64  `json:"server_time"`           // Unix milliseconds
	HeartbeatInterval int64  `json:"heartbeat_interval_ms"` // server ping interval
	ProtocolVersion   int    `json:"protocol_version"`
	Node              string `json:"node"`
	ExpiresAt         int64  `json:"expires_at,omitempty"` // Unix ms when the credentials expire; 0: never
	// JSONPing: the server sends {"type":"ping"} with every heartbeat and
	// takes the client's {"type":"pong"} as a sign of life (section 9).
	JSONPing bool `json:"json_ping,omitempty"`
	// Transport is "websocket", "sse" or "http_stream" (section 13).
	Transport string `json:"transport,omitempty"`
	// Session, on an emulated connection only, is where its frames are
	// POSTed (/emulation/send) and their secret: a credential.
	Session string `json:"session,omitempty"`
}

// AuthData is the data of `auth` and `refresh` requests (section 6).
type AuthData struct {
	Token string `json:"token"`
}

// RefreshedData is the data of the `refreshed` answer (section 3.3).
type RefreshedData struct {
	ExpiresAt int64 `json:"expires_at,omitempty"` // Unix ms; 0: never
}

// SessionExpiringData is the data of `session_expiring` (section 3.3).
type SessionExpiringData struct {
	ExpiresAt int64 `json:"expires_at"` // Unix ms
}

// SubscribeData is the optional data of a `subscribe` request (section 3.2).
type SubscribeData struct {
	// Token is a subscription token for a private room.
	Token string `json:"token,omitempty"`
}

// SubscribedData is the data of a `subscribed` answer (section 3.3).
type SubscribedData struct {
	// Members is the number of connections in the room on this node.
	Members int `json:"members"`
	// Position is the id of the room's newest event when the subscription
	// started (offset 0 if none yet); a client that has seen no event
	// recovers from here after a reconnect.
	Position string `json:"position"`
	// Recovered is set when the request carried last_event_id: true if
	// every missed event was replayed, false if the app must reload state.
	Recovered *bool `json:"recovered,omitempty"`
	// Replayed is how many missed events were sent before this answer's
	// live events.
	Replayed int `json:"replayed,omitempty"`
	// ExpiresAt is when the subscription token expires (Unix ms), if the
	// subscribe carried one that does; the server ends the subscription then.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// Data is what the application's subscribe hook or proxy returned for
	// this subscription, if anything.
	Data json.RawMessage `json:"data,omitempty"`
}

// SubscriptionExpiringData is the data of subscription_expiring
// (section 3.3).
type SubscriptionExpiringData struct {
	ExpiresAt int64 `json:"expires_at"` // Unix ms
}

// ErrSubscriptionExpired is the code in the data of the `unsubscribed`
// event with which the server ends a subscription whose token expired
// (section 3.2, subscribe).
const ErrSubscriptionExpired = "subscription_expired"

// AckData is the data of an `ack` (section 5).
type AckData struct {
	// EventID is the published event's id ("EPOCH-OFFSET").
	EventID string `json:"event_id"`
	// Duplicate reports that the server had already accepted this publish
	// id; the event was delivered once.
	Duplicate bool `json:"duplicate,omitempty"`
}

// JoinLeaveData is the data of user_joined and user_left events
// (section 3.3).
type JoinLeaveData struct {
	ConnectionID string `json:"connection_id"`
}

// StreamGapData is the data of a stream_gap event (section 4).
type StreamGapData struct {
	// After is the id of the last event delivered before the gap, "" if
	// none is known.
	After string `json:"after,omitempty"`
	// Until is the id of the last missing event: the events that follow
	// come after it. "" when unknown: everything before the next event.
	Until string `json:"until,omitempty"`
	// Reason is one of evicted, stream_lost, unavailable, too_many.
	Reason string `json:"reason"`
}

// HistoryRequest is the data of a `history` request (section 3.2) and the
// query of the server's history API.
type HistoryRequest struct {
	// Since is an event id; only later events are returned. Empty: the
	// newest Limit events.
	Since string `json:"since,omitempty"`
	// Limit caps the events returned (default 100, at most 1000).
	Limit int `json:"limit,omitempty"`
}

// HistoryPage is one page of a room's history: the data of
// history_result (section 3.3).
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

// PresenceRequest is the data of a `presence` request (section 3.2).
type PresenceRequest struct {
	// CountsOnly skips the member list.
	CountsOnly bool `json:"counts_only,omitempty"`
}

// PresenceInfo is a room's presence across every node: the data of
// presence_result (section 3.3).
type PresenceInfo struct {
	// Clients counts connections, Users distinct user ids.
	Clients int `json:"clients"`
	Users   int `json:"users"`
	// Members lists the connections; nil when counts only were asked for.
	Members []Member `json:"members,omitempty"`
}

// Member is one connection in a room's presence.
type Member struct {
	UserID       string `json:"user_id"`
	ConnectionID string `json:"connection_id"`
	// Info is the presence info of the connection's credentials, if any.
	Info json.RawMessage `json:"info,omitempty"`
}

// RPCRequest is the data of an envelope-style `rpc` request (section 3.4).
type RPCRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// JSONRPCResponse is a JSON-RPC 2.0 response: the answer to a raw
// JSON-RPC frame, and the data of rpc_result (section 3.4).
type JSONRPCResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *RPCError       `json:"error,omitempty"`
}

// RPCError is a JSON-RPC 2.0 error object (section 3.4). An RPC handler
// returns one to choose the code its caller sees.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// JSON-RPC error codes (section 3.4): the standard ones, and ours in the
// range the spec leaves to servers (-32000 to -32099).
const (
	RPCParseError     = -32700
	RPCInvalidRequest = -32600
	RPCMethodNotFound = -32601
	RPCInvalidParams  = -32602
	RPCInternalError  = -32603
	RPCTimeout        = -32001 // the handler did not answer within the RPC timeout
	RPCBackendFailure = -32002 // the RPC proxy's backend failed or was unreachable
	RPCForbidden      = -32003 // the room permissions refuse the call
	RPCTooMany        = -32004 // too many calls in flight on this connection
)
