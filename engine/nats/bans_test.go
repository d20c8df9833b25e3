package nats

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/internal/hubtest"
)

// TestBansAcrossNodes: see hubtest.RunBansAcrossNodes.
func TestBansAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	hubtest.RunBansAcrossNodes(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{Prefix: prefix})
	})
}

// TestBansCoreOnly: without JetStream there is no shared store; the
// engine says so with errors.ErrUnsupported, which the hub takes as "bans
// per node".
func TestBansCoreOnly(t *testing.T) {
	e := newTestEngine(t, Options{CoreOnly: true})
	startEngine(t, e, enginetest.NewRecorder())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.SetBan(ctx, "u", time.Now().Add(time.Minute)); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetBan in core-only mode: %v, want ErrUnsupported", err)
	}
	if _, err := e.BanUntil(ctx, "u"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("BanUntil in core-only mode: %v, want ErrUnsupported", err)
	}
}
