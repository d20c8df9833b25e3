package hub

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Emulated sessions (docs/protocol.md section 13): a connection whose
// downstream is an HTTP stream and whose frames arrive by POST, on any
// node. The session string is "<connection id>.<secret>": the id lets the
// node that holds the connection find it, the secret (144 random bits,
// compared in constant time) proves the POST comes from the stream's
// client. A POST on another node goes over the engine's control channel
// as a request ("session_send") that the owning node answers
// ("session_reply", addressed to the asking node); nodes that do not hold
// the connection stay silent, so silence until SessionTimeout means that
// no node has it.

// Errors of DeliverToSession.
var (
	// ErrUnknownSession: no node has the session (it ended, its node is
	// gone, or the secret is wrong). The client opens a new stream.
	ErrUnknownSession = errors.New("hub: unknown session: it ended or its node is gone; open a new stream")
	// ErrSessionBusy: too many deliveries are waiting for other nodes;
	// retry shortly.
	ErrSessionBusy = errors.New("hub: too many session deliveries in flight; retry shortly")
	// ErrSessionTimeout: the owning node took the frames but did not
	// finish them in time; some may have run. Retry after a moment.
	ErrSessionTimeout = errors.New("hub: the session's node did not finish the frames in time")
)

// Bounds of emulated sessions.
const (
	// MaxSessionFrames is the most frames one DeliverToSession takes.
	MaxSessionFrames = 64
	// maxSessionPending bounds the deliveries waiting for another node,
	// and the remote deliveries one node runs at a time.
	maxSessionPending = 1024
	// SessionWorkTimeout bounds how long DeliverToSession waits for a
	// node that claimed a session to finish its frames (each frame's
	// engine calls are bounded by EngineTimeout); then ErrSessionTimeout.
	SessionWorkTimeout = 60 * time.Second
	// maxSessionChunk bounds the frames' bytes in one session_send: a
	// larger POST goes as several requests, one after the other, as
	// brokers cap a message (NATS: 1 MiB by default).
	maxSessionChunk    = 256 << 10
	sessionSecretBytes = 18
)

// Reply statuses of session_reply.
const (
	replyDone    = "done"    // every frame was handed over
	replyWorking = "working" // claimed, still running: wait for done
	replyUnknown = "unknown" // the connection is here but the secret is wrong, or it is gone
	replyBusy    = "busy"    // the owner runs too many remote deliveries
)

type sessionReply struct {
	status string
}

// sessionRouter holds a node's deliveries waiting for other nodes and
// bounds the remote deliveries it runs.
type sessionRouter struct {
	mu      sync.Mutex
	pending map[string]chan sessionReply
	running chan struct{} // semaphore of remote deliveries run here
}

func (r *sessionRouter) init() {
	r.pending = make(map[string]chan sessionReply)
	r.running = make(chan struct{}, maxSessionPending)
}

func newSessionSecret() string {
	b := make([]byte, sessionSecretBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session is the connection's session string, or "" if it is not one.
func (c *Client) session() string {
	if c.secret == "" {
		return ""
	}
	return c.id + "." + c.secret
}

// splitSession parses "<connection id>.<secret>".
func splitSession(s string) (conn, secret string, ok bool) {
	conn, secret, ok = strings.Cut(s, ".")
	if !ok || len(conn) != 16 || len(secret) != base64.RawURLEncoding.EncodedLen(sessionSecretBytes) {
		return "", "", false
	}
	if _, err := hex.DecodeString(conn); err != nil {
		return "", "", false
	}
	return conn, secret, true
}

// DeliverToSession hands frames (each one client message, as a WebSocket
// text frame would carry it) to the emulated session's connection, in
// order, and returns once all were handled: their answers are on the
// connection's stream. The session may be on any node of the cluster.
// Errors: ErrUnknownSession, ErrSessionBusy, ErrSessionTimeout, ctx's
// error, or a wrapped engine error.
func (h *Hub) DeliverToSession(ctx context.Context, session string, frames [][]byte) error {
	if len(frames) == 0 || len(frames) > MaxSessionFrames {
		return fmt.Errorf("hub: %d frames: send 1 to %d", len(frames), MaxSessionFrames)
	}
	connID, secret, ok := splitSession(session)
	if !ok {
		return ErrUnknownSession
	}
	if c := h.lookupConn(connID); c != nil {
		if !c.deliver(secret, frames) {
			return ErrUnknownSession
		}
		return nil
	}
	if h.localEngine { // one node: no other can have it
		return ErrUnknownSession
	}
	return h.routeSession(ctx, connID, secret, frames)
}

func (h *Hub) lookupConn(id string) *Client {
	sh := h.connShard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.byID[id]
}

// deliver runs frames through c if secret is its session's; false if not
// (or c is gone). A panic while handling a frame ends this connection
// with 1011, as on a WebSocket, not the process.
func (c *Client) deliver(secret string, frames [][]byte) (ok bool) {
	if c.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		return false
	}
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return false
	}
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			c.hub.log.Error("hub: panic while handling a session frame", "conn", c.id, "panic", fmt.Sprint(p))
			c.sink.Close(protocol.NewDisconnect(protocol.CloseInternalError, "internal error"))
		}
	}()
	for _, f := range frames {
		c.HandleMessage(f)
	}
	return true
}

