package transport

import (
	"encoding/binary"
	"io"
	"net"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/protocol"
)

// frameGuard sits between the socket and gws's reader and fails, as RFC
// 6455 and 7692 require, what gws v1.8.9 lets through or finds late:
//
//   - RSV1 on a continuation or control frame when permessage-deflate is
//     negotiated (RFC 7692 6: only the first frame of a message carries
//     it): gws checks the RSV bits only without the extension. Close 1002.
//   - Invalid UTF-8 in an uncompressed text message: gws checks once the
//     whole message is in; the guard fails at the first bad byte, even in
//     the first fragment (RFC 6455 8.1: "fail fast"). Close 1007.
//
// It only watches the byte stream (frame headers, and the payload of text
// messages that arrive in pieces): gws still parses and checks everything
// else. On a violation Read returns the bytes before it and then
// guardError; gws answers a read error with close code 1000 and the error
// text as reason, which fixCloseCode turns into the guard's code.
//
// A text frame that arrives whole in one read is left to gws, which checks
// it as soon as it has it: the common case costs a header parse only.
// Compressed messages are checked by gws after inflating.
type frameGuard struct {
	r       io.Reader
	deflate bool // permessage-deflate negotiated
	err     error

	hdr  [14]byte
	hn   int   // header bytes seen
	left int64 // payload bytes of the current frame still to come
	key  [4]byte
	kpos int

	check  bool // validating the current frame's payload
	inMsg  bool // a fragmented message is open
	msgChk bool // ... and its text is being validated
	utf    utf8Stream
}

// guardError is a violation found by frameGuard.
type guardError struct {
	code protocol.CloseCode
	msg  string
}

func (e *guardError) Error() string { return e.msg }

var (
	errRSV1Continuation = &guardError{protocol.CloseProtocolError, "RSV1 set on a continuation frame"}
	errRSV1Control      = &guardError{protocol.CloseProtocolError, "RSV1 set on a control frame"}
	errFastUTF8         = &guardError{protocol.CloseInvalidPayload, "invalid UTF-8 in a text message"}
	guardErrors         = []*guardError{errRSV1Continuation, errRSV1Control, errFastUTF8}
)

// guardCode returns the close code for a close frame reason gws built from
// a guard error (see fixCloseCode).
func guardCode(reason string) (protocol.CloseCode, bool) {
	for _, e := range guardErrors {
		if reason == e.msg {
			return e.code, true
		}
	}
	return 0, false
}

func newFrameGuard(r io.Reader, deflate bool) *frameGuard {
	return &frameGuard{r: r, deflate: deflate}
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if k, verr := g.scan(p[:n]); verr != nil {
		g.err = verr
		if k == 0 {
			return 0, verr
		}
		return k, nil // the bytes before the violation; the error next
	}
	return n, err
}

// scan follows the frames in b. On a violation it returns how many bytes
// precede it.
func (g *frameGuard) scan(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		if g.left == 0 && !g.headerDone() {
			start := i - g.hn // where this header began (negative: in an earlier read)
			for i < len(b) && !g.headerDone() {
				g.hdr[g.hn] = b[i]
				g.hn++
				i++
			}
			if !g.headerDone() {
				return len(b), nil
			}
			if err := g.frameStart(len(b) - i); err != nil {
				return max(start, 0), err
			}
			if g.left == 0 {
				g.frameEnd()
			}
			continue
		}
		n := int(min(g.left, int64(len(b)-i)))
		if g.check {
			if at, ok := g.validate(b[i : i+n]); !ok {
				return i + at, errFastUTF8
			}
		}
		i += n
		g.left -= int64(n)
		if g.left == 0 {
			g.frameEnd()
		}
	}
	return len(b), nil
}

