package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A node's memory after a burst of work does not go down on its own when
// it turns idle: Go keeps the heap it grew for reuse, and runs a garbage
// collection only when the heap grows (or every two minutes). Collections
// are also when goroutine stacks shrink, and each connection's read
// goroutine keeps the stack that handling a subscribe grew (8 KiB) until
// one runs. So every trimInterval, if no collection ran since the last
// look (the node has just gone quiet) or much freed heap is held,
// trimMemory collects and returns free memory to the OS. On a busy node
// collections happen anyway and this does nothing; a node that stays quiet
// gets at most quietTrims of them, then none until it has been busy again.
const (
	trimInterval = 5 * time.Second
	trimAbove    = 32 << 20 // freed heap worth returning even on a busy node
	// quietTrims: two collections shrink an 8 KiB stack to 4 KiB and
	// return the freed heap; a third rarely finds more.
	quietTrims = 3
)

func trimMemory(ctx context.Context) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	var lastCycles uint64
	quiet := 0 // trims in a row with no collection of the runtime's own between
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			metrics.Read(samples)
			cycles, free := samples[0].Value.Uint64(), samples[1].Value.Uint64()
			if cycles != lastCycles {
				quiet = 0 // the node was busy since the last look
			}
			if (cycles == lastCycles && quiet < quietTrims) || free > trimAbove {
				debug.FreeOSMemory()
				quiet++
				metrics.Read(samples[:1])
				cycles = samples[0].Value.Uint64()
			}
			lastCycles = cycles
		}
	}
}
