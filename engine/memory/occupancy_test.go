package memory

import (
	"testing"

	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

func TestOccupancy(t *testing.T) {
	e := New(Options{})
	enginetest.CheckOccupancy(t, e, e)
	e.occMu.Lock()
	defer e.occMu.Unlock()
	if len(e.occ) != 0 {
		t.Errorf("vacated rooms still held: %d", len(e.occ))
	}
}
