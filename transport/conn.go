package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// conn is one WebSocket connection: the gws read side, our write queue, and
// the hub client it feeds. It implements hub.Sink.
//
// The write path: Send appends a shared *protocol.Frame to a bounded queue
// and, if no flush is pending, hands the connection to the flush pool
// (after the flush window, if one is set). A pool worker takes everything
// queued and writes it with one non-blocking writev; what the socket does
// not take goes to a flush goroutine of the connection's own, which waits
// for room. So an idle connection has no writer goroutine, and a busy one
// coalesces whatever piled up into one system call.
type conn struct {
	t       *WSHandler
	ws      *gws.Conn
	raw     net.Conn // the hijacked connection; our frames go straight to it
	client  *hub.Client
	deflate bool
	remote  string
	start   time.Time
	slot    int // heartbeat wheel slot
	// jsonPing: the heartbeat also sends {"type":"ping"} (jsonping.go).
	jsonPing bool

	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	lastSeen atomic.Int64 // unix nanos of the last frame read
	pingSent atomic.Int64 // unix nanos of the last unanswered ping check

	mu       sync.Mutex
	queue    []item
	spare    []item
	qbytes   int
	flushing bool
	closing  bool                 // no more Sends; a close is queued or done
	closeD   *protocol.Disconnect // what we close with, nil if the peer closed
	done     bool                 // the read loop ended

	// The socket's descriptor, for the flush's direct non-blocking writes
	// (see tryWritev); -1 when there is none (TLS, a blocking descriptor)
	// or after closeRaw. Writers hold sockMu for reading so that the
	// descriptor cannot be closed, and its number reused by another
	// connection, during a write.
	sockMu sync.RWMutex
	fd     int
	// wclosed (under sockMu) is set when a close frame is written: no data
	// frame may follow it (RFC 6455 5.5.1). gws writes its close answer
	// on the read goroutine while a flush may be writing, so the close
	// write takes sockMu exclusively and data writes check this.
	wclosed bool
	// tail (under sockMu, set by the one data writer) is the unwritten end
	// of a frame that a write left half sent, nil when the last write
	// ended on a frame boundary. A close frame written between two data
	// writes sends it first: a close inside a torn frame would be read as
	// that frame's payload.
	tail []byte
}

// closeRaw closes the socket once no direct write is using it. Every close
// of c.raw goes through here.
func (c *conn) closeRaw() error {
	c.sockMu.Lock()
	c.fd = -1
	c.sockMu.Unlock()
	return c.raw.Close()
}

// item is one queued frame: a shared event frame or raw control bytes.
type item struct {
	f   *protocol.Frame
	raw []byte
}

func (it item) size() int {
	if it.f != nil {
		return len(it.f.JSON) + 10
	}
	return len(it.raw)
}

// Send implements hub.Sink.
func (c *conn) Send(f *protocol.Frame) bool { return c.enqueue(item{f: f}) }

func (c *conn) enqueue(it item) bool {
	o := &c.t.opts
	size := it.size()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	q, qbytes, dropped, ok := makeRoom(o, c.queue, c.qbytes, size, item.size)
	if !ok {
		c.mu.Unlock()
		c.t.meter.SlowConsumer()
		c.closeWith(protocol.NewDisconnect(protocol.CloseSlowConsumer, "outbound queue full"), true)
		return false
	}
	if dropped > 0 {
		c.queue, c.qbytes = q, qbytes
		c.t.meter.QueueDrop(dropped)
	}
	c.queue = append(c.queue, it)
	c.qbytes += size
	start := !c.flushing
	c.flushing = true
	c.mu.Unlock()
	if start {
		c.startFlush()
	}
	return true
}

// startFlush hands c, whose flushing flag the caller set, to the flush
// window or the pool.
func (c *conn) startFlush() {
	if c.t.window != nil {
		c.t.window.add(c)
	} else {
		c.t.flushers.submit(c)
	}
}

