package hub

import "time"

// bucket is a connection's pair of token buckets (messages and bytes),
// refilled continuously; the burst is two seconds' worth.
//
// A connection is over its limit from a refused frame until its buckets
// hold one second's worth again (it slowed down, or paused, for long
// enough to earn it); frames that pass meanwhile do not end that spell,
// so a client steadily above its rate is over the limit however many of
// its frames get through.
type bucket struct {
	msgRate, byteRate float64 // per second; 0: unlimited
	msgs, bytes       float64
	last              time.Time
	refused           int       // frames refused since the spell over the limit began
	streakStart       time.Time // when the spell over the limit began
}

func (b *bucket) init(msgsPerSec, bytesPerSec int, now time.Time) {
	if msgsPerSec > 0 {
		b.msgRate, b.msgs = float64(msgsPerSec), 2*float64(msgsPerSec)
	}
	if bytesPerSec > 0 {
		b.byteRate, b.bytes = float64(bytesPerSec), 2*float64(bytesPerSec)
	}
	b.last = now
}

// take reports whether a message of n bytes may pass now.
func (b *bucket) take(n int, now time.Time) bool {
	dt := now.Sub(b.last).Seconds()
	b.last = now
	ok := true
	if b.msgRate > 0 {
		b.msgs = min(b.msgs+dt*b.msgRate, 2*b.msgRate)
		if b.msgs < 1 {
			ok = false
		}
	}
	if b.byteRate > 0 {
		b.bytes = min(b.bytes+dt*b.byteRate, 2*b.byteRate)
		if b.bytes < float64(n) {
			ok = false
		}
	}
	if b.refused > 0 && (b.msgRate == 0 || b.msgs >= b.msgRate) && (b.byteRate == 0 || b.bytes >= b.byteRate) {
		b.refused = 0 // a second's worth saved up: no longer over the limit
	}
	if !ok {
		if b.refused == 0 {
			b.streakStart = now
		}
		b.refused++
		return false
	}
	if b.msgRate > 0 {
		b.msgs--
	}
	if b.byteRate > 0 {
		b.bytes -= float64(n)
	}
	return true
}

// abusive reports a connection that keeps sending over its limits: over
// the limit (see bucket) for persistentFor with at least
// persistentRefusals frames refused in that time. A single burst is only
// throttled; a client that ignores the throttled errors for seconds is
// closed with 4004.
func (b *bucket) abusive(now time.Time) bool {
	return b.refused >= persistentRefusals && now.Sub(b.streakStart) >= persistentFor
}

const (
	persistentRefusals = 50
	persistentFor      = 3 * time.Second
)
