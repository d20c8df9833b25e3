package transport

import (
	"bytes"
	"encoding/binary"
	"sync"

	"github.com/klauspost/compress/flate"
)

// WebSocket opcodes the writer emits. Parsing of client frames is the
// library's job (github.com/lxzan/gws); the server side only needs to put a
// header in front of a payload it already has, so that one encoded frame
// can be shared by every recipient of a room event.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// Wire slots in protocol.Frame.
const (
	slotPlain   = 0
	slotDeflate = 1
)

// pingFrame is an unmasked ping with no payload, shared by all connections.
var pingFrame = []byte{0x80 | opPing, 0x00}

// appendHeader appends an unmasked server frame header.
func appendHeader(dst []byte, opcode byte, rsv1 bool, n int) []byte {
	b0 := 0x80 | opcode
	if rsv1 {
		b0 |= 0x40
	}
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// textFrame returns payload as one unmasked text frame.
func textFrame(payload []byte) []byte {
	b := make([]byte, 0, len(payload)+10)
	b = appendHeader(b, opText, false, len(payload))
	return append(b, payload...)
}

// controlFrame returns a control frame (payload at most 125 bytes).
func controlFrame(opcode byte, payload []byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	b := make([]byte, 0, len(payload)+2)
	b = appendHeader(b, opcode, false, len(payload))
	return append(b, payload...)
}

// deflater compresses text frames for permessage-deflate with
// server_no_context_takeover: each message is compressed on its own, so one
// compressed frame serves every recipient. Payloads under threshold are sent
// uncompressed (RFC 7692 allows it per message): small JSON does not shrink.
type deflater struct {
	threshold int
	level     int
	pool      sync.Pool // *flate.Writer
}

func newDeflater(threshold, level int) *deflater {
	d := &deflater{threshold: threshold, level: level}
	d.pool.New = func() any {
		w, _ := flate.NewWriter(nil, level)
		return w
	}
	return d
}

// frame returns payload as a text frame, compressed when worthwhile.
func (d *deflater) frame(payload []byte) []byte {
	if len(payload) < d.threshold {
		return textFrame(payload)
	}
	var buf bytes.Buffer
	buf.Grow(len(payload)/2 + 16)
	w := d.pool.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(payload)
	_ = w.Flush()
	d.pool.Put(w)
	c := buf.Bytes()
	// RFC 7692 7.2.1: drop the 0x00 0x00 0xff 0xff tail of the sync flush.
	if n := len(c); n >= 4 && c[n-4] == 0 && c[n-3] == 0 && c[n-2] == 0xff && c[n-1] == 0xff {
		c = c[:n-4]
	}
	if len(c) >= len(payload) {
		return textFrame(payload)
	}
	out := make([]byte, 0, len(c)+10)
	out = appendHeader(out, opText, true, len(c))
	return append(out, c...)
}
