package hub

import (
	"testing"
	"time"
)

func TestBucketBurstVersusPersistentAbuse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b bucket
	b.init(10, 0, t0)
	passed := 0
	for i := 0; i < 200; i++ { // one burst, all at once
		if b.take(100, t0) {
			passed++
		}
	}
	if passed != 20 {
		t.Errorf("burst of 200 at 10/s: %d passed, want the 2 s burst of 20", passed)
	}
	if b.abusive(t0) {
		t.Error("a single burst counted as persistent abuse")
	}
	// Keep sending at 100/s, ten times the limit, for 4 s.
	abusiveAt := time.Duration(0)
	for ms := 10; ms <= 4000; ms += 10 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		b.take(100, now)
		if b.abusive(now) && abusiveAt == 0 {
			abusiveAt = time.Duration(ms) * time.Millisecond
		}
	}
	if abusiveAt < persistentFor || abusiveAt > persistentFor+time.Second {
		t.Errorf("sustained abuse detected at %s, want soon after %s", abusiveAt, persistentFor)
	}
	// Behaving again clears the streak.
	var c bucket
	c.init(10, 0, t0)
	for i := 0; i < 100; i++ {
		c.take(1, t0)
	}
	later := t0.Add(10 * time.Second)
	for i := 0; i < 200; i++ {
		c.take(1, later.Add(time.Duration(i)*150*time.Millisecond))
	}
	if c.refused != 0 {
		t.Errorf("after calming down, %d refusals still counted", c.refused)
	}
	// A byte limit alone works the same way.
	var d bucket
	d.init(0, 1000, t0)
	if !d.take(2000, t0) || d.take(1, t0) {
		t.Error("byte bucket: want the 2 s burst of 2000 bytes, then nothing")
	}
}