// queueHandshake puts the held 101 answer (see countingConn.hold) at the
// front of c's queue, before anything the hub queues, so that it goes out
// in the same write as connection_established.
func (c *conn) queueHandshake(b []byte) {
	c.mu.Lock()
	c.queue = append(c.queue, item{raw: b})
	c.qbytes += len(b)
	c.mu.Unlock()
}

// kick starts a flush of what is queued if none is pending: after the
// handshake, for a 101 answer that nothing else was queued behind.
func (c *conn) kick() {
	c.mu.Lock()
	start := !c.flushing && !c.closing && len(c.queue) > 0
	if start {
		c.flushing = true
	}
	c.mu.Unlock()
	if start {
		c.startFlush()
	}
}

// takeBatch empties the queue, which is batch, and unlocks c.mu (held by
// the caller); it returns batch's frames in bufs (emptied first) for one
// writev, and their total length.
func (c *conn) takeBatch(batch []item, bufs [][]byte) ([][]byte, int) {
	c.queue, c.spare = c.spare[:0], nil
	c.qbytes = 0
	c.mu.Unlock()
	bufs = bufs[:0]
	total := 0
	for _, it := range batch {
		b := it.raw
		if it.f != nil {
			b = c.wire(it.f)
		}
		bufs = append(bufs, b)
		total += len(b)
	}
	return bufs, total
}

// flushFast is one pool round for c: one non-blocking writev of what is
// queued. It returns bufs emptied, for reuse, and the bytes written, which
// the caller adds to the handler's meter.
func (c *conn) flushFast(bufs [][]byte) ([][]byte, int) {
	c.mu.Lock()
	batch := c.queue
	if len(batch) == 0 || c.closing {
		c.mu.Unlock()
		go c.flush()
		return bufs, 0
	}
	bufs, total := c.takeBatch(batch, bufs)
	n := c.tryWritev(bufs)
	written := n
	if n > 0 {
		c.bytesOut.Add(uint64(n))
	}
	clear(batch)
	if n < total {
		// The unwritten rest goes back in front, in order, for a
		// blocking flush.
		rest := make([]item, 0, len(bufs))
		for _, b := range bufs {
			if n >= len(b) {
				n -= len(b)
				continue
			}
			rest = append(rest, item{raw: b[n:]})
			n = 0
		}
		clear(bufs)
		c.mu.Lock()
		for _, it := range rest {
			c.qbytes += len(it.raw)
		}
		c.queue = append(rest, c.queue...)
		c.mu.Unlock()
		go c.flush()
		return bufs[:0], written
	}
	clear(bufs)
	c.mu.Lock()
	if cap(batch) <= maxSpareCap {
		c.spare = batch[:0]
	}
	more := len(c.queue) > 0
	c.flushing = more
	c.mu.Unlock()
	if more {
		c.t.flushers.submit(c)
	}
	return bufs[:0], written
}

// Close implements hub.Sink: queue a disconnect event and the close frame
// behind what is already queued.
func (c *conn) Close(d protocol.Disconnect) { c.closeWith(d, false) }

