package nats

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Wire format of a publication between nodes: the same bytes in the
// JetStream stream, in the republished copy every subscribed node receives,
// and in core NATS messages (ephemeral events, core-only mode):
//
//	'N' FLAGS uvarint(OFFSET) uvarint(TIME) str(EPOCH) str(TYPE) str(USERID)
//	str(CLIENTID) [str(CLAIM)] DATA
//
// str is uvarint(len) followed by the bytes; DATA runs to the end. A marker
// (flagMarker, offset 0) fixes a room's epoch before its first event; CLAIM
// (flagClaim) names the idempotency claim the event was published under, so
// that a claim left behind by a crashed node can be resolved.
const (
	formatV1      = 'N'
	flagEphemeral = 1 << 0
	flagMarker    = 1 << 1
	flagClaim     = 1 << 2
	// flagExcludeSender: engine.Publication.ExcludeSender.
	flagExcludeSender = 1 << 3
)

var errBadPayload = errors.New("nats: malformed publication payload")

// record is a decoded message: the publication, or a marker.
type record struct {
	pub    *engine.Publication
	marker bool
	claim  string
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// encodePublication encodes pub with the given position. claim may be "".
func encodePublication(pub *engine.Publication, pos protocol.StreamPosition, claim string) []byte {
	var flags byte
	if pub.Ephemeral {
		flags |= flagEphemeral
	}
	if claim != "" {
		flags |= flagClaim
	}
	if pub.ExcludeSender {
		flags |= flagExcludeSender
	}
	b := make([]byte, 0, 24+len(pos.Epoch)+len(pub.Type)+len(pub.UserID)+len(pub.ClientID)+len(claim)+len(pub.Data))
	b = append(b, formatV1, flags)
	b = binary.AppendUvarint(b, pos.Offset)
	b = binary.AppendUvarint(b, uint64(pub.Time))
	b = appendStr(b, pos.Epoch)
	b = appendStr(b, pub.Type)
	b = appendStr(b, pub.UserID)
	b = appendStr(b, pub.ClientID)
	if claim != "" {
		b = appendStr(b, claim)
	}
	return append(b, pub.Data...)
}

// encodeMarker encodes the marker that fixes a room's epoch at offset 0.
func encodeMarker(epoch string, ms int64) []byte {
	b := make([]byte, 0, 16+len(epoch))
	b = append(b, formatV1, flagMarker)
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, uint64(ms))
	b = appendStr(b, epoch)
	return append(b, 0, 0, 0) // empty type, user, client
}

// decodeRecord parses what encodePublication or encodeMarker wrote. Data
// shares memory with b (NATS hands every message its own buffer).
func decodeRecord(b []byte) (record, error) {
	if len(b) < 2 || b[0] != formatV1 {
		return record{}, errBadPayload
	}
	flags := b[1]
	rest := b[2:]
	num := func() (uint64, bool) {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := num()
		if !ok || n > uint64(len(rest)) {
			return "", false
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s, true
	}
	off, ok1 := num()
	ms, ok2 := num()
	epoch, ok3 := str()
	if !ok1 || !ok2 || !ok3 || len(epoch) > protocol.MaxEpochLen {
		return record{}, errBadPayload
	}
	typ, ok1 := str()
	user, ok2 := str()
	client, ok3 := str()
	if !ok1 || !ok2 || !ok3 {
		return record{}, errBadPayload
	}
	var rec record
	if flags&flagClaim != 0 {
		c, ok := str()
		if !ok || c == "" {
			return record{}, errBadPayload
		}
		rec.claim = c
	}
	pub := &engine.Publication{
		Type:          typ,
		UserID:        user,
		ClientID:      client,
		Time:          int64(ms),
		Ephemeral:     flags&flagEphemeral != 0,
		ExcludeSender: flags&flagExcludeSender != 0,
	}
	if len(rest) > 0 {
		pub.Data = rest
	}
	rec.pub = pub
	switch {
	case flags&flagMarker != 0:
		if off != 0 || epoch == "" || pub.Ephemeral {
			return record{}, fmt.Errorf("%w: bad marker", errBadPayload)
		}
		rec.marker = true
		pub.Position = protocol.StreamPosition{Epoch: epoch}
	case pub.Ephemeral:
		// No position: ephemeral events are not in the stream.
	default:
		if off == 0 || epoch == "" {
			return record{}, fmt.Errorf("%w: stream event without a position", errBadPayload)
		}
		pub.Position = protocol.StreamPosition{Offset: off, Epoch: epoch}
	}
	return rec, nil
}

// maxPlainToken is the longest string a subject token carries as is
// (base64url-encoded); longer ones are hashed, so that no room name, user
// id or idempotency key can make a subject longer than NATS accepts (the
// server closes a connection whose control line exceeds 4 KiB).
const maxPlainToken = 192

// token encodes s as one subject token: "k" and base64url of s, or "h" and
// base64url of its SHA-256 when s is long. The alphabet [A-Za-z0-9_-]
// cannot contain '.', '*', '>' or white space, so no name can reach into
// another subject or act as a wildcard, and distinct names give distinct
// tokens.
func token(s string) string {
	if len(s) > maxPlainToken {
		sum := sha256.Sum256([]byte(s))
		return "h" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return "k" + base64.RawURLEncoding.EncodeToString([]byte(s))
}
