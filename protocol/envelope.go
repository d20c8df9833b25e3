// Package protocol defines Switchboard's wire protocol: the JSON envelope that
// every frame carries, the message types, error codes, close codes, room-name
// rules and event ids. It is the contract that the server, the SDKs and the
// tests share; docs/protocol.md describes the same thing for people.
//
// The package has no dependencies on the rest of Switchboard.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"unicode/utf8"
)

// Version is the protocol version announced in connection_established.
const Version = 1

// Subprotocol is the WebSocket subprotocol of this protocol version
// (docs/protocol.md section 1): clients offer it, the server selects it
// when offered. Clients may also offer none.
const Subprotocol = "switchboard.v1"

// Message types. A type not in this list is an application event: a client
// that sends one with a room publishes it to that room unchanged.
const (
	// client -> server
	TypePing        = "ping"
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeSync        = "sync"
	TypeAuth        = "auth"
	TypeRefresh     = "refresh"
	TypeRPC         = "rpc"
	TypeHistory     = "history"
	TypePresence    = "presence"
	// TypeJSONRPC marks a raw JSON-RPC 2.0 frame ({"jsonrpc": "2.0", "id",
	// "method", "params"}, as the seeds' WebSocketRPC class sends): Decode
	// gives it this type, its raw id in ID and the whole frame in Data,
	// and the answer is a raw JSON-RPC response.
	TypeJSONRPC = "jsonrpc"

	// server -> client
	TypeConnectionEstablished = "connection_established"
	TypePong                  = "pong"
	TypeSubscribed            = "subscribed"
	TypeUnsubscribed          = "unsubscribed"
	TypeAck                   = "ack"
	TypeError                 = "error"
	TypeDisconnect            = "disconnect"
	TypeUserJoined            = "user_joined"
	TypeUserLeft              = "user_left"
	TypeSessionExpiring       = "session_expiring"
	TypeRPCResult             = "rpc_result"
	TypeHistoryResult         = "history_result"
	TypePresenceResult        = "presence_result"
	TypeRefreshed             = "refreshed"
	// TypeStreamGap tells a room's members that events of the room could
	// not be delivered to them (protocol.md section 4).
	TypeStreamGap = "stream_gap"

	// TypeSubscriptionExpiring warns that a room's subscription token
	// expires soon (data.expires_at): subscribe again with a new one.
	TypeSubscriptionExpiring = "subscription_expiring"

	// both directions: the default application event type.
	TypeMessage = "message"
)

// serverOnly are reserved types a client may not send.
var serverOnly = map[string]bool{
	TypeConnectionEstablished: true, TypePong: true, TypeSubscribed: true,
	TypeUnsubscribed: true, TypeAck: true, TypeError: true, TypeDisconnect: true,
	TypeUserJoined: true, TypeUserLeft: true, TypeSessionExpiring: true, TypeRPCResult: true,
	TypeHistoryResult: true, TypePresenceResult: true, TypeRefreshed: true,
	TypeSubscriptionExpiring: true, TypeStreamGap: true,
}

// clientRequests are reserved types a client sends as requests.
var clientRequests = map[string]bool{
	TypePing: true, TypeSubscribe: true, TypeUnsubscribe: true, TypeSync: true,
	TypeAuth: true, TypeRefresh: true, TypeRPC: true, TypeHistory: true, TypePresence: true,
	TypeJSONRPC: true,
}

// IsReserved reports whether t is a protocol type rather than an
// application event type. "message" is not reserved: it is the default
// application event.
func IsReserved(t string) bool { return serverOnly[t] || clientRequests[t] }

// typeRule is the message for an event type that breaks the naming rule.
const typeRule = "field \"type\" must be 1-%d characters of a-z, A-Z, 0-9, _, -, . or :"

func validTypeName(t string) bool { return t != "" && len(t) <= MaxTypeLen && isIdent(t) }

// ValidateType checks the type of an application event someone publishes:
// 1-MaxTypeLen identifier characters, and not a protocol type. The hub's
// Publish, the HTTP API and the Go client all apply this one rule.
func ValidateType(t string) *Error {
	if !validTypeName(t) {
		return Errorf(ErrBadRequest, "", typeRule, MaxTypeLen)
	}
	if IsReserved(t) {
		return Errorf(ErrBadRequest, "", "event type %q is reserved by the protocol", t)
	}
	return nil
}

