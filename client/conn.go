package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/protocol"
)

// wsConn is one WebSocket connection of a client. A client has at most one
// at a time; when it ends, the next one is dialled.
type wsConn struct {
	c           *Client
	ws          *gws.Conn
	info        established   // set before established is closed
	established chan struct{} // closed on connection_established
	done        chan struct{} // closed when the read loop has ended
	wake        chan struct{} // a message was queued
	idle        time.Duration // read deadline extension; reader goroutine only

	estOnce   sync.Once
	local     atomic.Pointer[string] // why we cut the connection ourselves
	closeCode protocol.CloseCode     // set before done is closed
	closeMsg  string
	// disconnect is the last `disconnect` event; reader goroutine only.
	disconnect *protocol.Disconnect

	// heartbeat, under c.mu
	pingID  string
	pingOut bool
	missed  int

	// test hooks
	noPong atomic.Bool // do not answer the server's pings
	deaf   atomic.Bool // drop every incoming frame
}

// established is the data of connection_established.
type established struct {
	UserID            string `json:"user_id"`
	ConnectionID      string `json:"connection_id"`
	HeartbeatInterval int64  `json:"heartbeat_interval_ms"`
	ProtocolVersion   int    `json:"protocol_version"`
	Node              string `json:"node"`
	ExpiresAt         int64  `json:"expires_at"` // Unix ms; 0: the credentials do not expire
}

// subprotocol is offered in every handshake (docs/protocol.md section 1).
const subprotocol = "switchboard.v1"

// dial opens one connection and waits for connection_established.
func (c *Client) dial(ctx context.Context) (*wsConn, error) {
	c.mu.Lock()
	needToken := c.needToken
	c.mu.Unlock()
	if needToken {
		tok, err := c.opts.GetToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: get token: %w", err)
		}
		c.mu.Lock()
		c.token, c.needToken = tok, false
		c.mu.Unlock()
	}
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()

	addr := c.url
	header := c.opts.Header.Clone()
	if header == nil {
		header = make(map[string][]string)
	}
	header.Set("Sec-WebSocket-Protocol", subprotocol)
	if token != "" {
		if c.opts.TokenInQuery {
			u, _ := url.Parse(addr) // checked by Connect
			q := u.Query()
			q.Set("token", token)
			u.RawQuery = q.Encode()
			addr = u.String()
		} else {
			header.Set("Authorization", "Bearer "+token)
		}
	}
	cn := &wsConn{
		c:           c,
		established: make(chan struct{}),
		done:        make(chan struct{}),
		wake:        make(chan struct{}, 1),
	}
	d := &ctxDialer{ctx: ctx}
	ws, resp, err := gws.NewClient(cn, &gws.ClientOption{
		Addr:               addr,
		RequestHeader:      header,
		HandshakeTimeout:   c.opts.HandshakeTimeout,
		ReadMaxPayloadSize: maxFrame,
		Logger:             nopLogger{},
		NewDialer:          func() (gws.Dialer, error) { return d, nil },
		PermessageDeflate: gws.PermessageDeflate{
			Enabled: c.opts.Compression,
			// No context takeover either way: what the server offers, and
			// no per-connection window to keep.
			ServerContextTakeover: false,
			ClientContextTakeover: false,
		},
	})
	d.stopWatch()
	if err != nil {
		if resp != nil && resp.StatusCode != 101 {
			return nil, &HandshakeError{StatusCode: resp.StatusCode}
		}
		return nil, fmt.Errorf("client: dial %s: %w", c.url, err)
	}
	cn.ws = ws
	go ws.ReadLoop()
	t := time.NewTimer(c.opts.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-cn.established:
		if v := cn.info.ProtocolVersion; v != protocol.Version {
			_ = ws.WriteClose(1000, nil)
			<-cn.done
			return nil, fmt.Errorf("%w: the server speaks version %d, this client %d", ErrProtocolVersion, v, protocol.Version)
		}
		return cn, nil
	case <-cn.done:
		return nil, cn.closeError()
	case <-ctx.Done():
		cn.kill("connect cancelled")
		<-cn.done
		return nil, ctx.Err()
	case <-t.C:
		cn.kill("no connection_established in time")
		<-cn.done
		return nil, fmt.Errorf("client: no connection_established within %s", c.opts.HandshakeTimeout)
	}
}

