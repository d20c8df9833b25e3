package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Bidirectional emulation (docs/protocol.md section 13): the WebSocket
// protocol over an HTTP downstream (GET /emulation/stream, NDJSON or
// data-only SSE) and POSTed upstream frames (POST /emulation/send), for
// clients behind proxies that break WebSockets. The downstream is an
// sseConn with another format; the upstream hands frames to the hub's
// DeliverToSession, which finds the session on whichever node holds it.

// streamFormat is how an sseConn writes frames.
type streamFormat uint8

const (
	formatEvents streamFormat = iota // /sse: id/event/data events
	formatNDJSON                     // emulation, format=ndjson: one JSON line per envelope
	formatData                       // emulation, format=sse: data-only events
)

// Wire slots of the emulation formats (slotSSE is /sse's).
const (
	slotNDJSON = 3
	slotData   = 4
)

// Transport names announced in connection_established.
const (
	transportHTTPStream = "http_stream"
	transportSSE        = "sse"
)

var ndjsonHeartbeat = []byte("\n")

// prelude is what a stream starts with: the reconnect delay for an
// EventSource; nothing for NDJSON (the empty write still flushes the
// headers, so the client sees the 200 at once).
func (c *sseConn) prelude() []byte {
	if c.format == formatNDJSON {
		return nil
	}
	var pre []byte
	pre = append(pre, "retry: "...)
	pre = strconv.AppendInt(pre, c.s.retry.Milliseconds(), 10)
	return append(pre, "\n\n"...)
}

func (c *sseConn) heartbeat() []byte {
	if c.format == formatNDJSON {
		return ndjsonHeartbeat
	}
	return sseHeartbeat
}

// emulationWire is f in an emulation stream's format, cached on the frame
// for every recipient.
func (c *sseConn) emulationWire(f *protocol.Frame) []byte {
	if c.format == formatNDJSON {
		return f.Wire(slotNDJSON, ndjsonLine)
	}
	return f.Wire(slotData, sseData)
}

// ndjsonLine is the JSON on one line (line breaks in encoded JSON can only
// be whitespace between tokens) and "\n".
func ndjsonLine(js []byte) []byte {
	b := make([]byte, 0, len(js)+1)
	return append(appendOneLine(b, js), '\n')
}

// sseData is a data-only SSE event: no `event:` line, so that
// EventSource.onmessage sees every envelope, and no `id:` line, as
// recovery goes through the protocol's subscribe last_event_id.
func sseData(js []byte) []byte {
	b := make([]byte, 0, len(js)+8)
	b = append(b, "data: "...)
	return append(appendOneLine(b, js), "\n\n"...)
}

func appendOneLine(b, js []byte) []byte {
	if !bytes.ContainsAny(js, "\r\n") {
		return append(b, js...)
	}
	for _, ch := range js {
		if ch != '\r' && ch != '\n' {
			b = append(b, ch)
		}
	}
	return b
}

// EmulationOptions configure an EmulationHandler. Zero values take the
// defaults.
type EmulationOptions struct {
	// MaxBodyBytes bounds a POST /emulation/send body; larger ones get
	// 413. Default 64 times the WSHandler's MaxMessageSize (64 frames of
	// the largest size).
	MaxBodyBytes int64
}

// EmulationHandler serves both emulation endpoints. It shares its
// SSEHandler's (and so its WSHandler's) options: authentication, origins,
// rate limit, connection cap, heartbeat, queue bounds, slow-consumer
// policy, MaxMessageSize per frame.
type EmulationHandler struct {
	s       *SSEHandler
	maxBody int64
}

// NewEmulationHandler returns the emulation endpoints beside s.
func NewEmulationHandler(s *SSEHandler, opts EmulationOptions) *EmulationHandler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = int64(hub.MaxSessionFrames) * int64(s.h.opts.MaxMessageSize)
	}
	return &EmulationHandler{s: s, maxBody: opts.MaxBodyBytes}
}

// Open returns the number of open emulation streams.
func (e *EmulationHandler) Open() int { return int(e.s.emu.Load()) }

// Stream is GET /emulation/stream.
func (e *EmulationHandler) Stream() http.Handler { return http.HandlerFunc(e.serveStream) }

// Send is POST /emulation/send.
func (e *EmulationHandler) Send() http.Handler { return http.HandlerFunc(e.serveSend) }

