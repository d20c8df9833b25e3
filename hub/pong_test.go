package hub

import (
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

// TestClientPongIsAccepted: a client's {"type":"pong"} (the answer to a
// JSON ping) gets no answer and no error, before authentication too, where
// any other frame than auth or ping closes the connection with 4001.
func TestClientPongIsAccepted(t *testing.T) {
	h := newHub(t, Options{Auth: AuthOptions{Authenticator: expiryAuth{}}})
	s := &fakeSink{}
	c := h.Connect(s, ConnInfo{}) // no credentials: waits for its auth frame
	for range 3 {
		send(c, `{"type":"pong"}`)
	}
	if cl := s.closeList(); len(cl) != 0 {
		t.Fatalf("a pending connection's pong closed it: %v", cl)
	}
	send(c, `{"type":"auth","id":"a","data":{"token":"1h"}}`)
	if s.count(t, protocol.TypeConnectionEstablished) != 1 {
		t.Fatalf("auth after pongs failed:%s", s.dump(t))
	}
	for range 2 * DefaultMaxErrors {
		send(c, `{"type":"pong","id":"p"}`)
	}
	if n := len(errorsOf(t, s)); n != 0 {
		t.Errorf("pongs earned %d errors", n)
	}
	if cl := s.closeList(); len(cl) != 0 {
		t.Errorf("pongs closed the connection: %v", cl)
	}
	if got := len(s.msgs(t)); got != 1 {
		t.Errorf("%d messages, want only connection_established:%s", got, s.dump(t))
	}
}
