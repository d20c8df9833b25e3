package transport_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// TestPanicClosesOnlyThatConnection: a panic while handling one message
// (here in an embedder's hook) closes that connection with 1011; the
// server and other connections carry on.
func TestPanicClosesOnlyThatConnection(t *testing.T) {
	n := wstest.Start(t, server.Config{Hub: hub.Options{Hooks: hub.Hooks{
		OnPublish: func(ctx context.Context, c hub.ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error) {
			if typ == "boom" {
				panic("hook bug")
			}
			return nil, nil
		},
	}}})
	bad := n.MustDial(t, "", nil)
	bad.Expect("connection_established")
	good := n.MustDial(t, "", nil)
	good.Expect("connection_established")
	good.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:p"})
	good.Expect("subscribed")

	bad.Send(map[string]any{"type": "boom", "room": "chat:p"})
	if code := bad.Closed(); code != 1011 {
		t.Fatalf("panicking request: close %d, want 1011", code)
	}
	good.Send(map[string]any{"type": "message", "id": "m", "room": "chat:p", "data": 1})
	good.Expect("message")
	good.Expect("ack")
}