func (e *EmulationHandler) serveStream(w http.ResponseWriter, r *http.Request) {
	s, h := e.s, e.s.h
	creds, ok := s.admit(w, r, &s.emu, "an emulation stream is a GET request")
	if !ok {
		return
	}
	defer s.emu.Add(-1)
	format, name := formatData, transportSSE
	switch r.URL.Query().Get("format") {
	case "", "sse":
	case "ndjson":
		format, name = formatNDJSON, transportHTTPStream
	default:
		h.meter.Handshake(http.StatusBadRequest)
		httpError(w, http.StatusBadRequest, "bad_request", "format must be ndjson or sse")
		return
	}
	c := &sseConn{s: s, wake: make(chan struct{}, 1), format: format}
	c.client = h.hub.Connect(c, hub.ConnectOptions{Credentials: creds, RemoteAddr: r.RemoteAddr,
		Heartbeat: h.opts.HeartbeatInterval, Transport: name, Session: true})
	defer c.client.Gone()
	// Connect is synchronous: a close (no token, banned, over the user's
	// connection limit) is the HTTP answer.
	contentType := "text/event-stream"
	if format == formatNDJSON {
		contentType = "application/x-ndjson"
	}
	c.serve(w, r, contentType, name)
}

// sendBody is the body of POST /emulation/send.
type sendBody struct {
	Session string            `json:"session"`
	Frames  []json.RawMessage `json:"frames"`
}

// parseSendBody checks a POST body: the session and 1 to
// hub.MaxSessionFrames frames, each a JSON object of at most maxFrame
// bytes. On error it returns the HTTP status and error code.
func parseSendBody(b []byte, maxFrame int) (string, [][]byte, int, string, string) {
	var body sendBody
	if err := json.Unmarshal(b, &body); err != nil {
		return "", nil, http.StatusBadRequest, "bad_json", "the body must be {\"session\": string, \"frames\": [object, ...]}: " + err.Error()
	}
	if body.Session == "" {
		return "", nil, http.StatusBadRequest, "bad_request", "no session: send the session string of the stream's connection_established"
	}
	if len(body.Frames) == 0 || len(body.Frames) > hub.MaxSessionFrames {
		return "", nil, http.StatusBadRequest, "bad_request", "send 1 to " + strconv.Itoa(hub.MaxSessionFrames) + " frames, not " + strconv.Itoa(len(body.Frames))
	}
	frames := make([][]byte, len(body.Frames))
	for i, f := range body.Frames {
		f = bytes.TrimSpace(f)
		if len(f) == 0 || f[0] != '{' {
			return "", nil, http.StatusBadRequest, "bad_json", "frame " + strconv.Itoa(i) + " is not a JSON object"
		}
		if len(f) > maxFrame {
			return "", nil, http.StatusRequestEntityTooLarge, "too_large", "frame " + strconv.Itoa(i) + " is over the message size limit of " + strconv.Itoa(maxFrame) + " bytes"
		}
		frames[i] = f
	}
	return body.Session, frames, 0, "", ""
}

func (e *EmulationHandler) serveSend(w http.ResponseWriter, r *http.Request) {
	h := e.s.h
	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.originAllowed(r) {
			httpError(w, http.StatusForbidden, "origin_not_allowed", "origin "+strconv.Quote(origin)+" is not allowed to connect")
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Add("Vary", "Origin")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions: // a CORS preflight (application/json is not a simple content type)
		w.Header().Set("Allow", "POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "frames are sent with POST")
		return
	}
	if h.hub.Closing() {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down; reconnect to another node")
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "too_large", "the body is over "+strconv.FormatInt(e.maxBody, 10)+" bytes: send fewer frames per POST")
			return
		}
		httpError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error())
		return
	}
	session, frames, status, code, msg := parseSendBody(b, h.opts.MaxMessageSize)
	if status != 0 {
		httpError(w, status, code, msg)
		return
	}
	err = h.hub.DeliverToSession(r.Context(), session, frames)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, hub.ErrUnknownSession):
		httpError(w, http.StatusNotFound, "unknown_session", "no node has this session (its stream ended or its node is gone): open a new stream")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		h.log.Warn("transport: emulation send failed", "err", err)
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "internal", "the frames could not be delivered ("+err.Error()+"); retry shortly")
	}
}
