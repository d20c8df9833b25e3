// The hijacked SSE path. On HTTP/1.x a stream takes its connection over
// from net/http once it is accepted, writes the response head itself (no
// chunked encoding: the body ends with the connection) and is written as
// a WebSocket is: the flush pool makes one non-blocking writev of all that
// is queued, of the events shared by every recipient, and only a socket
// without room gets a flush goroutine of its own. net/http's chunked
// writer, bufio and a Flush per batch cost a third more CPU per delivery
// than a WebSocket (docs/benchmarks.md).

package transport

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// sseRaw is a stream's hijacked connection. The flush pool, or a flush
// goroutine while the socket is full or the stream closing, writes; the
// request's goroutine (run) reads, to see the client go away, and queues
// the heartbeats.
type sseRaw struct {
	c   *sseConn
	raw net.Conn
	// fd is the socket's descriptor for direct writes, -1 without one or
	// after closeRaw; writers hold sockMu for reading so that it cannot
	// be closed, and its number reused, during a write (as conn's).
	sockMu sync.RWMutex
	fd     int
	// pending is written before anything queued: the response head, or
	// the rest of a write the socket did not take all of. Only the one
	// writer uses it; a partial rest is kept here, not queued, so that
	// drop_oldest cannot drop half an event.
	pending [][]byte

	// Under c.mu: the stream's writing has ended, after its last event
	// (err nil) or a failed write.
	ended bool
	err   error
}

// hijack takes an HTTP/1.x stream's connection over from net/http and
// holds the response head and the `retry:` field for the first write. It
// returns nil, nil when the ResponseWriter cannot be hijacked (HTTP/2, a
// recorder): the stream then stays with net/http.
func (c *sseConn) hijack(w http.ResponseWriter, r *http.Request) (*sseRaw, error) {
	if r.ProtoMajor != 1 {
		return nil, nil
	}
	raw, _, err := http.NewResponseController(w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// net/http may have left its timeouts on the connection. What the
	// client sent after the request, in the reader Hijack returned, is
	// ignored, as everything it sends later is.
	_ = raw.SetDeadline(time.Time{})
	return &sseRaw{c: c, raw: raw, fd: socketFD(raw), pending: [][]byte{c.appendPrelude(sseHead(w.Header()))}}, nil
}

// sseHead is a hijacked stream's response head, with hd.
func sseHead(hd http.Header) []byte {
	hd.Set("Connection", "close")
	b := bytes.NewBuffer(make([]byte, 0, 512))
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hd.Write(b)
	b.WriteString("\r\n")
	return b.Bytes()
}

func (o *sseRaw) kick() { o.c.s.h.startFlush(o) }

func (o *sseRaw) meter() hub.Meter { return o.c.s.h.meter }

// flushFast is one pool round (see flusher).
func (o *sseRaw) flushFast(bufs [][]byte) ([][]byte, int) {
	c := o.c
	c.mu.Lock()
	batch := c.queue
	if c.closing {
		// The disconnect event, then the end: a flush goroutine does both.
		c.mu.Unlock()
		go o.flush()
		return bufs, 0
	}
	bufs, total := c.takeBatch(batch, append(bufs[:0], o.pending...))
	o.pending = nil
	n := o.tryWritev(bufs)
	if n < total {
		o.keep(bufs, n)
		clear(bufs)
		c.recycle(batch, false)
		go o.flush()
		return bufs[:0], n
	}
	clear(bufs)
	if c.recycle(batch, true) {
		c.s.h.flushers.submit(o)
	}
	return bufs[:0], n
}

// keep makes what a write of n bytes of bufs left pending.
func (o *sseRaw) keep(bufs [][]byte, n int) {
	o.pending = append([][]byte(nil), skipWritten(bufs, int64(n))...)
	o.c.ids = nil // pending may point into it
}

// flush writes until nothing is queued or pending, waiting for room up to
// WriteTimeout; a closing stream then ends. One writer runs at a time
// (c.told stays set while one does).
func (o *sseRaw) flush() {
	c, h := o.c, o.c.s.h
	var bufs [][]byte
	for {
		c.mu.Lock()
		batch := c.queue
		if len(batch) == 0 && o.pending == nil {
			c.told = false
			closing := c.closing
			c.mu.Unlock()
			if closing {
				o.end(nil)
			}
			return
		}
		var total int
		bufs, total = c.takeBatch(batch, append(bufs[:0], o.pending...))
		o.pending = nil
		n := o.tryWritev(bufs)
		calls := min(n, 1)
		var err error
		if n < total {
			// Through the net.Conn, whose poller waits for room: a close
			// by run ends the write, so no sockMu.
			calls++
			_ = o.raw.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
			rest := net.Buffers(skipWritten(bufs, int64(n)))
			var m int64
			m, err = rest.WriteTo(o.raw)
			n += int(m)
		}
		clear(bufs)
		c.recycle(batch, false)
		h.meter.Written(n, calls)
		if err != nil {
			o.end(err)
			return
		}
	}
}

func (o *sseRaw) tryWritev(bufs [][]byte) int {
	o.sockMu.RLock()
	n := 0
	if o.fd >= 0 {
		n = max(writev(o.fd, bufs), 0)
	}
	o.sockMu.RUnlock()
	return n
}

func (o *sseRaw) closeRaw() {
	o.sockMu.Lock()
	o.fd = -1
	o.sockMu.Unlock()
	_ = o.raw.Close()
}

// end ends the stream's writing, once: after its last event (err nil) the
// write side is shut, which ends the response, and the connection closed
// closeLinger later (the client may still be reading); after a failed
// write, or when the client went away, it is closed at once. It wakes run.
func (o *sseRaw) end(err error) {
	c := o.c
	c.mu.Lock()
	if o.ended {
		c.mu.Unlock()
		return
	}
	o.ended, o.err = true, err
	c.closing = true
	clear(c.queue)
	c.queue, c.qbytes = c.queue[:0], 0
	c.mu.Unlock()
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := o.raw.(closeWriter); ok && err == nil && cw.CloseWrite() == nil {
		time.AfterFunc(closeLinger, o.closeRaw)
	} else {
		o.closeRaw()
	}
	_ = o.raw.SetReadDeadline(time.Now())
}

// errClientGone ends a stream whose client closed or reset its connection.
var errClientGone = errors.New("client went away")

// run reads the connection until the stream ends. A read that fails is
// the client going away; one that times out, every heartbeat interval,
// queues a heartbeat comment; what the client sends is ignored.
func (o *sseRaw) run() (protocol.CloseCode, string) {
	c, hb := o.c, o.c.s.h.opts.HeartbeatInterval
	buf := make([]byte, 512)
	_ = o.raw.SetReadDeadline(time.Now().Add(hb))
	for {
		_, rerr := o.raw.Read(buf)
		c.mu.Lock()
		ended, err, d := o.ended, o.err, c.closeD
		var ne net.Error
		timeout := rerr != nil && errors.As(rerr, &ne) && ne.Timeout()
		if !ended && timeout {
			// Under c.mu: end's wake-up, which comes after it sets ended,
			// must not be overtaken by this.
			_ = o.raw.SetReadDeadline(time.Now().Add(hb))
		}
		c.mu.Unlock()
		switch {
		case ended && errors.Is(err, errClientGone):
			return protocol.CloseGoingAway, err.Error()
		case ended && err != nil:
			return protocol.CloseGoingAway, "write failed: " + err.Error()
		case ended:
			return d.Code, d.Reason
		case rerr == nil:
		case timeout:
			c.enqueue(item{raw: c.heartbeat()})
		default:
			o.end(errClientGone)
		}
	}
}
