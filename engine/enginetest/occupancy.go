package enginetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
)

// CheckOccupancy checks an engine.Occupancy as two nodes see it (a and b
// may be one engine for a single-node engine): of two nodes that occupy a
// room at once exactly one sees the change, and of the two that vacate it
// exactly one; the generation pairs them and grows from one period to the
// next.
func CheckOccupancy(t *testing.T, a, b engine.Occupancy) {
	t.Helper()
	ctx := context.Background()
	const rooms = 20
	run := func(f func(engine.Occupancy, string, string) (engine.OccupancyChange, error)) [rooms][2]res {
		var out [rooms][2]res
		var wg sync.WaitGroup
		for i := range rooms {
			for j, e := range []engine.Occupancy{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ch, err := f(e, fmt.Sprintf("occ:%d", i), fmt.Sprintf("node-%d", j))
					out[i][j] = res{ch, err}
				}()
			}
		}
		wg.Wait()
		return out
	}
	occupy := func(e engine.Occupancy, room, node string) (engine.OccupancyChange, error) {
		return e.Occupy(ctx, room, node)
	}
	vacate := func(e engine.Occupancy, room, node string) (engine.OccupancyChange, error) {
		return e.Vacate(ctx, room, node)
	}
	var gens [rooms]uint64
	for period := range 2 {
		occ := run(occupy)
		vac := run(vacate)
		for i := range rooms {
			for _, r := range append(occ[i][:], vac[i][:]...) {
				if r.err != nil {
					t.Fatalf("room %d: %v", i, r.err)
				}
			}
			if n := changed(occ[i]); n != 1 {
				t.Errorf("period %d, room %d: %d Occupy calls reported the change, want 1", period, i, n)
			}
			if n := changed(vac[i]); n != 1 {
				t.Errorf("period %d, room %d: %d Vacate calls reported the change, want 1", period, i, n)
			}
			var g uint64
			for _, r := range occ[i] {
				if r.ch.Changed {
					g = r.ch.Generation
				}
			}
			for _, r := range vac[i] {
				if r.ch.Changed && r.ch.Generation != g {
					t.Errorf("room %d: vacated generation %d, occupied %d", i, r.ch.Generation, g)
				}
			}
			if g <= gens[i] {
				t.Errorf("room %d: generation %d after %d", i, g, gens[i])
			}
			gens[i] = g
		}
	}
	// Occupy is idempotent per node, and vacating a node that is not
	// there changes nothing.
	if ch, err := a.Occupy(ctx, "occ:x", "node-0"); err != nil || !ch.Changed {
		t.Fatalf("first occupy: %+v %v", ch, err)
	}
	if ch, err := a.Occupy(ctx, "occ:x", "node-0"); err != nil || ch.Changed {
		t.Errorf("repeated occupy: %+v %v", ch, err)
	}
	if ch, err := b.Vacate(ctx, "occ:x", "node-1"); err != nil || ch.Changed {
		t.Errorf("vacate by a node that is not there: %+v %v", ch, err)
	}
	if ch, err := b.Vacate(ctx, "occ:x", "node-0"); err != nil || !ch.Changed {
		t.Errorf("last vacate: %+v %v", ch, err)
	}
}

type res struct {
	ch  engine.OccupancyChange
	err error
}

func changed(r [2]res) int {
	n := 0
	for _, x := range r {
		if x.ch.Changed {
			n++
		}
	}
	return n
}

// CheckOccupancyExpiry checks that a node that stops refreshing its entry
// drops out after the presence ttl, so the room can be occupied again,
// while a live node's refresh keeps it in. crash(room) must put a node that
// no engine refreshes into room, as the room's generation 1.
func CheckOccupancyExpiry(t *testing.T, live, other engine.Occupancy, ttl time.Duration, crash func(room string)) {
	t.Helper()
	ctx := context.Background()
	if ch, err := live.Occupy(ctx, "occ:live", "live"); err != nil || !ch.Changed {
		t.Fatalf("occupy: %+v %v", ch, err)
	}
	crash("occ:dead")
	time.Sleep(3 * ttl)
	if ch, err := other.Occupy(ctx, "occ:dead", "other"); err != nil || !ch.Changed || ch.Generation != 2 {
		t.Errorf("occupy after the crashed node expired: %+v %v, want a change to generation 2", ch, err)
	}
	if ch, err := other.Occupy(ctx, "occ:live", "other"); err != nil || ch.Changed {
		t.Errorf("occupy beside a live, refreshing node: %+v %v, want no change", ch, err)
	}
}