// ctxDialer dials with a context. gws's handshake has its own timeout but
// no context, so the dialer also cuts the socket if ctx ends before the
// handshake is over.
type ctxDialer struct {
	ctx  context.Context
	mu   sync.Mutex
	stop func() bool
}

func (d *ctxDialer) Dial(network, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(d.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(d.ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	d.mu.Lock()
	d.stop = stop
	d.mu.Unlock()
	return conn, nil
}

func (d *ctxDialer) stopWatch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		d.stop()
	}
}

type nopLogger struct{}

func (nopLogger) Error(...any) {}

// kill cuts the connection without a close frame; the read loop then ends
// and the client reconnects (close code 1006).
func (cn *wsConn) kill(reason string) {
	cn.local.CompareAndSwap(nil, &reason)
	_ = cn.ws.NetConn().Close()
}

func (cn *wsConn) wakeWriter() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// closeError says how the connection ended, with the `disconnect` event's
// advice when one came with the same code. Valid once done is closed.
func (cn *wsConn) closeError() *CloseError {
	ce := &CloseError{Code: cn.closeCode, Reason: cn.closeMsg}
	if d := cn.disconnect; d != nil && d.Code == cn.closeCode {
		ce.advice = -1
		if d.Reconnect {
			ce.advice = 1
		}
	}
	return ce
}

// ---- gws events, all on the connection's read goroutine ----

func (cn *wsConn) OnOpen(*gws.Conn) {}

func (cn *wsConn) OnClose(ws *gws.Conn, err error) {
	var ce *gws.CloseError
	switch {
	case cn.local.Load() != nil:
		cn.closeCode, cn.closeMsg = 1006, *cn.local.Load()
	case errors.As(err, &ce):
		cn.closeCode, cn.closeMsg = protocol.CloseCode(ce.Code), string(ce.Reason)
		if ce.Code == 0 {
			cn.closeCode = 1005
		}
	case cn.disconnect != nil:
		// The disconnect event came but its close frame did not.
		cn.closeCode, cn.closeMsg = cn.disconnect.Code, cn.disconnect.Reason
	default:
		cn.closeCode, cn.closeMsg = 1006, "connection lost"
		if err != nil && err.Error() != "" {
			cn.closeMsg = "connection lost: " + err.Error()
		}
	}
	close(cn.done)
}

func (cn *wsConn) OnPing(ws *gws.Conn, payload []byte) {
	cn.touch(ws)
	if !cn.noPong.Load() {
		_ = ws.SetWriteDeadline(time.Now().Add(cn.c.opts.WriteTimeout))
		_ = ws.WritePong(payload)
	}
}

func (cn *wsConn) OnPong(ws *gws.Conn, payload []byte) { cn.touch(ws) }

// touch pushes the read deadline out: the server pings every
// heartbeat_interval_ms, so twice that without a frame means the
// connection is dead (a half-open TCP connection is otherwise silent).
func (cn *wsConn) touch(ws *gws.Conn) {
	if cn.idle > 0 && ws != nil {
		_ = ws.SetReadDeadline(time.Now().Add(cn.idle))
	}
}

func (cn *wsConn) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	cn.touch(ws)
	if cn.deaf.Load() {
		return
	}
	cn.onFrame(ws, msg.Bytes())
}

