package protocol

import (
	"strconv"
	"strings"
)

// StreamPosition is a place in a room's ordered stream of events. Offset
// counts events published to the room (the first is 1); Epoch names one
// unbroken history of the room and changes when that history is lost (an
// in-memory engine restarting, Redis losing its data), so that a client's
// old offset is never mistaken for a new one.
type StreamPosition struct {
	Offset uint64
	Epoch  string
}

// EventID formats the position as the event id clients see: "EPOCH-OFFSET".
func (p StreamPosition) EventID() string {
	return p.Epoch + "-" + strconv.FormatUint(p.Offset, 10)
}

// AppendEventID appends the event id to dst without allocating.
func (p StreamPosition) AppendEventID(dst []byte) []byte {
	dst = append(dst, p.Epoch...)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, p.Offset, 10)
}

// MaxEpochLen bounds epochs; engines generate short random ones.
const MaxEpochLen = 32

// ParseEventID parses an id made by EventID. ok is false for anything else.
func ParseEventID(id string) (p StreamPosition, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || i > MaxEpochLen || i == len(id)-1 {
		return p, false
	}
	epoch := id[:i]
	for j := 0; j < len(epoch); j++ {
		c := epoch[j]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return p, false
		}
	}
	off, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return p, false
	}
	return StreamPosition{Offset: off, Epoch: epoch}, true
}
