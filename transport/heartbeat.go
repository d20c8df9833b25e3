package transport

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// wheel pings connections and finds the dead ones without a timer per
// connection: connections are spread over one slot per second of the
// heartbeat interval; each second one slot is pinged, and the slot pinged
// PongTimeout ago is checked for connections that have not been heard from
// since.
type wheel struct {
	h     *WSHandler
	mu    sync.Mutex
	slots []map[*conn]struct{}
	next  int
}

func newWheel(h *WSHandler) *wheel {
	n := int(h.opts.HeartbeatInterval / time.Second)
	w := &wheel{h: h, slots: make([]map[*conn]struct{}, n)}
	for i := range w.slots {
		w.slots[i] = make(map[*conn]struct{})
	}
	return w
}

func (w *wheel) add(c *conn) {
	w.mu.Lock()
	c.slot = w.next
	w.next = (w.next + 1) % len(w.slots)
	w.slots[c.slot][c] = struct{}{}
	w.mu.Unlock()
}

func (w *wheel) remove(c *conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.slots[c.slot][c]; !ok {
		return false
	}
	delete(w.slots[c.slot], c)
	return true
}

func (w *wheel) all() []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*conn
	for _, s := range w.slots {
		for c := range s {
			out = append(out, c)
		}
	}
	return out
}

func (w *wheel) slot(i int) []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.slots[i%len(w.slots)]
	out := make([]*conn, 0, len(s))
	for c := range s {
		out = append(out, c)
	}
	return out
}

func (w *wheel) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := len(w.slots)
	lag := int((w.h.opts.PongTimeout + time.Second - 1) / time.Second)
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		// Check the slot pinged lag seconds ago: silence since that ping
		// means the pong did not come in time.
		for _, c := range w.slot((tick - lag + n*lag) % n) {
			if sent := c.pingSent.Load(); sent != 0 && c.lastSeen.Load() < sent {
				c.closeWith(protocol.NewDisconnect(protocol.CloseHeartbeatTimeout, "no pong within the pong timeout"), true)
			}
		}
		deadline := now.Add(w.h.opts.HeartbeatInterval + w.h.opts.PongTimeout + 5*time.Second)
		for _, c := range w.slot(tick % n) {
			c.pingSent.Store(now.UnixNano())
			c.enqueue(item{raw: pingFrame})
			if c.jsonPing {
				c.Send(w.h.jsonPing)
			}
			// Backstop: a read deadline a little past the pong timeout
			// finds a half-open connection even if this wheel stalls.
			_ = c.raw.SetReadDeadline(deadline)
		}
	}
}
