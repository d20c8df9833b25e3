package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

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
func (c *conn) startFlush() { c.t.startFlush(c) }

// startFlush hands c, whose flushing flag is set, to the flush window or
// the pool.
func (h *WSHandler) startFlush(c flusher) {
	if h.window != nil {
		h.window.add(c)
	} else {
		h.flushers.submit(c)
	}
}

func (c *conn) meter() hub.Meter { return c.t.meter }

// initFD finds the socket's descriptor for direct writes (rawwrite_*.go).
func (c *conn) initFD() { c.fd = socketFD(c.raw) }

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
