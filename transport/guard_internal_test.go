package transport

import (
	"strings"
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

// BenchmarkFrameGuard: what the guard adds per inbound read, for a read of
// ten 100-byte masked text frames (each whole: only headers are parsed)
// and for one 60 KiB text frame arriving in 1 KiB reads (validated as it
// comes).
func BenchmarkFrameGuard(b *testing.B) {
	frame := func(n int) []byte {
		f := []byte{0x81, 0x80 | 126, byte(n >> 8), byte(n), 1, 2, 3, 4}
		if n < 126 {
			f = []byte{0x81, 0x80 | byte(n), 1, 2, 3, 4}
		}
		for i := range n {
			f = append(f, 'a'^[]byte{1, 2, 3, 4}[i%4])
		}
		return f
	}
	b.Run("10x100B", func(b *testing.B) {
		var read []byte
		for range 10 {
			read = append(read, frame(100)...)
		}
		g := &frameGuard{deflate: true}
		b.SetBytes(int64(len(read)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.scan(read); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("60KiB-in-1KiB-reads", func(b *testing.B) {
		f := frame(60 << 10)
		g := &frameGuard{deflate: true}
		b.SetBytes(int64(len(f)))
		b.ReportAllocs()
		for b.Loop() {
			for off := 0; off < len(f); off += 1024 {
				if _, err := g.scan(f[off:min(off+1024, len(f))]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestFrameGuardChunks: a masked text frame of valid UTF-8 passes in
// reads of every size, and one with a bad byte fails by the read that
// holds it, whatever the alignment of the mask.
func TestFrameGuardChunks(t *testing.T) {
	t.Parallel()
	text := []byte(strings.Repeat("κόσμε 𝄞 é abc ", 40))
	key := [4]byte{0x9a, 0x17, 0x3c, 0xe5}
	mk := func(p []byte) []byte {
		f := []byte{0x81, 0x80 | 126, byte(len(p) >> 8), byte(len(p))}
		f = append(f, key[:]...)
		for i, c := range p {
			f = append(f, c^key[i%4])
		}
		return f
	}
	good := mk(text)
	badText := append([]byte(nil), text...)
	badAt := 333
	badText[badAt] = 0xff
	bad := mk(badText)
	for size := 1; size <= 40; size++ {
		g := &frameGuard{}
		for off := 0; off < len(good); off += size {
			if _, err := g.scan(good[off:min(off+size, len(good))]); err != nil {
				t.Fatalf("valid text in reads of %d: %v at %d", size, err, off)
			}
		}
		g = &frameGuard{}
		failed := -1
		for off := 0; off < len(bad) && failed < 0; off += size {
			if _, err := g.scan(bad[off:min(off+size, len(bad))]); err != nil {
				failed = off
			}
		}
		if pos := 8 + badAt; failed < 0 || failed > pos {
			t.Fatalf("reads of %d: failed at the read at %d, want by the one holding byte %d", size, failed, pos)
		}
	}
}
