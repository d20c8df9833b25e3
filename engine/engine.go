// Package engine defines the seam between the hub and whatever carries
// events between Switchboard nodes and keeps room streams: the in-memory
// engine (engine/memory) for a single node, and brokers such as Redis for a
// cluster. Every implementation must pass the shared suite in
// engine/enginetest, so the hub behaves the same on all of them.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Publication is one event in a room.
type Publication struct {
	// Type is the event type ("message" or an application type).
	Type string
	// Data is the event payload, valid JSON (may be empty).
	Data json.RawMessage
	// UserID is the publishing user, "" when the server API published it.
	UserID string
	// ClientID is the publishing connection, "" when not a connection; the
	// hub uses it to skip the sender when echo is off.
	ClientID string
	// ExcludeSender keeps the event from the connection ClientID names
	// (the sender, or the connection a backend publishes on behalf of):
	// every other member receives it. Engines carry it to every node.
	ExcludeSender bool
	// Time is when the engine accepted the event, in Unix milliseconds.
	Time int64
	// Position is the event's place in the room stream. Engines set it on
	// Publish; it is zero for ephemeral events.
	Position protocol.StreamPosition
	// Ephemeral events (join/leave notices) reach every node but are not
	// appended to the stream: no position, no history.
	Ephemeral bool
}

// HistoryPolicy says how much of a room's stream an engine keeps. The zero
// value keeps nothing (positions are still assigned).
type HistoryPolicy struct {
	// Size is the number of most recent events kept; 0 keeps none.
	Size int
	// TTL is how long an event is kept; 0 keeps events until Size evicts
	// them. The stream's position is kept at least as long as its history.
	TTL time.Duration
}

// Enabled reports whether the policy keeps any history.
func (p HistoryPolicy) Enabled() bool { return p.Size > 0 }

// PublishOptions tune one Publish.
type PublishOptions struct {
	// History is the room's history policy.
	History HistoryPolicy
	// IdempotencyKey, when set, makes Publish idempotent: a second Publish
	// with the same room and key within IdempotencyTTL is not delivered
	// again and returns the first call's position with Duplicate set.
	IdempotencyKey string
	// IdempotencyTTL is how long a key is remembered; 0 means 2 minutes.
	IdempotencyTTL time.Duration
}

// PublishResult is what Publish returns.
type PublishResult struct {
	Position  protocol.StreamPosition
	Duplicate bool // an earlier Publish with the same idempotency key won
}

// HistoryQuery selects events from a room's stream.
type HistoryQuery struct {
	// Since returns only events after this position. With a zero Since, the
	// newest Limit events are returned. If Since.Epoch differs from the
	// stream's, or events after Since were evicted, HistoryResult.Complete
	// is false.
	Since protocol.StreamPosition
	// Limit caps the number of events returned; 0 means no cap.
	Limit int
}

// HistoryResult is what History returns.
type HistoryResult struct {
	Publications []*Publication // oldest first
	// Latest is the stream's current top position (the last offset and
	// the epoch), whatever was returned.
	Latest protocol.StreamPosition
	// Complete reports that every event after Since is either returned or
	// beyond Limit: there is no gap between Since and the first event.
	Complete bool
}

// Handler receives what an engine delivers to this node. Calls for one room
// come in the room's stream order and never concurrently for the same room;
// they must not block (the hub only queues bytes).
type Handler interface {
	// HandlePublication delivers an event published to a room that this
	// node subscribed to with Subscribe.
	HandlePublication(room string, pub *Publication)
	// HandleControl delivers a node-to-node command published with
	// PublishControl, on every node including the sender.
	HandleControl(data []byte)
	// HandleGap tells that events of room, which this node subscribed,
	// could not be delivered: they were evicted from history before a gap
	// could be filled, the stream was lost (its epoch changed), or history
	// could not be read. It comes in the room's delivery order: events
	// delivered after it follow the gap.
	HandleGap(room string, gap Gap)
}

// Gap is a stretch of a room's stream that an engine could not deliver.
type Gap struct {
	// After is the last position delivered (or known) before the gap;
	// Epoch "" when the room had no stream.
	After protocol.StreamPosition
	// Until is the last missing position: delivery goes on with the event
	// after it. When Until.Epoch differs from After.Epoch the stream was
	// lost, and any events of After's epoch after After are missing too.
	// Epoch "" means unknown: everything up to the next delivered event.
	Until protocol.StreamPosition
	// Reason says why, one of the Gap* constants.
	Reason string
}

// Gap reasons.
const (
	GapEvicted     = "evicted"     // history no longer holds the events (size, TTL, or off)
	GapStreamLost  = "stream_lost" // the stream was lost: a new epoch
	GapUnavailable = "unavailable" // history could not be read
	GapTooMany     = "too_many"    // more missed events than one fill delivers
)