// closeWith starts closing with d. With discard, what is queued is dropped
// first (a slow consumer will never read it; it recovers from history).
func (c *conn) closeWith(d protocol.Disconnect, discard bool) {
	ev := protocol.NewFrame(protocol.Encode(&protocol.Envelope{Type: protocol.TypeDisconnect, Data: protocol.EncodeData(d)}))
	c.mu.Lock()
	if c.closing || c.done {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeD = &d
	if discard {
		clear(c.queue)
		c.queue, c.qbytes = c.queue[:0], 0
	}
	c.queue = append(c.queue, item{f: ev})
	start := !c.flushing
	c.flushing = true
	c.mu.Unlock()
	if start {
		go c.flush()
	}
	// A peer that stops reading must not hold the connection open past the
	// write timeout: the flush's deadline ends the write, and this ends
	// the connection if even that does not happen.
	time.AfterFunc(c.t.opts.WriteTimeout+time.Second, func() { _ = c.closeRaw() })
}

// flush writes queued frames until the queue is empty. Exactly one flush
// runs per connection at a time (guarded by c.flushing).
func (c *conn) flush() {
	var bufs net.Buffers
	for {
		c.mu.Lock()
		batch := c.queue
		if len(batch) == 0 {
			c.flushing = false
			closing, d := c.closing, c.closeD
			c.mu.Unlock()
			if closing && d != nil {
				// The disconnect event went out with the last batch; now the
				// close frame, through gws so that it knows the handshake
				// has started and does not answer the peer's close again.
				_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
				_ = c.ws.WriteClose(uint16(d.Code), []byte(d.Reason))
			}
			return
		}
		var total int
		bufs, total = c.takeBatch(batch, bufs)
		// One non-blocking writev first: a socket with room takes it all
		// and no write deadline (a timer update per flush, measurable in
		// fan-out) is needed. Only what it did not take waits for room,
		// within the write timeout.
		n := int64(c.tryWritev(bufs))
		calls := 0
		if n > 0 {
			calls++
		}
		var err error
		if n < int64(total) {
			calls++
			rest := bufs
			for skip := n; skip > 0; {
				if skip < int64(len(rest[0])) {
					rest[0] = rest[0][skip:]
					break
				}
				skip -= int64(len(rest[0]))
				rest = rest[1:]
			}
			var m int64
			c.sockMu.RLock()
			if c.wclosed {
				err = net.ErrClosed // a close frame went out: the rest is dropped
			} else {
				_ = c.raw.SetWriteDeadline(time.Now().Add(c.t.opts.WriteTimeout))
				m, err = rest.WriteTo(c.raw)
				if err == nil {
					c.tail = nil
				} // else the socket is closed below: no close frame follows
			}
			c.sockMu.RUnlock()
			n += m
		}
		clear(bufs)
		c.bytesOut.Add(uint64(n))
		c.t.meter.Written(int(n), calls)
		clear(batch)
		c.mu.Lock()
		if cap(batch) <= maxSpareCap {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
		if err != nil {
			// The peer is gone or stalled past the write timeout.
			_ = c.closeRaw()
			c.mu.Lock()
			c.closing = true
			clear(c.queue)
			c.queue, c.flushing = nil, false
			c.mu.Unlock()
			return
		}
	}
}

// maxSpareCap keeps a burst's large batch slice from staying with an idle
// connection.
const maxSpareCap = 64

func (c *conn) wire(f *protocol.Frame) []byte {
	if c.deflate {
		return f.Wire(slotDeflate, c.t.deflater.frame)
	}
	return f.Wire(slotPlain, textFrame)
}

// ---- gws events (all on the connection's read goroutine) ----

type events struct{ t *WSHandler }

func (e events) OnOpen(ws *gws.Conn) {}

func (e events) OnClose(ws *gws.Conn, err error) {
	c := connOf(ws)
	if c == nil {
		return
	}
	c.mu.Lock()
	c.done, c.closing = true, true
	d := c.closeD
	clear(c.queue)
	c.queue = nil
	c.mu.Unlock()
	_ = c.closeRaw()
	c.t.untrack(c)
	code, reason := closeCodeOf(d, err)
	c.t.meter.Closed(code)
	if c.client != nil {
		c.client.GoneWith(code, reason)
		c.t.log.Info("disconnect",
			"conn", c.client.ID(), "user", c.client.UserID(), "remote", c.remote,
			"duration", time.Since(c.start).Round(time.Millisecond).String(),
			"bytes_in", c.bytesIn.Load(), "bytes_out", c.bytesOut.Load(),
			"code", int(code), "reason", reason, "by", map[bool]string{true: "server", false: "client"}[d != nil])
	}
}

// closeCodeOf names the close: ours if we sent one, the peer's close
// frame, or 1006 when the connection just ended.
func closeCodeOf(d *protocol.Disconnect, err error) (protocol.CloseCode, string) {
	if d != nil {
		return d.Code, d.Reason
	}
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		if ce.Code == 0 { // a close frame without a status: RFC 6455 reports that as 1005
			return 1005, "closed without a status code"
		}
		return protocol.CloseCode(ce.Code), string(ce.Reason)
	}
	var sc interface{ Uint16() uint16 }
	if errors.As(err, &sc) {
		return protocol.CloseCode(sc.Uint16()), err.Error()
	}
	var ge *guardError
	if errors.As(err, &ge) {
		return ge.code, ge.msg
	}
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &corrupt):
		return protocol.CloseInvalidPayload, err.Error()
	case errors.Is(err, gws.ErrTextEncoding):
		return protocol.CloseInvalidPayload, err.Error()
	case err == nil, errors.Is(err, io.EOF):
		return 1006, "connection closed without a close frame"
	}
	return 1006, err.Error()
}

