package transport

import (
	"net"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

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
		rest, size := unwrittenItems(bufs, n)
		clear(bufs)
		c.mu.Lock()
		c.qbytes += size
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
			rest := skipWritten(bufs, n)
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

// unwrittenItems returns what a write of n bytes of bufs left, as raw
// items in order, and their size.
func unwrittenItems(bufs [][]byte, n int) ([]item, int) {
	rest := make([]item, 0, len(bufs))
	size := 0
	for _, b := range bufs {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		rest = append(rest, item{raw: b[n:]})
		size += len(b) - n
		n = 0
	}
	return rest, size
}

// skipWritten returns bufs without its first n bytes, which were written.
func skipWritten(bufs net.Buffers, n int64) net.Buffers {
	for n > 0 {
		if n < int64(len(bufs[0])) {
			bufs[0] = bufs[0][n:]
			break
		}
		n -= int64(len(bufs[0]))
		bufs = bufs[1:]
	}
	return bufs
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