// IsServerOnly reports whether t is a type only the server sends.
func IsServerOnly(t string) bool { return serverOnly[t] }

// Limits on what a client's envelope may contain.
const (
	// MaxTypeLen bounds the event type; types are identifiers, not payloads.
	MaxTypeLen = 64
	// MaxIDLen bounds client request ids (UUIDs are 36 bytes).
	MaxIDLen = 128
	// MaxDepth bounds JSON nesting. encoding/json allows 10,000 levels; a
	// message limited to 64 KiB could otherwise cost a deep recursion per
	// frame. 32 levels is far above what real events use.
	MaxDepth = 32
)

// Envelope is one protocol message: `{type, id, room, data, ts}` plus the
// few fields some types use. Unknown fields from clients are ignored so
// that newer SDKs can talk to older servers.
type Envelope struct {
	Type        string          `json:"type"`
	ID          string          `json:"id,omitempty"`
	Room        string          `json:"room,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	TS          int64           `json:"ts,omitempty"`
	UserID      string          `json:"user_id,omitempty"`
	LastEventID string          `json:"last_event_id,omitempty"`
	// ExcludeSelf, on a client's publish, keeps the event from the
	// publishing connection; the rest of the room receives it and the
	// sender still gets its ack.
	ExcludeSelf bool `json:"exclude_self,omitempty"`
}

// Error is a non-fatal problem with one client message; it is sent as an
// `error` event and the connection stays open.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes carried in `error` events.
const (
	ErrBadJSON        = "bad_json"        // the frame is not a JSON object
	ErrBadRequest     = "bad_request"     // a field is missing or has the wrong type or value
	ErrUnknownType    = "unknown_type"    // a reserved server-only type, or a request this server does not support
	ErrInvalidRoom    = "invalid_room"    // the room name breaks the naming rules
	ErrNotSubscribed  = "not_subscribed"  // unsubscribe or sync for a room the connection is not in
	ErrRoomNotFound   = "room_not_found"  // the room does not exist
	ErrTooManyRooms   = "too_many_rooms"  // the per-connection subscription limit is reached
	ErrForbidden      = "forbidden"       // not allowed by the room permissions
	ErrThrottled      = "throttled"       // over a rate limit; slow down
	ErrInternal       = "internal"        // the server failed; the request may be retried
	ErrNotImplemented = "not_implemented" // the request type exists but is not enabled on this server
	ErrUnavailable    = "unavailable"     // a backend the server asks (subscribe or publish proxy) failed or did not answer; nothing was done
)

// Errorf builds an *Error.
func Errorf(code, ref, format string, args ...any) *Error {
	return &Error{Code: code, Ref: ref, Message: fmt.Sprintf(format, args...)}
}

// Decode parses one client frame. It rejects anything that is not a single
// JSON object within the depth limit, and fields of the wrong type, with an
// *Error whose Ref is the request id when it could be read.
func Decode(b []byte) (*Envelope, error) {
	if err := checkShape(b); err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		if rpc, ok := decodeJSONRPC(b); ok {
			return rpc, nil
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, Errorf(ErrBadRequest, peekID(b), "field %q must be %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return nil, Errorf(ErrBadJSON, "", "malformed JSON: %v", err)
	}
	switch {
	case env.Type == "":
		if rpc, ok := decodeJSONRPC(b); ok {
			return rpc, nil
		}
		return nil, Errorf(ErrBadRequest, env.ID, "field \"type\" is required")
	case env.Type == TypeJSONRPC:
		// "jsonrpc" names raw JSON-RPC frames; as an envelope type it has
		// no id of JSON-RPC's shape to answer with.
		if rpc, ok := decodeJSONRPC(b); ok {
			return rpc, nil
		}
		return nil, Errorf(ErrBadRequest, env.ID, "type %q is reserved: send a JSON-RPC 2.0 request without a type, or an rpc envelope", TypeJSONRPC)
	case !validTypeName(env.Type):
		return nil, Errorf(ErrBadRequest, env.ID, typeRule, MaxTypeLen)
	case len(env.ID) > MaxIDLen:
		return nil, Errorf(ErrBadRequest, "", "field \"id\" is longer than %d bytes", MaxIDLen)
	}
	return &env, nil
}

// JSONRPCRequest is a JSON-RPC 2.0 request.
type JSONRPCRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// decodeJSONRPC recognises a raw JSON-RPC 2.0 frame.
func decodeJSONRPC(b []byte) (*Envelope, bool) {
	if !bytes.Contains(b, []byte(`"jsonrpc"`)) {
		return nil, false
	}
	// The raw id and frame are passed on and echoed unchanged, so they must
	// be valid UTF-8 (encoding/json would only repair decoded strings).
	var r JSONRPCRequest
	if !utf8.Valid(b) || json.Unmarshal(b, &r) != nil || r.JSONRPC != "2.0" || len(r.ID) > MaxIDLen {
		return nil, false
	}
	return &Envelope{Type: TypeJSONRPC, ID: string(r.ID), Data: append(json.RawMessage(nil), b...)}, true
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int64", "int", "uint64":
		return "an integer" // "a number" would mislead for 1.5
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	}
	return "a " + goKind
}

// checkShape verifies b is a JSON object with nesting at most MaxDepth,
// without building anything. encoding/json does the full validation after.
func checkShape(b []byte) error {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return Errorf(ErrBadJSON, "", "a message must be a JSON object")
	}
	depth, inStr, esc := 0, false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return Errorf(ErrBadJSON, "", "JSON nested deeper than %d levels", MaxDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// peekID extracts a string "id" from a frame that failed to decode fully,
// so that the error can still name the request.
func peekID(b []byte) string {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(v.ID, &s) != nil || len(s) > MaxIDLen {
		return ""
	}
	return s
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// AppendEnvelope appends the JSON encoding of e to dst. The field order is
// fixed (type, id, room, last_event_id, user_id, data, ts); strings are
// escaped and Data must already be valid JSON.
func AppendEnvelope(dst []byte, e *Envelope) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, e.Type)
	if e.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, e.ID)
	}
	if e.Room != "" {
		dst = append(dst, `,"room":`...)
		dst = AppendString(dst, e.Room)
	}
	if e.LastEventID != "" { // client-side field: Go clients and tests encode subscribes too
		dst = append(dst, `,"last_event_id":`...)
		dst = AppendString(dst, e.LastEventID)
	}
	if e.UserID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = AppendString(dst, e.UserID)
	}
	if len(e.Data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, e.Data...)
	}
	if e.TS != 0 {
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, e.TS, 10)
	}
	if e.ExcludeSelf { // client-side field, like last_event_id
		dst = append(dst, `,"exclude_self":true`...)
	}
	return append(dst, '}')
}

// Encode returns the JSON encoding of e.
func Encode(e *Envelope) []byte {
	return AppendEnvelope(make([]byte, 0, 64+len(e.Data)+len(e.Room)+len(e.ID)), e)
}

// EncodeData marshals v for use as Envelope.Data. It panics only if v cannot
// be marshalled, which for the server's own payload structs is a bug.
func EncodeData(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("protocol: cannot encode %T: %v", v, err))
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping as encoding/json does
// for control characters, quotes, backslashes and invalid UTF-8 (which
// cannot occur in validated input but is replaced rather than passed on).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			i++
			continue
		}
		if c < 0x80 {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Frame is one encoded server message shared by every recipient: the JSON
// text is produced once per broadcast, and each transport caches its own
// wire form (a WebSocket frame, compressed or not, an SSE event, an NDJSON
// line) beside
// it, so a room event with 10,000 recipients is encoded and compressed once.
type Frame struct {
	JSON []byte
	wire [5]atomic.Pointer[[]byte]
}

// NewFrame wraps encoded JSON.
func NewFrame(json []byte) *Frame { return &Frame{JSON: json} }

// Wire returns the cached wire form number slot (0 to 4), building it with
// build on first use. Concurrent first calls may each build; one result
// wins and all results are equal, so that is harmless and lock-free.
func (f *Frame) Wire(slot int, build func(json []byte) []byte) []byte {
	if p := f.wire[slot].Load(); p != nil {
		return *p
	}
	b := build(f.JSON)
	if f.wire[slot].CompareAndSwap(nil, &b) {
		return b
	}
	return *f.wire[slot].Load()
}
