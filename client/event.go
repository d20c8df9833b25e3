package client

import (
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Event is one message from the server: a room event (for a Subscription's
// handler) or anything else the client does not consume itself (for
// Options.OnEvent). It marshals to JSON in the wire shape.
type Event struct {
	// Type is the event type: "message", an application type,
	// "user_joined"/"user_left", or for OnEvent any protocol type.
	Type string `json:"type"`
	// ID is the event's place in the room stream ("EPOCH-OFFSET"); empty
	// for events that are not stored (join/leave notices).
	ID string `json:"id,omitempty"`
	// Room is the room the event was published to; empty for events sent
	// to a user or a connection.
	Room string `json:"room,omitempty"`
	// UserID is the publisher; empty when the server published.
	UserID string `json:"user_id,omitempty"`
	// Data is the payload as published (JSON).
	Data json.RawMessage `json:"data,omitempty"`
	// TS is when the server accepted the event, in Unix milliseconds.
	TS int64 `json:"ts,omitempty"`
	// RecoveryFailed marks a notice, not a room event: after a reconnect
	// the subscription was restored, but the events published while the
	// client was away could not all be replayed (the room's history no
	// longer reaches back that far, or the server lost it, e.g. a
	// restarted single node). Reload the room's state, for example with
	// History. The notice has Type "subscribed" (a type no application
	// event can have) and ID set to the position live delivery resumes
	// after; it comes in stream order, after the last event received
	// before the gap.
	//
	// The same notice with Type "stream_gap" comes on a live subscription
	// when the server could not deliver some events (its broker evicted
	// them or lost its data); Data is {after, until, reason} and ID is
	// until, when known.
	RecoveryFailed bool `json:"recovery_failed,omitempty"`
}

// Time returns TS as a time.Time (the zero Time when TS is 0).
func (e Event) Time() time.Time {
	if e.TS == 0 {
		return time.Time{}
	}
	return time.UnixMilli(e.TS)
}

func eventOf(env *protocol.Envelope) Event {
	return Event{Type: env.Type, ID: env.ID, Room: env.Room, UserID: env.UserID, Data: env.Data, TS: env.TS}
}

// Ack is the server's acknowledgement of a Publish.
type Ack struct {
	// EventID is the published event's id ("EPOCH-OFFSET").
	EventID string `json:"event_id"`
	// Duplicate reports that the server had already accepted this publish
	// (its first ack was lost in a reconnect and the client sent it
	// again); the event was delivered once.
	Duplicate bool `json:"duplicate,omitempty"`
}

// HistoryPage is one page of a room's history.
type HistoryPage struct {
	// Events are the room's events, oldest first.
	Events []Event `json:"events"`
	// Position is the id of the room's newest event.
	Position string `json:"position"`
	// Complete is false when events after since were already evicted (or
	// since belongs to an older epoch of the room): some are gone for good.
	Complete bool `json:"complete"`
	// HasMore is true when later events exist beyond this page; ask again
	// with since set to the last event's ID.
	HasMore bool `json:"has_more"`
}

// PresenceInfo is who is in a room, across every node.
type PresenceInfo struct {
	// Clients counts connections, Users distinct user ids.
	Clients int `json:"clients"`
	Users   int `json:"users"`
	// Members lists the connections; nil when counts only were asked for.
	Members []Member `json:"members,omitempty"`
}

// Member is one connection in a room.
type Member struct {
	UserID       string `json:"user_id"`
	ConnectionID string `json:"connection_id"`
	// Info is the presence info of the connection's token, if any.
	Info json.RawMessage `json:"info,omitempty"`
}
