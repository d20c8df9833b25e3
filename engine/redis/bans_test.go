package redis

import (
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/internal/hubtest"
)

// TestBansAcrossNodes: see hubtest.RunBansAcrossNodes.
func TestBansAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	hubtest.RunBansAcrossNodes(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{KeyPrefix: prefix})
	})
}
