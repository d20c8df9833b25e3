package nats

import (
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/internal/hubtest"
)

// TestExcludeAcrossNodes: see hubtest.RunExcludeAcrossNodes.
func TestExcludeAcrossNodes(t *testing.T) {
	prefix := testPrefix()
	hubtest.RunExcludeAcrossNodes(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{Prefix: prefix})
	})
}
