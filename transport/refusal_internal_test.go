package transport

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRefusalLogRateLimit: a flood of refusals writes at most
// refusalLogBurst lines a window, and the next window starts with one line
// that counts the rest.
func TestRefusalLogRateLimit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := &refusalLog{log: slog.New(slog.NewTextHandler(&buf, nil))}
	r := httptest.NewRequest("GET", "/ws", nil)
	t0 := time.Unix(1000, 0)
	for i := range 500 {
		l.note(r, 429, "too_many_handshakes", "slow down", t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := strings.Count(buf.String(), "handshake refused"); n != refusalLogBurst {
		t.Fatalf("%d lines in one window, want %d", n, refusalLogBurst)
	}
	l.note(r, 429, "too_many_handshakes", "slow down", t0.Add(2*time.Second))
	out := buf.String()
	if !strings.Contains(out, "not logged (rate limit)") || !strings.Contains(out, "count=490") {
		t.Fatalf("no summary of the 490 suppressed:\n%s", out)
	}
	if n := strings.Count(out, "handshake refused"); n != refusalLogBurst+1 {
		t.Fatalf("%d lines after the window, want %d", n, refusalLogBurst+1)
	}
}