// Engine carries events between nodes and keeps room streams.
//
// Contract (checked by engine/enginetest):
//   - Publish appends to the room's stream and delivers to every node that
//     subscribed the room, atomically: an event that Publish acknowledged is
//     in the stream (if history is on) and is delivered in stream order.
//   - Offsets in a room increase by one per non-ephemeral event, starting at
//     1 in a new epoch. The epoch changes only when the stream is lost.
//   - A node receives publications only for rooms it has subscribed and not
//     unsubscribed since.
//   - An event of a subscribed room that the engine cannot deliver to this
//     node (evicted before a gap could be filled, lost with the broker's
//     data) is declared with Handler.HandleGap, never skipped silently.
//
// All methods are safe for concurrent use.
type Engine interface {
	// Run connects the engine and starts delivering to h. It returns when
	// the engine is ready to Publish; delivery stops when ctx is cancelled.
	Run(ctx context.Context, h Handler) error
	// Publish publishes pub to room.
	Publish(ctx context.Context, room string, pub *Publication, opts PublishOptions) (PublishResult, error)
	// Subscribe makes this node receive room's publications. The hub calls
	// it when a room gets its first local member.
	Subscribe(ctx context.Context, room string) error
	// Unsubscribe stops delivery of room's publications to this node.
	Unsubscribe(ctx context.Context, room string) error
	// History reads a room's stream.
	History(ctx context.Context, room string, q HistoryQuery, policy HistoryPolicy) (HistoryResult, error)
	// PublishControl sends a command to every node.
	PublishControl(ctx context.Context, data []byte) error
	// Presence tracks who is in each room, on every node.
	Presence
	// Ready reports whether the engine can serve (for /readyz).
	Ready(ctx context.Context) error
	// Close releases the engine's resources.
	Close() error
}

// ClientInfo is one connection's presence entry, as the protocol's
// presence_result lists it.
type ClientInfo = protocol.Member

// PresenceStats are a room's presence counts.
type PresenceStats struct {
	Clients int `json:"clients"` // connections
	Users   int `json:"users"`   // distinct user ids
}

// Presence tracks which connections are in which rooms across the cluster.
// Entries of a node that stops without removing them must disappear on
// their own (brokers use a TTL that the owning node refreshes).
type Presence interface {
	// AddPresence records (or refreshes) a connection in room.
	AddPresence(ctx context.Context, room string, info ClientInfo) error
	// RemovePresence removes a connection from room.
	RemovePresence(ctx context.Context, room, connID string) error
	// PresenceList returns every connection in room.
	PresenceList(ctx context.Context, room string) ([]ClientInfo, error)
	// PresenceStats returns room's counts; it is cheap enough to ask often.
	PresenceStats(ctx context.Context, room string) (PresenceStats, error)
}

// ErrClosed is returned by an engine used after Close.
var ErrClosed = errors.New("engine: closed")

// NodeStats is implemented by engines that share each node's statistics
// across the cluster (the memory engine has one node and does not). A node
// reports itself periodically; an entry lives for ttl, so a dead node drops
// out of the listing.
type NodeStats interface {
	// ReportNode stores node's stats snapshot (JSON) for ttl.
	ReportNode(ctx context.Context, node string, stats []byte, ttl time.Duration) error
	// Nodes returns the live nodes' latest snapshots by node id.
	Nodes(ctx context.Context) (map[string][]byte, error)
}

// OccupancyChange is what Occupy and Vacate report.
type OccupancyChange struct {
	// Changed reports that this call moved the room's cluster-wide count
	// of nodes with members from 0 to 1 (Occupy) or from 1 to 0 (Vacate).
	Changed bool
	// Generation numbers the room's occupied periods: Occupy that changed
	// the count starts the next one; Vacate reports the current one.
	Generation uint64
}

// Occupancy is implemented by engines that decide, for the whole cluster,
// when a room gains its first member and loses its last (webhooks'
// room.occupied and room.vacated). The hub calls Occupy when a room gets
// its first member on node and Vacate when its last one there leaves; the
// engine counts nodes, atomically, so exactly one call reports each change.
// A node that stops without calling Vacate drops out of the count after
// the engine's presence TTL (brokers); no Vacate reports that.
type Occupancy interface {
	Occupy(ctx context.Context, room, node string) (OccupancyChange, error)
	Vacate(ctx context.Context, room, node string) (OccupancyChange, error)
}

// Local is implemented by engines that do no I/O, so a call cannot hang
// (the memory engine). The hub bounds every other engine's calls with a
// timeout, and spares a local one that timer on the publish path. An engine
// that wraps a local one and may block should answer false.
type Local interface {
	Local() bool
}
