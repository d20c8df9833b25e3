package client

import (
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// action is what the client does after a connection ends.
type action uint8

const (
	actReconnect    action = iota // back off, then connect again
	actStop                       // stop for good and report the code
	actRefreshToken               // call Options.GetToken, then reconnect
)

func (a action) String() string {
	return [...]string{"reconnect", "stop", "refresh token"}[a]
}

// closeActions is the client's one table of close-code decisions. It lists
// every code of protocol.CloseCodes (a test keeps them in step) plus 1005
// and 1006, which no server sends but a client sees when a close frame had
// no code or never came. Codes not listed follow
// protocol.CloseCode.Reconnect.
var closeActions = [...]struct {
	code protocol.CloseCode
	act  action
}{
	{protocol.CloseNormal, actStop},
	{protocol.CloseGoingAway, actStop},
	{protocol.CloseProtocolError, actStop},
	{protocol.CloseUnsupportedData, actStop},
	{1005, actReconnect}, // no status in the close frame: treat as a network failure
	{1006, actReconnect}, // no close frame at all
	{protocol.CloseInvalidPayload, actStop},
	{protocol.ClosePolicyViolation, actStop},
	{protocol.CloseMessageTooBig, actStop},
	{protocol.CloseInternalError, actReconnect},
	{protocol.CloseServiceRestart, actReconnect},
	{protocol.CloseTryAgainLater, actReconnect},
	{protocol.CloseSessionExpired, actRefreshToken},
	{protocol.CloseUnauthorized, actStop},
	{protocol.CloseForbidden, actStop},
	{protocol.CloseBanned, actStop},
	{protocol.CloseSlowConsumer, actReconnect},
	{protocol.CloseKicked, actStop},
	{protocol.CloseHeartbeatTimeout, actReconnect},
}

// decide returns what to do after a connection ended with ce. The server's
// `disconnect` event, when one came with the close code, is authoritative
// about reconnecting (docs/protocol.md section 8); the table decides
// otherwise, and still turns 4000 into a token refresh.
func decide(ce *CloseError) action {
	act := closeAction(ce.Code)
	switch {
	case ce.advice < 0:
		return actStop
	case ce.advice > 0 && act == actStop:
		return actReconnect
	}
	return act
}

// closeAction looks code up in closeActions.
func closeAction(code protocol.CloseCode) action {
	for _, row := range closeActions {
		if row.code == code {
			return row.act
		}
	}
	if code.Reconnect() {
		return actReconnect
	}
	return actStop
}

// failureAction decides what a failed connection attempt means.
func failureAction(err error) action {
	var ce *CloseError
	var he *HandshakeError
	switch {
	case errors.As(err, &ce):
		return decide(ce)
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrProtocolVersion):
		return actStop
	case errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized:
		return actRefreshToken // the token was rejected: a new one may pass
	case errors.As(err, &he):
		// 408 and 429 ask to come back later; other 4xx answers (bad
		// handshake, forbidden origin, wrong path) will not change.
		if he.StatusCode >= 400 && he.StatusCode < 500 &&
			he.StatusCode != http.StatusRequestTimeout && he.StatusCode != http.StatusTooManyRequests {
			return actStop
		}
	}
	return actReconnect
}

// backoff is exponential backoff with full jitter: retry n waits a
// uniformly random time in [0, min(max, initial·factorⁿ)]. Full jitter
// spreads a crowd of clients cut at once (a server restart) over the whole
// window instead of bunching them at its end.
type backoff struct {
	initial, max time.Duration
	factor       float64
	// randN returns a uniform random int64 in [0, n). Injectable for tests.
	randN func(n int64) int64
}

// ceiling returns the upper bound of retry n's delay.
func (b backoff) ceiling(n int) time.Duration {
	d := float64(b.initial) * math.Pow(b.factor, float64(n))
	if d >= float64(b.max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.max
	}
	return time.Duration(d)
}

// delay returns retry n's delay.
func (b backoff) delay(n int) time.Duration {
	c := b.ceiling(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(b.randN(int64(c) + 1))
}
