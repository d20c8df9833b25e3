package memory

import (
	"context"

	"github.com/switchboard-rt/switchboard/engine"
)

var _ engine.Occupancy = (*Engine)(nil)

// occupancyRoom is the nodes with members in one room (one node unless
// several hubs share the engine, as tests do) and its generation.
type occupancyRoom struct {
	nodes map[string]struct{}
	gen   uint64
}

// Occupy implements engine.Occupancy.
func (e *Engine) Occupy(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	if e.closed.Load() {
		return engine.OccupancyChange{}, engine.ErrClosed
	}
	e.occMu.Lock()
	defer e.occMu.Unlock()
	if e.occ == nil {
		e.occ = make(map[string]*occupancyRoom)
	}
	r := e.occ[room]
	if r == nil {
		r = &occupancyRoom{nodes: make(map[string]struct{}, 1)}
		e.occ[room] = r
	}
	if _, ok := r.nodes[node]; ok {
		return engine.OccupancyChange{Generation: r.gen}, nil
	}
	r.nodes[node] = struct{}{}
	if len(r.nodes) > 1 {
		return engine.OccupancyChange{Generation: r.gen}, nil
	}
	e.occGen++
	r.gen = e.occGen
	return engine.OccupancyChange{Changed: true, Generation: r.gen}, nil
}

// Vacate implements engine.Occupancy. A vacated room's entry is freed;
// generations come from one engine-wide counter, so they still increase.
func (e *Engine) Vacate(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	if e.closed.Load() {
		return engine.OccupancyChange{}, engine.ErrClosed
	}
	e.occMu.Lock()
	defer e.occMu.Unlock()
	r := e.occ[room]
	if r == nil {
		return engine.OccupancyChange{}, nil
	}
	if _, ok := r.nodes[node]; !ok {
		return engine.OccupancyChange{Generation: r.gen}, nil
	}
	delete(r.nodes, node)
	if len(r.nodes) > 0 {
		return engine.OccupancyChange{Generation: r.gen}, nil
	}
	delete(e.occ, room)
	return engine.OccupancyChange{Changed: true, Generation: r.gen}, nil
}
