package transport

import (
	"fmt"
	"time"

	"github.com/lxzan/gws"
	"github.com/switchboard-rt/switchboard/protocol"
)

type events struct{ t *WSHandler }

func (e events) OnOpen(ws *gws.Conn) {}

func (e events) OnClose(ws *gws.Conn, err error) {
	c := connOf(ws)
	if c == nil {
		return
	}
	c.mu.Lock()
	c.done, c.closing = true, true
	d := c.closeD
	clear(c.queue)
	c.queue = nil
	c.mu.Unlock()
	_ = c.closeRaw()
	c.t.untrack(c)
	code, reason := closeCodeOf(d, err)
	c.t.meter.Closed(code)
	if c.client != nil {
		c.client.GoneWith(code, reason)
		c.t.log.Info("disconnect",
			"conn", c.client.ID(), "user", c.client.UserID(), "remote", c.remote,
			"duration", time.Since(c.start).Round(time.Millisecond).String(),
			"bytes_in", c.bytesIn.Load(), "bytes_out", c.bytesOut.Load(),
			"code", int(code), "reason", reason, "by", map[bool]string{true: "server", false: "client"}[d != nil])
	}
}

func (e events) OnPing(ws *gws.Conn, payload []byte) {
	if c := connOf(ws); c != nil {
		c.lastSeen.Store(time.Now().UnixNano())
		c.enqueue(item{raw: controlFrame(opPong, payload)})
	}
}

func (e events) OnPong(ws *gws.Conn, payload []byte) {
	if c := connOf(ws); c != nil {
		c.lastSeen.Store(time.Now().UnixNano())
	}
}

func (e events) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := connOf(ws)
	if c == nil {
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
	if msg.Opcode != gws.OpcodeText {
		c.Close(protocol.NewDisconnect(protocol.CloseUnsupportedData, "binary frames are not supported: send JSON text frames"))
		return
	}
	// A panic while handling one message (a bug, or an embedder's hook)
	// ends this connection with 1011, not the process or other
	// connections.
	defer func() {
		if p := recover(); p != nil {
			e.t.log.Error("transport: panic while handling a message", "conn", c.client.ID(), "panic", fmt.Sprint(p))
			c.Close(protocol.NewDisconnect(protocol.CloseInternalError, "internal error"))
		}
	}()
	if e.t.debug {
		e.t.log.Debug("message", "conn", c.client.ID(), "bytes", msg.Data.Len(), "frame", truncate(msg.Bytes(), 256))
	}
	c.client.HandleMessage(msg.Bytes())
}

// truncate shortens a frame for a debug log line.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// session is the gws per-connection storage, reduced to the one pointer we
// need instead of gws's default map.
type session struct{ c *conn }

func (s *session) Len() int { return 1 }

func (s *session) Load(key string) (any, bool) {
	return s.c, s.c != nil
}

func (s *session) Delete(key string) {}

func (s *session) Store(key string, value any) { s.c, _ = value.(*conn) }

func (s *session) Range(f func(key string, value any) bool) { f("c", s.c) }

func connOf(ws *gws.Conn) *conn {
	if s, ok := ws.Session().(*session); ok {
		return s.c
	}
	return nil
}
