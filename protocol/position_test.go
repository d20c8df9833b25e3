package protocol

import (
	"math"
	"strings"
	"testing"
)

func TestEventIDRoundTrip(t *testing.T) {
	for _, p := range []StreamPosition{
		{Offset: 0, Epoch: "a"},
		{Offset: 1, Epoch: "k3j2h1g0"},
		{Offset: 42, Epoch: "abc123"},
		{Offset: math.MaxUint64, Epoch: strings.Repeat("z", MaxEpochLen)},
	} {
		id := p.EventID()
		if got := string(p.AppendEventID([]byte("x"))); got != "x"+id {
			t.Errorf("AppendEventID = %q, want %q", got, "x"+id)
		}
		got, ok := ParseEventID(id)
		if !ok || got != p {
			t.Errorf("ParseEventID(%q) = %+v, %v; want %+v", id, got, ok, p)
		}
	}
	if id := (StreamPosition{Offset: 7, Epoch: "ab"}).EventID(); id != "ab-7" {
		t.Errorf("EventID = %q, want ab-7", id)
	}
}

func TestParseEventIDRejects(t *testing.T) {
	for _, id := range []string{
		"",
		"-",
		"abc",
		"abc-",
		"-5",
		"ABC-5",                    // epochs are lower-case base 36
		"a_b-5",                    // only a-z0-9 in the epoch
		"a-b-5",                    // the epoch has no '-'
		"abc-x",                    // offset not a number
		"abc--5",                   // negative
		"abc-+5",                   // sign
		"abc-5 ",                   // trailing space
		"abc- 5",                   // leading space
		"abc-1.5",                  // fraction
		"abc-0x10",                 // hex
		"é-5",                      // non-ASCII epoch
		"abc-18446744073709551616", // overflows uint64
		strings.Repeat("a", MaxEpochLen+1) + "-1",
	} {
		if p, ok := ParseEventID(id); ok {
			t.Errorf("ParseEventID(%q) = %+v, true; want false", id, p)
		}
	}
	if _, ok := ParseEventID(strings.Repeat("a", MaxEpochLen) + "-1"); !ok {
		t.Error("epoch of MaxEpochLen rejected")
	}
}

func BenchmarkAppendEventID(b *testing.B) {
	p := StreamPosition{Offset: 123456, Epoch: "k3j2h1g0"}
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendEventID(buf[:0])
	}
}
