package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Wire format of a publication between nodes, the same bytes in the room
// channel and in the history stream:
//
//	'S' OFFSET ' ' TIME ' ' EPOCH ' ' BODY
//
// OFFSET and TIME (Unix ms) are decimal, EPOCH is [a-z0-9]* (empty for
// ephemeral events). The Lua publish script writes the header, because only
// it knows the offset, the epoch and Redis's clock; Go writes BODY once:
//
//	FLAGS(1) uvarint(len) TYPE uvarint(len) USERID uvarint(len) CLIENTID DATA
//
// DATA runs to the end. A text header keeps the Lua side to one string
// concatenation; the binary body avoids escaping JSON data.
const (
	formatV1          = 'S'
	flagEphemeral     = 1 << 0
	flagExcludeSender = 1 << 1
)

var errBadPayload = errors.New("redis: malformed publication payload")

// appendBody appends pub's BODY to dst.
func appendBody(dst []byte, pub *engine.Publication) []byte {
	var flags byte
	if pub.Ephemeral {
		flags |= flagEphemeral
	}
	if pub.ExcludeSender {
		flags |= flagExcludeSender
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(pub.Type)))
	dst = append(dst, pub.Type...)
	dst = binary.AppendUvarint(dst, uint64(len(pub.UserID)))
	dst = append(dst, pub.UserID...)
	dst = binary.AppendUvarint(dst, uint64(len(pub.ClientID)))
	dst = append(dst, pub.ClientID...)
	return append(dst, pub.Data...)
}

// encodeEphemeral encodes an ephemeral publication completely; Go writes the
// header itself because no script is involved.
func encodeEphemeral(pub *engine.Publication) string {
	b := make([]byte, 0, 24+len(pub.Type)+len(pub.UserID)+len(pub.ClientID)+len(pub.Data))
	b = append(b, formatV1, '0', ' ')
	b = strconv.AppendInt(b, pub.Time, 10)
	b = append(b, ' ', ' ')
	b = appendBody(b, pub)
	return string(b)
}

// decodePublication parses a payload written by the publish script or by
// encodeEphemeral. Strings share memory with s; Data is a copy.
func decodePublication(s string) (*engine.Publication, error) {
	if len(s) < 1 || s[0] != formatV1 {
		return nil, errBadPayload
	}
	rest := s[1:]
	field := func() (string, bool) {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return "", false
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f, true
	}
	offS, ok1 := field()
	timeS, ok2 := field()
	epoch, ok3 := field()
	if !ok1 || !ok2 || !ok3 || len(epoch) > protocol.MaxEpochLen {
		return nil, errBadPayload
	}
	off, err := strconv.ParseUint(offS, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: offset: %w", errBadPayload, err)
	}
	ms, err := strconv.ParseInt(timeS, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: time: %w", errBadPayload, err)
	}
	if len(rest) < 1 {
		return nil, errBadPayload
	}
	flags := rest[0]
	rest = rest[1:]
	str := func() (string, bool) {
		n, k := uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		v := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return v, true
	}
	typ, ok1 := str()
	user, ok2 := str()
	client, ok3 := str()
	if !ok1 || !ok2 || !ok3 {
		return nil, errBadPayload
	}
	pub := &engine.Publication{
		Type:          typ,
		UserID:        user,
		ClientID:      client,
		Time:          ms,
		Ephemeral:     flags&flagEphemeral != 0,
		ExcludeSender: flags&flagExcludeSender != 0,
	}
	if len(rest) > 0 {
		pub.Data = []byte(rest)
	}
	if !pub.Ephemeral {
		if off == 0 || epoch == "" {
			return nil, fmt.Errorf("%w: stream event without a position", errBadPayload)
		}
		pub.Position = protocol.StreamPosition{Offset: off, Epoch: epoch}
	}
	return pub, nil
}

// uvarint is binary.Uvarint for a string, without converting it.
func uvarint(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(b)<<sh, i + 1
		}
		x |= uint64(b&0x7f) << sh
		sh += 7
	}
	return 0, 0
}
