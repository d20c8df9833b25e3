package client

import "sync"

// dispatcher runs the application's callbacks (handlers, OnEvent, OnState,
// OnError) one at a time, in the order they were queued, on a goroutine
// that is not the network reader. So a handler may call Publish and wait
// for the ack without deadlocking the connection that must read it. The
// queue is unbounded: a handler slower than the event rate makes events
// wait in this process's memory, while the connection keeps reading (so
// the server does not cut the client as a slow consumer).
//
// The goroutine starts with the first callback and ends after close, once
// the queue is empty. It stays between events: starting one per event
// would cost more than it saves.
type dispatcher struct {
	mu      sync.Mutex
	q       []func()
	started bool
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

func newDispatcher() *dispatcher {
	return &dispatcher{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues f. After close it does nothing.
func (d *dispatcher) push(f func()) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.q = append(d.q, f)
	start := !d.started
	d.started = true
	d.mu.Unlock()
	if start {
		go d.run()
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close stops accepting callbacks; done is closed once the queued ones
// have run.
func (d *dispatcher) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	if !d.started {
		close(d.done)
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run() {
	var batch []func()
	for {
		d.mu.Lock()
		batch, d.q = d.q, batch[:0]
		closed := d.closed
		d.mu.Unlock()
		if len(batch) == 0 {
			if closed {
				close(d.done)
				return
			}
			<-d.wake
			continue
		}
		for i, f := range batch {
			batch[i] = nil
			f()
		}
	}
}
