package enginetest

import (
	"bytes"
	"sync"

	"github.com/switchboard-rt/switchboard/engine"
)

// Recorder is an engine.Handler that keeps what it is given, for engines'
// own tests. Safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	pubs     map[string][]*engine.Publication
	gaps     map[string][]engine.Gap
	controls [][]byte
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{pubs: map[string][]*engine.Publication{}, gaps: map[string][]engine.Gap{}}
}

// HandlePublication implements engine.Handler.
func (r *Recorder) HandlePublication(room string, pub *engine.Publication) {
	r.mu.Lock()
	r.pubs[room] = append(r.pubs[room], pub)
	r.mu.Unlock()
}

// HandleControl implements engine.Handler.
func (r *Recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, bytes.Clone(data))
	r.mu.Unlock()
}

// HandleGap implements engine.Handler.
func (r *Recorder) HandleGap(room string, gap engine.Gap) {
	r.mu.Lock()
	r.gaps[room] = append(r.gaps[room], gap)
	r.mu.Unlock()
}

// Gaps returns the gaps declared in room so far.
func (r *Recorder) Gaps(room string) []engine.Gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Gap(nil), r.gaps[room]...)
}

// Get returns room's publications so far, in delivery order.
func (r *Recorder) Get(room string) []*engine.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*engine.Publication(nil), r.pubs[room]...)
}

// Count returns how many publications room got.
func (r *Recorder) Count(room string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pubs[room])
}

// HasControl reports whether the control message msg arrived.
func (r *Recorder) HasControl(msg []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.controls {
		if bytes.Equal(m, msg) {
			return true
		}
	}
	return false
}
