package auth_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// sink records what the hub sends to one connection.
type sink struct {
	mu     sync.Mutex
	frames []string
	closed *protocol.Disconnect
}

func (s *sink) Send(f *protocol.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, string(f.JSON))
	return s.closed == nil
}

func (s *sink) Close(d protocol.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = &d
	}
}

// FuzzAuthFrame feeds arbitrary first frames to a connection that must
// authenticate. Whatever arrives, the hub must not panic, and the
// connection may only become established with a token the verifier
// accepts; anything else is answered by pong or a 4001 close.
func FuzzAuthFrame(f *testing.F) {
	j, err := auth.NewJWT(auth.JWTOptions{Secret: []byte(secret)})
	if err != nil {
		f.Fatal(err)
	}
	h, err := hub.New(hub.Options{Engine: memory.New(memory.Options{}), Auth: hub.AuthOptions{Authenticator: j, Timeout: time.Hour}})
	if err != nil {
		f.Fatal(err)
	}
	if err := h.Run(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Add(`{"type":"auth","data":{"token":"x"}}`)
	f.Add(`{"type":"auth","data":{"token":""}}`)
	f.Add(`{"type":"auth","data":"tok"}`)
	f.Add(`{"type":"auth"}`)
	f.Add(`{"type":"ping","id":"1"}`)
	f.Add(`{"type":"subscribe","room":"a"}`)
	f.Add(`{"type":"auth","data":{"token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ."}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, frame string) {
		s := &sink{}
		c := h.Connect(s, hub.ConnectOptions{})
		defer c.Gone()
		c.HandleMessage([]byte(frame))
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, fr := range s.frames {
			if strings.Contains(fr, `"connection_established"`) {
				t.Fatalf("established by frame %q", frame)
			}
		}
		if s.closed != nil && s.closed.Code != protocol.CloseUnauthorized {
			t.Fatalf("frame %q closed with %d, want 4001", frame, s.closed.Code)
		}
	})
}
