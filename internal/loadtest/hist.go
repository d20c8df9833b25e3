package loadtest

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records latencies in microseconds with log-linear buckets:
// exact below 128 µs, then 64 buckets per power of two (at most 1.6%
// error). It is safe for concurrent use: every subscriber goroutine of a
// worker adds to one histogram, and an atomic add per delivery is cheaper
// than a histogram per connection (18 KiB each).
type Histogram struct {
	counts   [histBuckets]atomic.Uint64
	n        atomic.Uint64
	sumUS    atomic.Uint64
	maxNS    atomic.Int64
	negative atomic.Uint64
}

const (
	histSub     = 64          // buckets per power of two
	histExact   = 2 * histSub // values below this are exact
	histShifts  = 40          // up to 2^46 µs, far beyond any run
	histBuckets = histExact + histShifts*histSub
)

func bucketOf(us uint64) int {
	if us < histExact {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // us in [128<<(shift-1), 128<<shift)
	if shift > histShifts {
		return histBuckets - 1
	}
	return histExact + (shift-1)*histSub + int(us>>uint(shift)) - histSub
}

// bucketMax is the largest value (µs) that falls in bucket i.
func bucketMax(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	shift := uint((i-histExact)/histSub + 1)
	low := uint64((i-histExact)%histSub+histSub) << shift
	return low + (1 << shift) - 1
}

// Record adds one latency. Negative values (a clock step between the
// publisher's and the reader's reading of the wall clock) count as 0 and
// are counted apart so a report can show them.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		h.negative.Add(1)
		d = 0
	}
	us := uint64(d / time.Microsecond)
	h.counts[bucketOf(us)].Add(1)
	h.n.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxNS.Load()
		if int64(d) <= m || h.maxNS.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// HistSnapshot is a histogram in a form that travels as JSON and merges.
type HistSnapshot struct {
	// Buckets holds [bucket index, count] for the non-empty buckets.
	Buckets  [][2]uint64 `json:"buckets,omitempty"`
	Count    uint64      `json:"count"`
	SumUS    uint64      `json:"sum_us"`
	MaxNS    int64       `json:"max_ns"`
	Negative uint64      `json:"negative,omitempty"`
}

// Snapshot copies the histogram.
func (h *Histogram) Snapshot() HistSnapshot {
	s := HistSnapshot{Count: h.n.Load(), SumUS: h.sumUS.Load(), MaxNS: h.maxNS.Load(), Negative: h.negative.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// Merge adds o into s.
func (s *HistSnapshot) Merge(o HistSnapshot) {
	idx := make(map[uint64]int, len(s.Buckets))
	for i, b := range s.Buckets {
		idx[b[0]] = i
	}
	for _, b := range o.Buckets {
		if i, ok := idx[b[0]]; ok {
			s.Buckets[i][1] += b[1]
		} else {
			idx[b[0]] = len(s.Buckets)
			s.Buckets = append(s.Buckets, b)
		}
	}
	s.Count += o.Count
	s.SumUS += o.SumUS
	s.Negative += o.Negative
	s.MaxNS = max(s.MaxNS, o.MaxNS)
}

// Quantile returns the latency below which a fraction q of the samples
// fall, as the top of the bucket holding it (so it errs high, never low),
// capped at the maximum seen.
func (s *HistSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	var counts [histBuckets]uint64
	for _, b := range s.Buckets {
		if b[0] < histBuckets {
			counts[b[0]] += b[1]
		}
	}
	rank := uint64(q*float64(s.Count) + 0.5)
	rank = min(max(rank, 1), s.Count)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			d := time.Duration(bucketMax(i)+1)*time.Microsecond - 1
			return min(d, time.Duration(s.MaxNS))
		}
	}
	return time.Duration(s.MaxNS)
}

// Mean returns the average latency (µs resolution).
func (s *HistSnapshot) Mean() time.Duration {
	if s.Count == 0 {
		return 0
	}
	return time.Duration(s.SumUS/s.Count) * time.Microsecond
}
