package nats

import (
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/internal/hubtest"
)

// TestHubsAcrossNodes runs two hubs over one broker as two nodes (see
// hubtest.RunAcrossNodes).
func TestHubsAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	hubtest.RunAcrossNodes(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{Prefix: prefix})
	})
}