func (e events) OnPing(ws *gws.Conn, payload []byte) {
	if c := connOf(ws); c != nil {
		c.lastSeen.Store(time.Now().UnixNano())
		c.enqueue(item{raw: controlFrame(opPong, payload)})
	}
}

func (e events) OnPong(ws *gws.Conn, payload []byte) {
	if c := connOf(ws); c != nil {
		c.lastSeen.Store(time.Now().UnixNano())
	}
}

func (e events) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := connOf(ws)
	if c == nil {
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
	if msg.Opcode != gws.OpcodeText {
		c.Close(protocol.NewDisconnect(protocol.CloseUnsupportedData, "binary frames are not supported: send JSON text frames"))
		return
	}
	// A panic while handling one message (a bug, or an embedder's hook)
	// ends this connection with 1011, not the process or other
	// connections.
	defer func() {
		if p := recover(); p != nil {
			e.t.log.Error("transport: panic while handling a message", "conn", c.client.ID(), "panic", fmt.Sprint(p))
			c.Close(protocol.NewDisconnect(protocol.CloseInternalError, "internal error"))
		}
	}()
	if e.t.debug {
		e.t.log.Debug("message", "conn", c.client.ID(), "bytes", msg.Data.Len(), "frame", truncate(msg.Bytes(), 256))
	}
	c.client.HandleMessage(msg.Bytes())
}

// truncate shortens a frame for a debug log line.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// session is the gws per-connection storage, reduced to the one pointer we
// need instead of gws's default map.
type session struct{ c *conn }

func (s *session) Len() int { return 1 }
func (s *session) Load(key string) (any, bool) {
	return s.c, s.c != nil
}
func (s *session) Delete(key string)                        {}
func (s *session) Store(key string, value any)              { s.c, _ = value.(*conn) }
func (s *session) Range(f func(key string, value any) bool) { f("c", s.c) }

func connOf(ws *gws.Conn) *conn {
	if s, ok := ws.Session().(*session); ok {
		return s.c
	}
	return nil
}

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

// fixCloseCode corrects a gws quirk: every failure to inflate a compressed
// message is closed with 1011 (server error, "reconnect"). One that
// inflates past the read limit gets 1009, as every oversize message does;
// corrupt compressed data is the client's invalid payload, 1007. A
// frameGuard error, which gws closes with 1000, gets the guard's code.
func fixCloseCode(p []byte) {
	if len(p) < 4 || p[0] != 0x80|opClose || p[1]&0x80 != 0 {
		return
	}
	n := int(p[1] & 0x7F)
	if n < 2 || len(p) < 2+n {
		return
	}
	if code, ok := guardCode(string(p[4 : 2+n])); ok { // gws sent 1000 for a frameGuard error
		binary.BigEndian.PutUint16(p[2:], uint16(code))
		return
	}
	if binary.BigEndian.Uint16(p[2:]) != uint16(protocol.CloseInternalError) {
		return
	}
	switch reason := string(p[4 : 2+n]); {
	case reason == gws.ErrMessageTooLarge.Error():
		binary.BigEndian.PutUint16(p[2:], uint16(protocol.CloseMessageTooBig))
	case strings.HasPrefix(reason, "flate: corrupt input"):
		binary.BigEndian.PutUint16(p[2:], uint16(protocol.CloseInvalidPayload))
	}
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
