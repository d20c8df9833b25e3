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

// sendAt feeds b one frame every 1/rate seconds from t0 for d, and returns
// when it first counted as abusive (0: never) and how many were refused.
func sendAt(b *bucket, t0 time.Time, rate float64, d time.Duration) (abusiveAt time.Duration, refused int) {
	step := time.Duration(float64(time.Second) / rate)
	for at := step; at <= d; at += step {
		now := t0.Add(at)
		if !b.take(10, now) {
			refused++
		}
		if abusiveAt == 0 && b.abusive(now) {
			abusiveAt = at
		}
	}
	return abusiveAt, refused
}

// A client steadily above its limit is over it however many of its frames
// pass: at 1.5x and 1.9x it is closed about 3 s after its burst ran out;
// at 0.9x it is never refused.
func TestBucketSteadilyOverTheLimit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		factor float64
		limit  int
	}{{1.5, 40}, {1.9, 40}, {1.5, 200}, {1.1, 200}} {
		var b bucket
		b.init(tc.limit, 0, t0)
		for i := 0; i < 2*tc.limit; i++ { // spend the burst first
			b.take(10, t0)
		}
		at, refused := sendAt(&b, t0, tc.factor*float64(tc.limit), 20*time.Second)
		// 50 refusals need 50/((factor-1)*limit) s; 3 s at least.
		want := max(persistentFor, time.Duration(float64(persistentRefusals)/((tc.factor-1)*float64(tc.limit))*float64(time.Second)))
		if at < want || at > want+time.Second {
			t.Errorf("%.1fx of %d/s: abusive at %s (%d refused in 20 s), want soon after %s", tc.factor, tc.limit, at, refused, want)
		}
	}
	var b bucket
	b.init(40, 0, t0)
	if at, refused := sendAt(&b, t0, 0.9*40, time.Minute); at != 0 || refused != 0 {
		t.Errorf("0.9x: %d refused, abusive at %s; want neither", refused, at)
	}
	// Bursts over the limit separated by pauses that earn a second's worth
	// back are throttled, never closed.
	var c bucket
	c.init(40, 0, t0)
	now := t0
	for round := 0; round < 20; round++ {
		for i := 0; i < 100; i++ {
			c.take(10, now)
		}
		if c.abusive(now) {
			t.Fatalf("round %d: bursts with pauses counted as persistent abuse", round)
		}
		now = now.Add(1100 * time.Millisecond)
	}
}
