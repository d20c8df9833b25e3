package transport

import (
	"context"
	"sync"
	"time"
)

// flushWindow holds each connection's first queued frame for a fixed time
// before handing the connection to the flush pool, so that what is queued
// meanwhile goes out in the same write (Options.FlushWindow). One goroutine
// and one timer serve every connection: the delay is the same for all, so
// the connections wait in a FIFO that is also in order of their due times.
type flushWindow struct {
	d    time.Duration
	pool *flushPool
	wake chan struct{}

	mu      sync.Mutex
	q       []windowed // waiting from q[head] on, in due order
	head    int        // handed over below it; q is compacted lazily
	ready   []windowed // run's batch, kept for reuse
	stopped bool       // run has ended: add hands over at once
}

type windowed struct {
	c   flusher
	due time.Time
}

func newFlushWindow(d time.Duration, pool *flushPool) *flushWindow {
	return &flushWindow{d: d, pool: pool, wake: make(chan struct{}, 1)}
}

// add schedules c's flush one window from now.
func (w *flushWindow) add(c flusher) {
	due := time.Now().Add(w.d)
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		w.pool.submit(c)
		return
	}
	first := len(w.q) == w.head
	w.q = append(w.q, windowed{c, due})
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// run hands connections to the pool as their windows end. When ctx ends it
// hands over everything still waiting (the pool then gives each its own
// flush, as it does at shutdown).
func (w *flushWindow) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		now, done := time.Now(), ctx.Err() != nil
		w.mu.Lock()
		i := w.head
		for i < len(w.q) && (done || !w.q[i].due.After(now)) {
			i++
		}
		ready := append(w.ready[:0], w.q[w.head:i]...)
		clear(w.q[w.head:i])
		w.head = i
		// Compact only when the handed-over part is the larger: moving
		// the waiting rest on every round would cost O(waiting) per round.
		if w.head > len(w.q)/2 {
			n := copy(w.q, w.q[w.head:])
			clear(w.q[n:])
			w.q, w.head = w.q[:n], 0
		}
		var next time.Time
		if w.head < len(w.q) {
			next = w.q[w.head].due
		}
		w.stopped = done
		w.mu.Unlock()
		for _, p := range ready {
			w.pool.submit(p.c)
		}
		clear(ready)
		w.ready = ready[:0]
		if done {
			return
		}
		if next.IsZero() {
			select {
			case <-w.wake:
			case <-ctx.Done():
			}
			continue
		}
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}
