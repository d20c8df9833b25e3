package protocol

import "strconv"

// CloseCode is a WebSocket close status code as Switchboard uses it. The
// table below is the single source of truth: docs/protocol.md and the SDKs'
// reconnect decisions are checked against it by tests.
type CloseCode uint16

// Close codes the server sends. The server never sends 1005, 1006 or 1015:
// those are reserved for a peer to report a close it did not receive.
const (
	CloseNormal           CloseCode = 1000 // normal closure, purpose fulfilled
	CloseGoingAway        CloseCode = 1001 // endpoint going away
	CloseProtocolError    CloseCode = 1002 // WebSocket protocol violation
	CloseUnsupportedData  CloseCode = 1003 // binary frame where JSON text is expected
	CloseInvalidPayload   CloseCode = 1007 // text frame that is not valid UTF-8, or a compressed message that does not inflate
	ClosePolicyViolation  CloseCode = 1008 // generic policy violation (e.g. a flood of invalid messages)
	CloseMessageTooBig    CloseCode = 1009 // message larger than the configured limit
	CloseInternalError    CloseCode = 1011 // unexpected server condition
	CloseServiceRestart   CloseCode = 1012 // server restarting or draining: reconnect
	CloseTryAgainLater    CloseCode = 1013 // server overloaded: reconnect later
	CloseSessionExpired   CloseCode = 4000 // token expired: get a new token, then reconnect
	CloseUnauthorized     CloseCode = 4001 // authentication failed or did not arrive in time
	CloseForbidden        CloseCode = 4003 // repeated permission violations
	CloseBanned           CloseCode = 4004 // banned or throttled for persistent abuse
	CloseSlowConsumer     CloseCode = 4005 // outbound queue overflowed: client reads too slowly
	CloseKicked           CloseCode = 4006 // disconnected by the server API or an admin
	CloseHeartbeatTimeout CloseCode = 4008 // no pong within the pong timeout
)

// CloseInfo describes one close code: its wire name, what it means and
// whether a client should reconnect after receiving it.
type CloseInfo struct {
	Code      CloseCode
	Name      string
	Meaning   string
	Reconnect bool
}

// closeTable is ordered by code; docs/protocol.md renders the same rows.
var closeTable = []CloseInfo{
	{CloseNormal, "normal", "Normal closure; the purpose of the connection was fulfilled.", false},
	{CloseGoingAway, "going_away", "The endpoint is going away (for example a browser tab closing).", false},
	{CloseProtocolError, "protocol_error", "The peer broke the WebSocket protocol (bad framing, bad opcode, unmasked client frame).", false},
	{CloseUnsupportedData, "unsupported_data", "A binary frame arrived where a JSON text frame is expected.", false},
	{CloseInvalidPayload, "invalid_payload", "A text frame was not valid UTF-8, or a compressed message did not inflate.", false},
	{ClosePolicyViolation, "policy_violation", "The client broke a server policy, such as sending a flood of invalid messages.", false},
	{CloseMessageTooBig, "message_too_big", "A message (after decompression) exceeded the configured size limit.", false},
	{CloseInternalError, "internal_error", "The server met an unexpected condition.", true},
	{CloseServiceRestart, "service_restart", "The server is restarting or draining; reconnect (another node may answer).", true},
	{CloseTryAgainLater, "try_again_later", "The server is overloaded; reconnect after a back-off.", true},
	{CloseSessionExpired, "session_expired", "The session's token expired; get a new token, then reconnect.", true},
	{CloseUnauthorized, "unauthorized", "Authentication failed or the auth frame did not arrive in time.", false},
	{CloseForbidden, "forbidden", "Repeated attempts to do what the connection is not allowed to do.", false},
	{CloseBanned, "banned", "The user is banned, or the connection was throttled for persistent abuse.", false},
	{CloseSlowConsumer, "slow_consumer", "The client read too slowly and its outbound queue overflowed; reconnect and recover.", true},
	{CloseKicked, "kicked", "Disconnected on purpose by the server API or an administrator.", false},
	{CloseHeartbeatTimeout, "heartbeat_timeout", "The client did not answer a ping within the pong timeout.", true},
}

// CloseCodes returns the close-code table, ordered by code.
func CloseCodes() []CloseInfo {
	out := make([]CloseInfo, len(closeTable))
	copy(out, closeTable)
	return out
}

// Info returns the table row for c; ok is false for a code Switchboard does
// not send.
func (c CloseCode) Info() (CloseInfo, bool) {
	for _, ci := range closeTable {
		if ci.Code == c {
			return ci, true
		}
	}
	return CloseInfo{}, false
}

// Reconnect reports whether a client should reconnect after this code.
// Unknown codes below 3000 (the protocol's range, 1006 included) are treated
// as transient, as a network failure would be; unknown codes from 3000
// (libraries' and applications' ranges) are decisions and are not retried.
func (c CloseCode) Reconnect() bool {
	if ci, ok := c.Info(); ok {
		return ci.Reconnect
	}
	return c < 3000
}

// String returns the code's name, or its number.
func (c CloseCode) String() string {
	if ci, ok := c.Info(); ok {
		return ci.Name
	}
	return strconv.Itoa(int(c))
}

// Disconnect is the reason the server ends a connection. The same value is
// sent to the client as a `disconnect` event, used as the close frame's code
// and reason, counted in metrics and logged.
type Disconnect struct {
	Code      CloseCode `json:"code"`
	Reason    string    `json:"reason"`
	Reconnect bool      `json:"reconnect"`
}

// NewDisconnect returns a Disconnect with the table's reconnect advice. An
// empty reason is replaced by the code's name.
func NewDisconnect(code CloseCode, reason string) Disconnect {
	if reason == "" {
		reason = code.String()
	}
	// A close frame's reason must fit in 123 bytes (125 minus the code).
	if len(reason) > 123 {
		reason = truncateUTF8(reason, 123)
	}
	return Disconnect{Code: code, Reason: reason, Reconnect: code.Reconnect()}
}

func (d Disconnect) Error() string {
	return "switchboard: disconnect " + strconv.Itoa(int(d.Code)) + " (" + d.Reason + ")"
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // do not cut a multi-byte rune
		n--
	}
	return s[:n]
}
