package transport

import (
	"net/http"

	"github.com/switchboard-rt/switchboard/protocol"
)

// JSON heartbeats. Browsers answer WebSocket pings by themselves but never
// show them to the page, so a page cannot tell a dead server from a quiet
// one; the seeds' clients therefore expect the server to send
// {"type":"ping"} text frames and answer each with {"type":"pong"}. A
// connection that asks for it (Options.JSONPing, or the handshake query
// parameter json_ping) gets such a frame with every heartbeat, beside the
// WebSocket ping. The liveness rule does not change: any frame from the
// client within PongTimeout of the heartbeat (its JSON pong, the
// browser's automatic WebSocket pong, or anything else) keeps the
// connection; silence closes it with 4008.

// JSONPingParam is the handshake query parameter that turns JSON
// heartbeats on ("1" or "true") or off ("0" or "false") for one
// connection, whatever Options.JSONPing says.
const JSONPingParam = "json_ping"

// jsonPingJSON is the frame's text, exactly what the seeds' servers send.
const jsonPingJSON = `{"type":"ping"}`

// jsonPingWanted reads the handshake's json_ping parameter. A value other
// than 1, true, 0 or false is a refusal (400), so that a typo does not
// leave a client without the heartbeats it counts on.
func (h *Handler) jsonPingWanted(r *http.Request) (on bool, bad string) {
	vs, ok := r.URL.Query()[JSONPingParam]
	if !ok {
		return h.opts.JSONPing, ""
	}
	if len(vs) != 1 {
		return false, "query parameter " + JSONPingParam + " must be given once"
	}
	switch vs[0] {
	case "1", "true":
		return true, ""
	case "0", "false":
		return false, ""
	}
	return false, "query parameter " + JSONPingParam + " must be 1, true, 0 or false"
}

// newJSONPingFrame returns the JSON ping shared by every connection of a
// handler: encoded once, its wire forms cached on first use.
func newJSONPingFrame() *protocol.Frame { return protocol.NewFrame([]byte(jsonPingJSON)) }
