package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine/internal/broker"
)

// clusterSub is the subscriber for Redis Cluster. A room's channel lives
// on the shard that holds the room's slot (sharded pub/sub), so there is no
// single connection to put every subscription on. Each room gets its own
// receive loop (rueidis routes SSUBSCRIBE to the slot's node and follows
// slot moves); the control channel uses classic, cluster-wide pub/sub.
//
// rueidis delivers cluster messages on the connection that also carries
// commands, so the receive callbacks must not wait for a delivery worker:
// a worker may itself be waiting on that connection for a history read.
// When a worker's queue is full the message is dropped and the worker is
// told to fill the gap from history once it catches up.
type clusterSub struct {
	e *Engine

	mu      sync.Mutex
	err     error // control subscription state; nil while subscribed
	stopped bool  // run has returned: no new room loops
	loops   sync.WaitGroup
}

func newClusterSub(e *Engine) *clusterSub { return &clusterSub{e: e, err: errNotConnected} }

func (s *clusterSub) status() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *clusterSub) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *clusterSub) run(ctx context.Context, ready chan<- struct{}) {
	defer func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.loops.Wait()
	}()
	var once sync.Once
	var b backoff
	var up atomic.Bool // set by the hook, on the connection's goroutine
	hctx := rueidis.WithOnSubscriptionHook(ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind == "subscribe" {
			s.setErr(nil)
			up.Store(true)
			once.Do(func() { close(ready) })
		}
	})
	for ctx.Err() == nil {
		c, err := s.e.redis()
		if err != nil {
			return
		}
		err = c.Receive(hctx, c.B().Subscribe().Channel(s.e.controlChan).Build(), func(m rueidis.PubSubMessage) {
			s.e.onControl(m.Message)
		})
		if err == nil {
			err = errors.New("control channel unsubscribed")
		}
		s.setErr(err)
		if up.Swap(false) {
			b.reset()
		}
		broker.SleepCtx(ctx, b.next())
	}
}

func (s *clusterSub) subscribe(ctx context.Context, rs *roomSub, created bool) error {
	if !created {
		return nil // its loop is running and was confirmed
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.e.dropRoom(rs)
		rs.cancel()
		return errors.New("engine closed")
	}
	s.loops.Add(1)
	s.mu.Unlock()
	confirmed := make(chan struct{})
	failed := make(chan error, 1)
	go s.roomLoop(rs.ctx, rs, confirmed, failed)
	select {
	case <-confirmed:
		return nil
	case err := <-failed:
		s.e.dropRoom(rs)
		rs.cancel()
		return err
	case <-ctx.Done():
		s.e.dropRoom(rs)
		rs.cancel()
		<-rs.done // its SUNSUBSCRIBE is sent
		return ctx.Err()
	}
}

// roomLoop keeps rs subscribed until its context ends. The first
// confirmation answers subscribe; later ones follow a reconnect or a slot
// move, after which the worker fills what was missed.
func (s *clusterSub) roomLoop(ctx context.Context, rs *roomSub, confirmed chan struct{}, failed chan<- error) {
	defer s.loops.Done()
	defer close(rs.done)
	var once sync.Once
	isConfirmed := func() bool {
		select {
		case <-confirmed:
			return true
		default:
			return false
		}
	}
	hctx := rueidis.WithOnSubscriptionHook(ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "ssubscribe" {
			return
		}
		if isConfirmed() {
			s.e.resyncLater(rs)
		}
		once.Do(func() { close(confirmed) })
	})
	// Unsubscribe cancels ctx; tell Redis before Receive returns, on the
	// same connection.
	hctx = rueidis.WithOnReceiveReturnHook(hctx, func(err error, cc rueidis.CommandClient) error {
		if ctx.Err() != nil {
			uctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			cc.Do(uctx, cc.B().Sunsubscribe().Channel(rs.channel).Build())
		}
		return err
	})
	var b backoff
	for ctx.Err() == nil {
		c, err := s.e.redis()
		if err != nil {
			failed <- err
			return
		}
		err = c.Receive(hctx, c.B().Ssubscribe().Channel(rs.channel).Build(), func(m rueidis.PubSubMessage) {
			s.e.offer(rs, m.Message)
		})
		if ctx.Err() != nil {
			return
		}
		if !isConfirmed() {
			if err == nil {
				err = errors.New("subscription ended before it was confirmed")
			}
			failed <- err
			return
		}
		broker.SleepCtx(ctx, b.next())
	}
}

func (s *clusterSub) unsubscribe(ctx context.Context, rs *roomSub) error {
	if rs.cancel == nil {
		return nil
	}
	rs.cancel()
	// Wait for the SUNSUBSCRIBE, so that a Subscribe of the same room that
	// follows is not undone by it.
	select {
	case <-rs.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// offer queues a room message without waiting (see clusterSub).
func (e *Engine) offer(rs *roomSub, msg string) {
	select {
	case e.workers[rs.worker] <- item{kind: itemPub, rs: rs, msg: msg}:
	default:
		e.resyncLater(rs)
	}
}

// resyncLater has rs's worker fill from history, without making the caller
// wait for the worker's queue.
func (e *Engine) resyncLater(rs *roomSub) {
	if rs.resyncPending.CompareAndSwap(false, true) {
		go e.enqueue(rs.worker, item{kind: itemResync, rs: rs})
	}
}