// onFrame parses one frame from the server and acts on it; b is not kept.
// ws is nil only in tests.
func (cn *wsConn) onFrame(ws *gws.Conn, b []byte) {
	var env protocol.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Type == "" {
		if isJSONRPC(b) {
			// The answer to a raw JSON-RPC request made with Send (its id
			// may be a number, which the envelope cannot hold).
			cn.c.mu.Lock()
			cn.c.eventLocked(&protocol.Envelope{Type: protocol.TypeJSONRPC, Data: append(json.RawMessage(nil), b...)})
			cn.c.mu.Unlock()
			return
		}
		if err == nil {
			err = errors.New("no type")
		}
		cn.c.mu.Lock()
		cn.c.reportLocked(fmt.Errorf("client: server sent a frame that is not a protocol message: %w", err))
		cn.c.mu.Unlock()
		return
	}
	if env.Type == protocol.TypeConnectionEstablished {
		cn.estOnce.Do(func() {
			_ = json.Unmarshal(env.Data, &cn.info)
			if cn.info.HeartbeatInterval > 0 {
				cn.idle = 2 * time.Duration(cn.info.HeartbeatInterval) * time.Millisecond
				cn.touch(ws)
			}
			close(cn.established)
		})
		return
	}
	if env.Type == protocol.TypeDisconnect {
		var d protocol.Disconnect
		if json.Unmarshal(env.Data, &d) == nil {
			cn.disconnect = &d
		}
		return
	}
	cn.c.handle(cn, &env)
}

// isJSONRPC reports whether b is a raw JSON-RPC 2.0 message (no `type`).
func isJSONRPC(b []byte) bool {
	var v struct {
		JSONRPC string `json:"jsonrpc"`
	}
	return json.Unmarshal(b, &v) == nil && v.JSONRPC == "2.0"
}

// ---- writing ----

// writer writes queued messages while cn is the current connection.
func (c *Client) writer(cn *wsConn) {
	defer c.wg.Done()
	var frames [][]byte
	for {
		select {
		case <-cn.wake:
		case <-cn.done:
			return
		}
		for {
			frames = c.takeBatch(cn, frames[:0])
			if len(frames) == 0 {
				break
			}
			for i, f := range frames {
				frames[i] = nil
				_ = cn.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
				if err := cn.ws.WriteMessage(gws.OpcodeText, f); err != nil {
					// gws has closed the socket; the read loop ends and
					// unanswered requests are re-sent on the next one.
					return
				}
			}
		}
	}
}

// takeBatch moves the queue's messages into frames, marking requests as
// sent on cn. Subscribe frames are built here, so that last_event_id is
// the last event seen when the request actually goes out.
func (c *Client) takeBatch(cn *wsConn, frames [][]byte) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != cn {
		return frames
	}
	for i, it := range c.queue {
		c.queue[i] = outItem{}
		if it.req == nil {
			frames = append(frames, it.raw)
			continue
		}
		r := it.req
		if c.pending[r.id] != r {
			continue // given up by its caller before it was sent
		}
		r.sentOn = cn
		frames = append(frames, c.frameLocked(r))
	}
	c.queue = c.queue[:0]
	return frames
}

// heartbeat sends application pings and cuts the connection after
// MaxMissedPongs in a row went unanswered.
func (c *Client) heartbeat(cn *wsConn) {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-cn.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if cn.pingOut {
			cn.missed++
		}
		if cn.missed >= c.opts.MaxMissedPongs {
			c.mu.Unlock()
			cn.kill("no pong from the server to " + strconv.Itoa(cn.missed) + " pings")
			return
		}
		cn.pingID = "hb-" + strconv.Itoa(n)
		cn.pingOut = true
		frame := protocol.Encode(&protocol.Envelope{Type: protocol.TypePing, ID: cn.pingID})
		c.mu.Unlock()
		_ = cn.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if cn.ws.WriteMessage(gws.OpcodeText, frame) != nil {
			return
		}
	}
}

// ---- test hooks ----

// killConn cuts the current connection without a close frame, as a
// network failure would. It reports whether there was one.
func (c *Client) killConn() bool {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return false
	}
	cn.kill("cut by test")
	return true
}

// ignorePings makes the current connection stop answering the server's
// WebSocket pings.
func (c *Client) ignorePings() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return false
	}
	c.cur.noPong.Store(true)
	return true
}

// deafen makes the current connection drop every incoming frame.
func (c *Client) deafen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return false
	}
	c.cur.deaf.Store(true)
	return true
}

// connInfo returns the current connection id and the number of
// connections opened so far.
func (c *Client) connInfo() (string, int, State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connID, c.opens, c.state
}
