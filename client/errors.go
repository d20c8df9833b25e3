package client

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Errors a caller may branch on with errors.Is.
var (
	// ErrClosed is returned by calls on a client that Close or a final
	// disconnect has stopped, and by calls that were waiting when it
	// stopped.
	ErrClosed = errors.New("client: closed")
	// ErrQueueFull is returned when Options.QueueSize messages are already
	// waiting to be written (normally because the client is reconnecting).
	ErrQueueFull = errors.New("client: send queue full")
	// ErrAlreadySubscribed is returned by Subscribe for a room the client
	// is already subscribed to.
	ErrAlreadySubscribed = errors.New("client: already subscribed to this room")
	// ErrUnauthorized, returned (wrapped) by Options.GetToken, tells the
	// client that no token can be had: it stops instead of retrying.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrConnectionLost is returned by RPC when the connection ended after
	// the call was sent and before its answer: the call is not repeated,
	// since the method may not be safe to run twice.
	ErrConnectionLost = errors.New("client: connection lost before the answer")
	// ErrProtocolVersion stops a client whose server speaks a protocol
	// version it does not know.
	ErrProtocolVersion = errors.New("client: unsupported protocol version")
)

// ServerError is an `error` event the server sent about one request (or,
// passed to Options.OnError, about none in particular).
type ServerError struct {
	// Code is one of the protocol's error codes ("invalid_room",
	// "too_many_rooms", "not_implemented", ...).
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "client: server error " + e.Code + ": " + e.Message }

// CloseError is why a connection ended: the close code the server sent,
// or 1006 when the connection broke without one. Client.Err returns one
// when a close code stopped the client; Options.OnState receives one with
// every StateReconnecting.
type CloseError struct {
	Code   protocol.CloseCode
	Reason string
	// advice is the `disconnect` event's reconnect field, when one came
	// with this code: +1 reconnect, -1 do not, 0 no event.
	advice int8
}

func (e *CloseError) Error() string {
	return "client: connection closed with " + strconv.Itoa(int(e.Code)) + " (" + e.Reason + ")"
}

// HandshakeError is an HTTP answer other than 101 to the WebSocket
// handshake. 401 (token rejected) makes the client ask Options.GetToken for
// a new token and try again, or stop without GetToken; other 4xx answers
// (except 408 and 429) stop the client: asking again will not help.
// Others are retried.
type HandshakeError struct {
	StatusCode int
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("client: server refused the WebSocket handshake with HTTP %d", e.StatusCode)
}

// RPCError is a JSON-RPC 2.0 error answer to RPC: from the application's
// method, or from the server (-32601 method not found, -32001 timeout,
// -32003 forbidden, ...; see docs/protocol.md section 3.4).
type RPCError = protocol.RPCError

// errGaveUp wraps the last failure when Options.MaxAttempts is reached.
type errGaveUp struct {
	attempts int
	last     error
}

func (e *errGaveUp) Error() string {
	return fmt.Sprintf("client: gave up after %d failed connection attempts: %v", e.attempts, e.last)
}

func (e *errGaveUp) Unwrap() error { return e.last }