// routeSession asks the other nodes to deliver frames, in chunks of at
// most maxSessionChunk bytes (or one frame), each after the previous one
// was done, so that the order holds.
func (h *Hub) routeSession(ctx context.Context, connID, secret string, frames [][]byte) error {
	for len(frames) > 0 {
		n, size := 1, len(frames[0])
		for n < len(frames) && size+len(frames[n]) <= maxSessionChunk {
			size += len(frames[n])
			n++
		}
		if err := h.routeChunk(ctx, connID, secret, frames[:n]); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}

// routeChunk asks the other nodes to deliver frames and waits for the
// owner's answer.
func (h *Hub) routeChunk(ctx context.Context, connID, secret string, frames [][]byte) error {
	r := &h.sessions
	req := randomID(8)
	ch := make(chan sessionReply, 2)
	r.mu.Lock()
	if len(r.pending) >= maxSessionPending {
		r.mu.Unlock()
		return ErrSessionBusy
	}
	r.pending[req] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, req)
		r.mu.Unlock()
	}()
	raw := make([]json.RawMessage, len(frames))
	for i, f := range frames {
		raw[i] = f
	}
	// The clock starts before the publish: a broker that hangs counts.
	find := time.NewTimer(h.opts.SessionTimeout)
	defer find.Stop()
	pctx, cancel := context.WithTimeout(ctx, h.opts.SessionTimeout)
	err := h.sendControl(pctx, &control{Op: "session_send", Conn: connID, Secret: secret, Frames: raw, Req: req, Node: h.opts.NodeID})
	cancel()
	if err != nil {
		return err
	}
	claimed := false
	var work <-chan time.Time
	for {
		select {
		case rep := <-ch:
			switch rep.status {
			case replyDone:
				return nil
			case replyUnknown:
				return ErrUnknownSession
			case replyBusy:
				return ErrSessionBusy
			case replyWorking:
				if !claimed {
					claimed = true
					find.Stop()
					t := time.NewTimer(SessionWorkTimeout)
					defer t.Stop()
					work = t.C
				}
			}
		case <-find.C:
			return ErrUnknownSession
		case <-work:
			return ErrSessionTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// applySessionSend runs on every node: the one holding the connection
// delivers the frames and answers; the others stay silent. The delivery
// runs on its own goroutine, not the engine's delivery loop, whose
// messages (and this request's own publishes' acks) must keep flowing.
func (h *Hub) applySessionSend(cmd *control) {
	c := h.lookupConn(cmd.Conn)
	if c == nil || cmd.Req == "" || cmd.Node == "" {
		return
	}
	r := &h.sessions
	select {
	case r.running <- struct{}{}:
	default:
		h.sessionReply(cmd, replyBusy)
		return
	}
	go func() {
		defer func() { <-r.running }()
		frames := make([][]byte, 0, min(len(cmd.Frames), MaxSessionFrames))
		for _, f := range cmd.Frames[:min(len(cmd.Frames), MaxSessionFrames)] {
			frames = append(frames, f)
		}
		// Tell the asker the session is here if the frames take a while,
		// so that it waits for them instead of answering unknown_session.
		t := time.AfterFunc(h.opts.SessionTimeout/3, func() { h.sessionReply(cmd, replyWorking) })
		ok := c.deliver(cmd.Secret, frames)
		t.Stop()
		if ok {
			h.sessionReply(cmd, replyDone)
		} else {
			h.sessionReply(cmd, replyUnknown)
		}
	}()
}

func (h *Hub) sessionReply(cmd *control, status string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.SessionTimeout)
	defer cancel()
	if err := h.sendControl(ctx, &control{Op: "session_reply", Node: cmd.Node, Req: cmd.Req, Status: status}); err != nil {
		h.log.Warn("hub: session reply not sent", "node", cmd.Node, "err", err)
	}
}

// applySessionReply hands an answer to the waiting delivery, if it is
// this node's and still waiting.
func (h *Hub) applySessionReply(cmd *control) {
	if cmd.Node != h.opts.NodeID {
		return
	}
	r := &h.sessions
	r.mu.Lock()
	ch := r.pending[cmd.Req]
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- sessionReply{status: cmd.Status}:
	default: // the waiter has what it needs
	}
}
