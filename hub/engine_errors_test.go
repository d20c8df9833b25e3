package hub

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

// failEngine is a memory engine whose calls can be made to fail, as a
// broker's do when it is unreachable.
type failEngine struct {
	*memory.Engine
	failPublish, failSubscribe, failHistory atomic.Bool
}

var errBroker = errors.New("broker unreachable")

func (f *failEngine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	if f.failPublish.Load() {
		return engine.PublishResult{}, errBroker
	}
	return f.Engine.Publish(ctx, room, pub, opts)
}

func (f *failEngine) Subscribe(ctx context.Context, room string) error {
	if f.failSubscribe.Load() {
		return errBroker
	}
	return f.Engine.Subscribe(ctx, room)
}

func (f *failEngine) History(ctx context.Context, room string, q engine.HistoryQuery, p engine.HistoryPolicy) (engine.HistoryResult, error) {
	if f.failHistory.Load() {
		return engine.HistoryResult{}, errBroker
	}
	return f.Engine.History(ctx, room, q, p)
}

func TestEngineFailures(t *testing.T) {
	eng := &failEngine{Engine: memory.New(memory.Options{})}
	h := newHub(t, Options{Engine: eng, NoJoinLeave: true})
	c, s := connect(t, h, "u")

	eng.failSubscribe.Store(true)
	send(c, `{"type":"subscribe","id":"s1","room":"r"}`)
	eng.failSubscribe.Store(false)
	if errs := errorsOf(t, s); len(errs) != 1 || errs[0].Code != protocol.ErrInternal || errs[0].Ref != "s1" {
		t.Fatalf("subscribe with the engine down: %+v", errs)
	}
	if h.RoomSize("r") != 0 || len(h.Rooms()) != 0 {
		t.Errorf("failed subscribe left a membership: %+v", h.Rooms())
	}

	subscribe(t, c, s, "r")
	eng.failPublish.Store(true)
	send(c, `{"type":"message","id":"m1","room":"r"}`)
	eng.failPublish.Store(false)
	errs := errorsOf(t, s)
	if len(errs) != 2 || errs[1].Code != protocol.ErrInternal || errs[1].Ref != "m1" {
		t.Fatalf("publish with the engine down: %+v", errs)
	}
	if n := s.count(t, protocol.TypeAck); n != 0 {
		t.Errorf("failed publish acknowledged")
	}
	if h.Stats().EngineErrors < 2 {
		t.Errorf("EngineErrors = %d", h.Stats().EngineErrors)
	}
}

// TestSubscribeHistoryFailureLeavesNoMembership: a subscribe answered with
// an error must not leave the connection in the room, receiving events and
// using one of its MaxRoomsPerClient slots, without presence or user_joined.
func TestSubscribeHistoryFailureLeavesNoMembership(t *testing.T) {
	eng := &failEngine{Engine: memory.New(memory.Options{})}
	h := newHub(t, Options{Engine: eng, NoJoinLeave: true})
	c, s := connect(t, h, "u")
	eng.failHistory.Store(true)
	send(c, `{"type":"subscribe","id":"s1","room":"r"}`)
	eng.failHistory.Store(false)
	if errs := errorsOf(t, s); len(errs) != 1 || errs[0].Code != protocol.ErrInternal || errs[0].Ref != "s1" {
		t.Fatalf("errors: %+v", errs)
	}
	if n := s.count(t, protocol.TypeSubscribed); n != 0 {
		t.Fatalf("subscribed answer after an error")
	}
	if h.RoomSize("r") != 0 {
		t.Errorf("connection is in the room after its subscribe failed")
	}
	if _, err := h.Publish(context.Background(), "r", "message", nil, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, protocol.TypeMessage); n != 0 {
		t.Errorf("connection whose subscribe failed receives the room's events")
	}
}

// hangEngine is a broker that stops answering: Publish blocks until its
// context ends.
type hangEngine struct{ *memory.Engine }

// Local: a hanging engine is not local, so the hub bounds its calls.
func (hangEngine) Local() bool { return false }

func (hangEngine) Publish(ctx context.Context, room string, pub *engine.Publication, opts engine.PublishOptions) (engine.PublishResult, error) {
	<-ctx.Done()
	return engine.PublishResult{}, ctx.Err()
}

// TestEngineCallsAreBounded: with a broker that hangs, a client's publish
// is answered `internal` after EngineTimeout instead of holding the
// connection's read loop for good.
func TestEngineCallsAreBounded(t *testing.T) {
	h := newHub(t, Options{Engine: hangEngine{memory.New(memory.Options{})}, EngineTimeout: 100 * time.Millisecond, NoJoinLeave: true})
	c, s := connect(t, h, "u")
	done := make(chan struct{})
	go func() {
		send(c, `{"type":"message","id":"m1","room":"chat:1","data":1}`)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the publish is still waiting for the engine after 5 s")
	}
	errs := errorsOf(t, s)
	if len(errs) != 1 || errs[0].Code != protocol.ErrInternal || errs[0].Ref != "m1" {
		t.Fatalf("errors = %+v, want one internal error for m1", errs)
	}
}

// TestNewRequiresEngine: the hub does not pick an engine itself; the
// caller (server) builds one.
func TestNewRequiresEngine(t *testing.T) {
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "Engine is required") {
		t.Fatalf("New without an engine: err = %v, want one naming Options.Engine", err)
	}
}
