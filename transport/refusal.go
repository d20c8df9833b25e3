package transport

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Refused handshakes are logged, as a browser only sees close code 1006
// and the operator otherwise cannot tell a wrong origin from a network
// failure; but a flood of them (a reconnect storm, a scanner) must not fill
// the log, so at most refusalLogBurst lines are written per
// refusalLogWindow and the rest are counted in one summary line.
const (
	refusalLogWindow = time.Second
	refusalLogBurst  = 10
)

// refusalLog rate-limits the refused-handshake log lines. Safe for
// concurrent use.
type refusalLog struct {
	log        *slog.Logger
	mu         sync.Mutex
	start      time.Time // of the current window
	n          int       // lines written in it
	suppressed int       // refusals not logged since the last summary
}

// refuse meters and answers a refused handshake with the JSON error body,
// and logs it (rate-limited).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h.meter.Handshake(status)
	h.refusals.note(r, status, code, msg, time.Now())
	httpError(w, status, code, msg)
}

func (l *refusalLog) note(r *http.Request, status int, code, msg string, now time.Time) {
	l.mu.Lock()
	if now.Sub(l.start) >= refusalLogWindow {
		if l.suppressed > 0 {
			// Logged under the lock, so the summary precedes this window's
			// lines; it happens at most once a window.
			l.log.Warn("transport: refused handshakes not logged (rate limit)", "count", l.suppressed, "window", refusalLogWindow.String())
		}
		l.start, l.n, l.suppressed = now, 0, 0
	}
	if l.n >= refusalLogBurst {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.n++
	l.mu.Unlock()
	// Configuration problems (origin, authentication, bans) are warnings;
	// load and client bugs are information.
	level := slog.LevelInfo
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		level = slog.LevelWarn
	}
	l.log.LogAttrs(context.Background(), level, "handshake refused",
		slog.Int("status", status), slog.String("code", code), slog.String("reason", msg),
		slog.String("remote", r.RemoteAddr), slog.String("origin", r.Header.Get("Origin")),
		slog.String("path", r.URL.Path))
}
