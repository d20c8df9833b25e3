// The flush pool: long-lived workers that write queued frames of
// connections whose sockets have room (conn.flushFast, sseRaw.flushFast).

package transport

import (
	"context"
	"sync/atomic"

	"github.com/switchboard-rt/switchboard/hub"
)

// flushPool is a few long-lived goroutines that flush connections whose
// sockets have room, so a fan-out to N connections starts no goroutine per
// recipient. A connection whose write cannot finish at once, or that is
// closing, gets a flush goroutine of its own, as before.
type flushPool struct {
	ch      chan flusher
	stopped atomic.Bool
}

// flusher is a connection the pool writes: a WebSocket (conn) or a
// hijacked SSE stream (sseRaw).
type flusher interface {
	// flushFast is one pool round: one non-blocking write of what is
	// queued, handing the rest to flush. It returns bufs emptied, for
	// reuse, and the bytes written.
	flushFast(bufs [][]byte) ([][]byte, int)
	// flush writes what is queued on a goroutine of its own, waiting for
	// room as long as the write timeout allows.
	flush()
	// meter counts the pool's writes.
	meter() hub.Meter
}

// A connection is in the pool's queue at most once (it is submitted only
// when its flush starts, and again only after a worker took it), so a queue
// as long as the connection limit never overflows. Without a limit it holds
// minFlushQueue, and past that a connection gets its own flush goroutine;
// it holds at most maxFlushQueue (8 bytes each).
const (
	minFlushQueue = 16384
	maxFlushQueue = 1 << 22
)

// newFlushPool starts workers goroutines serving up to conns connections.
func newFlushPool(ctx context.Context, workers, conns int) *flushPool {
	p := &flushPool{ch: make(chan flusher, min(max(conns, minFlushQueue), maxFlushQueue))}
	for range workers {
		go p.run(ctx)
	}
	return p
}

func (p *flushPool) submit(c flusher) {
	if !p.stopped.Load() {
		select {
		case p.ch <- c:
			if p.stopped.Load() {
				p.drain() // the workers may be gone: nobody else would
			}
			return
		default:
		}
	}
	go c.flush()
}

// run is one pool worker. While connections are waiting it takes them with
// a plain receive; only an empty queue costs a select with the context.
// The bytes written are counted locally and added to the shared counter
// when the queue is empty (or every 256 flushes), not once per write: that
// one counter's cache line would otherwise move between the workers' CPUs
// on every write.
func (p *flushPool) run(ctx context.Context) {
	var bufs [][]byte
	var m hub.Meter
	pending, calls, flushes := 0, 0, 0
	for {
		var c flusher
		select {
		case c = <-p.ch:
		default:
			if calls > 0 {
				m.Written(pending, calls)
				pending, calls, flushes = 0, 0, 0
			}
			select {
			case c = <-p.ch:
			case <-ctx.Done():
				p.stopped.Store(true)
				p.drain()
				return
			}
		}
		var n int
		bufs, n = c.flushFast(bufs)
		if n > 0 {
			if calls == 0 { // every connection of a pool has its handler's meter
				m = c.meter()
			}
			pending, calls = pending+n, calls+1
		}
		if flushes++; flushes >= 256 && calls > 0 {
			m.Written(pending, calls)
			pending, calls, flushes = 0, 0, 0
		}
	}
}

// drain gives every waiting connection a flush goroutine of its own.
func (p *flushPool) drain() {
	for {
		select {
		case c := <-p.ch:
			go c.flush()
		default:
			return
		}
	}
}
