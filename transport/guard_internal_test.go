package transport

import (
	"testing"
	"unicode/utf8"
)

// TestUTF8Stream: every way of cutting a string in two gives the answer
// utf8.Valid gives for the whole, and a bad string is refused no later
// than the piece that holds its first bad byte.
func TestUTF8Stream(t *testing.T) {
	t.Parallel()
	cases := []string{
		"", "a", "é", "κόσμε", "𝄞x", "\uFFFD", "\U0010FFFF",
		"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5", "\xff", "a\x80",
		"\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "é\xce", // cut off at the end: valid so far
	}
	for _, s := range cases {
		b := []byte(s)
		for cut := 0; cut <= len(b); cut++ {
			var st utf8Stream
			ok1 := st.write(b[:cut])
			ok2 := ok1 && st.write(b[cut:])
			complete := st.n == 0
			if want := utf8.Valid(b); (ok2 && complete) != want {
				t.Errorf("%q cut at %d: valid %v (carry %d), want %v", s, cut, ok2, st.n, want)
			}
			if !ok1 && utf8.Valid(b[:cut]) {
				t.Errorf("%q cut at %d: first piece refused though valid", s, cut)
			}
		}
	}
}