// headerDone reports whether g.hdr holds a whole frame header.
func (g *frameGuard) headerDone() bool {
	if g.hn < 2 {
		return false
	}
	need := 2
	switch g.hdr[1] & 0x7F {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	if g.hdr[1]&0x80 != 0 {
		need += 4
	}
	return g.hn >= need
}

// frameStart applies the header in g.hdr; avail is how many bytes of the
// payload are already in this read.
func (g *frameGuard) frameStart(avail int) error {
	fin, rsv1, op := g.hdr[0]&0x80 != 0, g.hdr[0]&0x40 != 0, g.hdr[0]&0x0F
	n, off := int64(g.hdr[1]&0x7F), 2
	switch n {
	case 126:
		n, off = int64(binary.BigEndian.Uint16(g.hdr[2:])), 4
	case 127:
		n, off = int64(binary.BigEndian.Uint64(g.hdr[2:])&(1<<63-1)), 10
	}
	g.key = [4]byte{}
	if g.hdr[1]&0x80 != 0 {
		copy(g.key[:], g.hdr[off:off+4])
	}
	g.left, g.kpos, g.check = n, 0, false
	switch {
	case op >= 0x8:
		if g.deflate && rsv1 {
			return errRSV1Control
		}
	case op == 0x0:
		if g.deflate && rsv1 {
			return errRSV1Continuation
		}
		g.check = g.inMsg && g.msgChk
		g.inMsg = g.inMsg && !fin
	default: // a new data message (gws refuses one inside another)
		text := op == 0x1 && !(g.deflate && rsv1)
		g.inMsg = !fin
		g.msgChk = text && (!fin || n > int64(avail))
		g.check = g.msgChk
		g.utf = utf8Stream{}
	}
	return nil
}

// frameEnd resets the header for the next frame.
func (g *frameGuard) frameEnd() {
	g.hn, g.check = 0, false
}

// validate unmasks b into a scratch buffer and checks it; on failure it
// returns the offset of the chunk that holds the bad byte.
func (g *frameGuard) validate(b []byte) (int, bool) {
	var tmp [256]byte
	for off := 0; off < len(b); off += len(tmp) {
		c := tmp[:min(len(tmp), len(b)-off)]
		src := b[off : off+len(c)]
		// The key rotated to this offset, eight bytes at a time.
		var rk [4]byte
		for j := range rk {
			rk[j] = g.key[(g.kpos+j)&3]
		}
		k32 := uint64(binary.LittleEndian.Uint32(rk[:]))
		k64 := k32 | k32<<32
		j := 0
		for ; j+8 <= len(c); j += 8 {
			binary.LittleEndian.PutUint64(c[j:], binary.LittleEndian.Uint64(src[j:])^k64)
		}
		for ; j < len(c); j++ {
			c[j] = src[j] ^ rk[j&3]
		}
		g.kpos += len(c)
		if !g.utf.write(c) {
			return off, false
		}
	}
	return 0, true
}

// utf8Stream validates UTF-8 that arrives in pieces: a sequence cut at the
// end of one piece is carried into the next. write reports false as soon
// as the bytes so far cannot begin valid UTF-8.
type utf8Stream struct {
	carry [utf8.UTFMax]byte
	n     int
}

func (s *utf8Stream) write(b []byte) bool {
	i := 0
	if s.n > 0 {
		for s.n < len(s.carry) && i < len(b) && !utf8.FullRune(s.carry[:s.n]) {
			s.carry[s.n] = b[i]
			s.n++
			i++
		}
		if !utf8.FullRune(s.carry[:s.n]) {
			return true // still a valid beginning (FullRune rejects bad prefixes)
		}
		if _, size := utf8.DecodeRune(s.carry[:s.n]); size != s.n {
			return false
		}
		s.n = 0
	}
	rest := b[i:]
	cut := len(rest)
	for j := len(rest) - 1; j >= 0 && j >= len(rest)-(utf8.UTFMax-1); j-- {
		if rest[j] < 0x80 {
			break
		}
		if rest[j] >= 0xC0 { // a lead byte: is its sequence cut off?
			if !utf8.FullRune(rest[j:]) {
				cut = j
			}
			break
		}
	}
	if !utf8.Valid(rest[:cut]) {
		return false
	}
	s.n = copy(s.carry[:], rest[cut:])
	return true
}

// closeFixConn corrects the close codes in the close frames gws writes
// (see fixCloseCode); the echo endpoint writes through it.
type closeFixConn struct{ net.Conn }

func (c closeFixConn) Write(p []byte) (int, error) {
	fixCloseCode(p)
	return c.Conn.Write(p)
}
