package transport

import (
	"bytes"
	"net"
	"time"
)

// countingConn is what gws reads from and writes its own frames (close,
// in the handshake the 101 answer) to. It counts bytes in, and turns gws's
// abrupt Close after a close frame into a half-close: the peer can still
// answer with its close frame, and the read loop then ends the connection
// (or the linger timer does).
//
// During the upgrade it holds gws's 101 answer instead of writing it: the
// answer then goes out with connection_established in one write, which
// saves a system call and a wake-up of the client per connection.
type countingConn struct {
	net.Conn
	c    *conn
	hold bool   // set only by ServeHTTP, before the read loop starts
	held []byte // the 101 answer
}

// switching starts the only answer held: 101 Switching Protocols. An error
// answer is written at once (gws closes the connection right after it).
var switching = []byte("HTTP/1.1 101 ")

// SetDeadline is a no-op while the answer is held: there is no I/O to
// bound, and gws sets one around its write and clears it after.
func (cc *countingConn) SetDeadline(t time.Time) error {
	if cc.hold {
		return nil
	}
	return cc.Conn.SetDeadline(t)
}

// closeLinger is how long we wait for the peer's close frame after ours.
const closeLinger = 2 * time.Second

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	if n > 0 && cc.c != nil {
		cc.c.bytesIn.Add(uint64(n))
		cc.c.t.meter.BytesIn(n)
	}
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	if cc.hold && bytes.HasPrefix(p, switching) {
		cc.held = append([]byte(nil), p...) // gws reuses p
		return len(p), nil
	}
	fixCloseCode(p)
	if cc.c != nil && len(p) > 0 && p[0] == 0x80|opClose {
		// No data frame after the close: wait for a flush's write in
		// progress, write the close, and bar the data writes after it.
		cc.c.sockMu.Lock()
		defer cc.c.sockMu.Unlock()
		cc.c.wclosed = true
		if t := cc.c.tail; len(t) > 0 {
			cc.c.tail = nil
			n, err := cc.Conn.Write(t)
			cc.c.bytesOut.Add(uint64(n))
			if err != nil {
				return 0, err
			}
		}
	}
	n, err := cc.Conn.Write(p)
	if n > 0 && cc.c != nil {
		cc.c.bytesOut.Add(uint64(n))
		cc.c.t.meter.Written(n, 1)
	}
	return n, err
}

func (cc *countingConn) Close() error {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := cc.Conn.(closeWriter); ok && cw.CloseWrite() == nil {
		time.AfterFunc(closeLinger, func() { _ = cc.closeRaw() })
		return nil
	}
	return cc.closeRaw()
}

func (cc *countingConn) closeRaw() error {
	if cc.c == nil {
		return cc.Conn.Close()
	}
	return cc.c.closeRaw()
}
