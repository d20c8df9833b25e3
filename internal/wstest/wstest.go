// Package wstest runs Switchboard nodes on loopback and drives them with a
// WebSocket client we did not write (gorilla/websocket), for the
// end-to-end tests of several packages.
package wstest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/server"
)

// Node is a running server.
type Node struct {
	Srv  *server.Server
	Addr string // host:port on 127.0.0.1
	// Stop drains the node and waits for Serve to return (at most 15 s);
	// it also runs when the test ends, and only once.
	Stop func()
}

// URL is the node's WebSocket endpoint.
func (n *Node) URL() string { return "ws://" + n.Addr + "/ws" }

// Start runs a node for cfg on 127.0.0.1:0 until the test ends; Serve
// returning an error other than http.ErrServerClosed fails the test.
func Start(t testing.TB, cfg server.Config) *Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("server did not stop within 15 s")
			}
		})
	}
	t.Cleanup(stop)
	return &Node{Srv: srv, Addr: ln.Addr().String(), Stop: stop}
}

// Conn is a test client connection.
type Conn struct {
	T  testing.TB
	WS *websocket.Conn
}

// Msg is a decoded server message.
type Msg struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Room   string          `json:"room"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data"`
	Raw    []byte          `json:"-"`
}

// Dial connects to /ws with an optional query string and headers.
func (n *Node) Dial(t testing.TB, query string, hdr http.Header) (*Conn, *http.Response, error) {
	t.Helper()
	u := "ws://" + n.Addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(u, hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &Conn{T: t, WS: ws}, resp, nil
}

// MustDial is Dial that fails the test on error.
func (n *Node) MustDial(t testing.TB, query string, hdr http.Header) *Conn {
	t.Helper()
	c, resp, err := n.Dial(t, query, hdr)
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		t.Fatalf("dial: %v %s", err, body)
	}
	return c
}

// Send writes v as a JSON text frame.
func (c *Conn) Send(v any) {
	c.T.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.T.Fatal(err)
	}
	if err := c.WS.WriteMessage(websocket.TextMessage, b); err != nil {
		c.T.Fatalf("send: %v", err)
	}
}

// Next reads the next message, giving up after 5 s.
func (c *Conn) Next() (Msg, error) {
	c.WS.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.WS.ReadMessage()
	if err != nil {
		return Msg{}, err
	}
	if !json.Valid(b) {
		c.T.Fatalf("bad JSON from server: %s", b)
	}
	var m Msg
	_ = json.Unmarshal(b, &m) // raw JSON-RPC answers have a numeric id

	m.Raw = b
	return m, nil
}

// Expect reads until a message of type typ, skipping join/leave notices;
// any other message fails the test.
func (c *Conn) Expect(typ string) Msg {
	c.T.Helper()
	for i := 0; i < 50; i++ {
		m, err := c.Next()
		if err != nil {
			c.T.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type == "user_joined" || m.Type == "user_left" {
			continue
		}
		c.T.Fatalf("waiting for %s, got %s", typ, m.Raw)
	}
	c.T.Fatalf("no %s in 50 messages", typ)
	return Msg{}
}

// Closed reads until the server closes the connection and returns the
// close code, checking that a disconnect event with the same code came
// just before the close frame.
func (c *Conn) Closed() int {
	c.T.Helper()
	var disconnect *Msg
	for i := 0; i < 1000; i++ {
		m, err := c.Next()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				c.T.Fatalf("want a close frame, got %v", err)
			}
			if disconnect == nil {
				c.T.Fatalf("close %d without a disconnect event before it", ce.Code)
			}
			var d struct{ Code int }
			json.Unmarshal(disconnect.Data, &d)
			if d.Code != ce.Code {
				c.T.Fatalf("disconnect event code %d, close frame %d", d.Code, ce.Code)
			}
			return ce.Code
		}
		if m.Type == "disconnect" {
			disconnect = &m
		}
	}
	c.T.Fatal("connection did not close")
	return 0
}

// ErrorCode returns the code of an error event.
func ErrorCode(m Msg) string {
	var e struct{ Code string }
	json.Unmarshal(m.Data, &e)
	return e.Code
}

// UserOf returns data.user_id (of connection_established).
func UserOf(m Msg) string {
	var d struct {
		UserID string `json:"user_id"`
	}
	json.Unmarshal(m.Data, &d)
	return d.UserID
}
