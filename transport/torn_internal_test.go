//go:build linux

package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// TestCloseAfterTornFrame: when a direct write leaves a frame half sent
// (the socket took only part of it) and gws writes its close answer before
// the flush writes the rest, the close frame still follows the whole frame
// instead of landing inside its payload. A CI run saw the torn form:
// TestNoDataAfterCloseReply read a stream that ended with no close frame.
func TestCloseAfterTornFrame(t *testing.T) {
	h := poolHandler(t)

	raw, peer := tcpPair(t)
	_ = raw.(*net.TCPConn).SetWriteBuffer(32 << 10)
	_ = peer.(*net.TCPConn).SetReadBuffer(32 << 10)
	c := &conn{t: h, raw: raw}
	defer c.closeRaw()
	c.initFD()
	if c.fd < 0 {
		t.Fatal("no descriptor for direct writes")
	}

	payload := bytes.Repeat([]byte("x"), 4<<20) // far more than the socket buffers hold
	data := textFrame(payload)
	n := c.tryWritev([][]byte{data})
	if n <= 0 || n >= len(data) {
		t.Fatalf("the direct write took %d of %d bytes: want part of the frame", n, len(data))
	}

	// The peer reads while the close answer is written.
	type result struct {
		ops  []byte
		lens []uint64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		br := bufio.NewReader(peer)
		_ = peer.SetReadDeadline(time.Now().Add(20 * time.Second))
		for range 3 {
			var hd [2]byte
			if _, r.err = io.ReadFull(br, hd[:]); r.err != nil {
				break
			}
			size := uint64(hd[1] & 0x7F)
			switch size {
			case 126:
				var b [2]byte
				if _, r.err = io.ReadFull(br, b[:]); r.err != nil {
					break
				}
				size = uint64(binary.BigEndian.Uint16(b[:]))
			case 127:
				var b [8]byte
				if _, r.err = io.ReadFull(br, b[:]); r.err != nil {
					break
				}
				size = binary.BigEndian.Uint64(b[:])
			}
			if r.err != nil {
				break
			}
			if _, r.err = io.CopyN(io.Discard, br, int64(size)); r.err != nil {
				break
			}
			r.ops, r.lens = append(r.ops, hd[0]), append(r.lens, size)
			if hd[0]&0x0F == opClose {
				break
			}
		}
		done <- r
	}()

	cc := &countingConn{Conn: raw, c: c}
	if _, err := cc.Write(controlFrame(opClose, []byte{0x03, 0xe8})); err != nil {
		t.Fatalf("close write: %v", err)
	}
	if n := c.tryWritev([][]byte{textFrame([]byte("after"))}); n != 0 {
		t.Errorf("a data write after the close frame wrote %d bytes", n)
	}
	r := <-done
	want := []byte{0x80 | 0x1, 0x80 | opClose}
	if !bytes.Equal(r.ops, want) || r.lens[0] != uint64(len(payload)) {
		t.Fatalf("peer read frames %x with lengths %v (then %v); want the %d-byte text frame, then the close frame", r.ops, r.lens, r.err, len(payload))
	}
}
