package protocol

import "strings"

// Room-name rules. Names are ASCII so they are safe in logs, metrics, Redis
// keys and URLs; ':' separates a namespace from the rest ("chat:lobby",
// "user:42"), and namespaces carry per-namespace settings.
const (
	// MaxRoomLen bounds a room name. 200 bytes leaves room for a key prefix
	// inside Redis and NATS subject limits.
	MaxRoomLen = 200
)

// ValidateRoom returns nil if name is a valid room name, or an *Error with
// code invalid_room that says what is wrong.
func ValidateRoom(name string) *Error {
	if name == "" {
		return &Error{Code: ErrInvalidRoom, Message: "room name is empty"}
	}
	if len(name) > MaxRoomLen {
		return Errorf(ErrInvalidRoom, "", "room name is longer than %d bytes", MaxRoomLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':' || c == '@' || c == '=' || c == '+' || c == '/') {
			return Errorf(ErrInvalidRoom, "", "room name has a character outside a-z A-Z 0-9 _ - . : @ = + / at byte %d", i)
		}
	}
	if name[0] == ':' || name[len(name)-1] == ':' {
		return &Error{Code: ErrInvalidRoom, Message: "room name cannot start or end with ':'"}
	}
	return nil
}

// Namespace returns the part of a room name before the first ':', or "" for
// a room without one.
func Namespace(room string) string {
	if i := strings.IndexByte(room, ':'); i > 0 {
		return room[:i]
	}
	return ""
}
