package transport

import (
	"context"
	"testing"
	"time"
)

// TestFlushWindowHandover: connections wait out the window in order; when
// the window's goroutine stops it hands over what waits, and later ones go
// to the pool at once instead of waiting for a goroutine that is gone.
func TestFlushWindowHandover(t *testing.T) {
	pool := &flushPool{ch: make(chan flusher, 8)} // no workers: the test reads the queue
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newFlushWindow(20*time.Millisecond, pool)
	stopped := make(chan struct{})
	go func() { w.run(ctx); close(stopped) }()

	next := func(what string) *conn {
		t.Helper()
		select {
		case c := <-pool.ch:
			return c.(*conn)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing handed to the pool", what)
			return nil
		}
	}
	a, b := &conn{}, &conn{}
	start := time.Now()
	w.add(a)
	w.add(b)
	if got := next("first"); got != a {
		t.Fatal("first handed over is not the first added")
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("handed over after %v, inside the 20ms window", waited)
	}
	if got := next("second"); got != b {
		t.Fatal("second handed over is not the second added")
	}

	// A long window, then the stop: what waits is handed over.
	w.d = time.Hour
	c := &conn{}
	w.add(c)
	cancel()
	if got := next("at stop"); got != c {
		t.Fatal("the waiting connection was not handed over at stop")
	}
	<-stopped
	d := &conn{}
	w.add(d)
	if got := next("after stop"); got != d {
		t.Fatal("a connection added after the stop was not handed over at once")
	}
}

// TestFlushWindowOrder: connections added over several windows, so that
// rounds hand over part of the queue while more arrive, come out in the
// order they were added.
func TestFlushWindowOrder(t *testing.T) {
	const n = 300
	pool := &flushPool{ch: make(chan flusher, n)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newFlushWindow(5*time.Millisecond, pool)
	go w.run(ctx)
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{}
		w.add(conns[i])
		if i%50 == 49 {
			time.Sleep(3 * time.Millisecond) // within the window: the next round finds some due, some not
		}
	}
	for i := range conns {
		select {
		case c := <-pool.ch:
			if c != conns[i] {
				t.Fatalf("handover %d is not the %dth added", i, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d handed over", i, n)
		}
	}
}
