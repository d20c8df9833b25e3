package nats

import (
	"context"
	"errors"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/engine/enginetest/hubtest"
)

// deleteBanBucket removes the bans bucket of engines with prefix (best
// effort), which deleteStreams does not know.
func deleteBanBucket(url, prefix string) {
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = js.DeleteKeyValue(ctx, "SWITCHBOARD_"+prefix+"_BANS")
}

// TestBansAcrossNodes: see hubtest.RunBansAcrossNodes.
func TestBansAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	t.Cleanup(func() { deleteBanBucket(testNATSURL(t), prefix) })
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
