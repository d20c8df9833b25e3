package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"
)

// wsConn is a minimal WebSocket client: just what the load tool needs, and
// cheap, because the clients share two cores with the server they measure.
// It reads unfragmented server frames in place from a small buffer and
// writes masked frames. Reads happen on one goroutine; writes may come
// from any (they are serialized).
type wsConn struct {
	nc      net.Conn
	br      *bufio.Reader
	discard int // bytes of the previous frame still in br

	wmu  sync.Mutex
	wbuf []byte
}

// WebSocket opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// clientReadBuffer holds a few of the server's ~250-byte event frames. A
// larger frame is read into a buffer of its own.
const clientReadBuffer = 2048

// websocketGUID is the RFC 6455 handshake constant.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

var errFragmented = errors.New("fragmented server frame (not used by Switchboard)")

// dialWS opens a WebSocket connection to hostport+path from the dialer's
// local address. It returns once the server's 101 answer is read and
// checked.
func dialWS(ctx context.Context, d *net.Dialer, hostport, path string) (*wsConn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	nc, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &wsConn{nc: nc, br: bufio.NewReaderSize(nc, clientReadBuffer)}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if err := c.handshake(hostport, path); err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *wsConn) handshake(hostport, path string) error {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + hostport +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	sum := sha1.Sum([]byte(key + websocketGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	status, accepted := "", false
	for i := 0; ; i++ {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read handshake answer: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if i == 0 {
			status = string(line)
			continue
		}
		if len(line) == 0 {
			break
		}
		if i > 64 {
			return errors.New("handshake answer has too many header lines")
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Accept")) {
			accepted = string(bytes.TrimSpace(v)) == want
		}
	}
	if len(status) < 12 || status[9:12] != "101" {
		return fmt.Errorf("handshake refused: %q", status)
	}
	if !accepted {
		return errors.New("handshake answer has a wrong or no Sec-WebSocket-Accept")
	}
	return nil
}

// readFrame returns the next frame. The payload is valid until the next
// call. Only the reading goroutine may call it.
func (c *wsConn) readFrame() (op byte, payload []byte, err error) {
	if c.discard > 0 {
		_, _ = c.br.Discard(c.discard)
		c.discard = 0
	}
	h, err := c.br.Peek(2)
	if err != nil {
		return 0, nil, err
	}
	b0, b1 := h[0], h[1]
	hl, n := 2, int(b1&0x7F)
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if b1&0x80 != 0 {
		return 0, nil, errors.New("masked server frame")
	}
	if b0&0x80 == 0 || b0&0x0F == 0 {
		return 0, nil, errFragmented
	}
	if hl > 2 {
		if h, err = c.br.Peek(hl); err != nil {
			return 0, nil, err
		}
		if hl == 4 {
			n = int(binary.BigEndian.Uint16(h[2:]))
		} else {
			u := binary.BigEndian.Uint64(h[2:])
			if u > 16<<20 {
				return 0, nil, fmt.Errorf("server frame of %d bytes", u)
			}
			n = int(u)
		}
	}
	op = b0 & 0x0F
	if hl+n <= c.br.Size() {
		b, err := c.br.Peek(hl + n)
		if err != nil {
			return 0, nil, err
		}
		c.discard = hl + n
		return op, b[hl:], nil
	}
	_, _ = c.br.Discard(hl)
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return op, payload, nil
}

// write sends one masked frame with FIN set.
func (c *wsConn) write(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := mrand.Uint32()
	b = binary.BigEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, p...)
	mask(b[start:], key)
	c.wbuf = b
	_, err := c.nc.Write(b)
	if cap(c.wbuf) > 4096 {
		c.wbuf = nil
	}
	return err
}

// mask applies the RFC 6455 masking key (big-endian byte order) to b.
func mask(b []byte, key uint32) {
	k := [4]byte{byte(key >> 24), byte(key >> 16), byte(key >> 8), byte(key)}
	k64 := uint64(bits.ReverseBytes32(key))
	k64 |= k64 << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// closeWS sends a close frame with code (best effort) and then drops the
// connection. With abort, it resets the connection instead (no close
// frame, no TIME_WAIT), which keeps runs with thousands of connections
// from exhausting loopback ports for the next run.
func (c *wsConn) closeWS(code uint16, abort bool) {
	if abort {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	} else {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.write(opClose, binary.BigEndian.AppendUint16(nil, code))
	}
	_ = c.nc.Close()
}
