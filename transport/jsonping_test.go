package transport_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// seedClient behaves like the seeds' browser client (ReconnectingWebSocket
// in the FastAPI guide): it answers every {"type":"ping"} text frame with
// {"type":"pong"}. Page code cannot see WebSocket pings; with wsPongs false
// nothing answers them either, so only the JSON pong shows the server the
// connection lives (with true, the browser's automatic pong does). With
// answer false it ignores JSON pings too: a dead page.
type seedClient struct {
	conn      *websocket.Conn
	answer    bool
	jsonPings atomic.Int32
	pongs     atomic.Int32
	errors    atomic.Int32
	hello     chan protocol.ConnectionEstablished
	closed    chan int // the close code
}

func dialSeed(t *testing.T, url string, answer, wsPongs bool) *seedClient {
	t.Helper()
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: waitLimit}).Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	sc := &seedClient{conn: conn, answer: answer, hello: make(chan protocol.ConnectionEstablished, 1), closed: make(chan int, 1)}
	if !wsPongs {
		conn.SetPingHandler(func(string) error { return nil })
	}
	go func() {
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				code := 0
				if ce, ok := err.(*websocket.CloseError); ok {
					code = ce.Code
				}
				sc.closed <- code
				return
			}
			var m struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch m.Type {
			case "ping":
				sc.jsonPings.Add(1)
				if sc.answer {
					_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
				}
			case "pong":
				sc.pongs.Add(1)
			case "error":
				sc.errors.Add(1)
			case "connection_established":
				var d protocol.ConnectionEstablished
				_ = json.Unmarshal(m.Data, &d)
				sc.hello <- d
			}
		}
	}()
	select {
	case <-sc.hello:
	case <-time.After(waitLimit):
		t.Fatal("no connection_established")
	}
	return sc
}

// heartbeat sends {"type":"ping"} every d until the test ends, as the
// seeds' client does every 30 s (startHeartbeat).
func (sc *seedClient) heartbeat(t *testing.T, d time.Duration) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tk := time.NewTicker(d)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if sc.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)) != nil {
					return
				}
			}
		}
	}()
}

// TestJSONHeartbeat runs the seeds' kind of client against JSON heartbeats:
// one that answers JSON pings stays connected through several heartbeats
// without answering a single WebSocket ping, and earns no error; one that
// answers nothing is closed with 4008 as any silent connection is; without
// the option no JSON ping is sent.
func TestJSONHeartbeat(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for three heartbeats (~16 s)")
	}
	ts := startServer(t, server.Config{Transport: transport.Options{HeartbeatInterval: 5 * time.Second, PongTimeout: time.Second}})

	live := dialSeed(t, ts.url("/ws?json_ping=1"), true, false)
	dead := dialSeed(t, ts.url("/ws?json_ping=true"), false, false)
	plain := dialSeed(t, ts.url("/ws"), true, true)
	plain.heartbeat(t, 2*time.Second)

	select {
	case code := <-dead.closed:
		if code != int(protocol.CloseHeartbeatTimeout) {
			t.Fatalf("the silent client was closed with %d, want 4008", code)
		}
	case <-time.After(5*time.Second + time.Second + 2*time.Second + waitLimit):
		t.Fatal("the client that answers nothing was not closed")
	}
	if dead.jsonPings.Load() == 0 {
		t.Error("the silent client was closed without having been sent a JSON ping")
	}
	// Three heartbeats: each was checked one pong timeout after it.
	time.Sleep(11 * time.Second)
	select {
	case code := <-live.closed:
		t.Fatalf("the client answering JSON pings was closed with %d", code)
	case code := <-plain.closed:
		t.Fatalf("the plain client was closed with %d", code)
	default:
	}
	if n := live.jsonPings.Load(); n < 2 {
		t.Errorf("the opted-in client got %d JSON pings in 3 heartbeats, want 2 or more", n)
	}
	if n := live.errors.Load(); n != 0 {
		t.Errorf("the client's JSON pongs earned %d error events, want none", n)
	}
	if n := plain.jsonPings.Load(); n != 0 {
		t.Errorf("a client that did not ask for JSON pings got %d", n)
	}
	// The plain client's own JSON pings (the seeds' client-side
	// heartbeat) each get a pong.
	if n := plain.pongs.Load(); n < 4 {
		t.Errorf("the client's own JSON pings got %d pongs, want one each (4 or more)", n)
	}
	if n := ts.srv.Hub.Stats().Closes["4008"]; n != 1 {
		t.Errorf("Closes[4008] = %d, want 1 (the silent client)", n)
	}
}

// TestJSONHeartbeatAnnounced checks connection_established says whether
// JSON pings come, for the server-wide option and the per-connection
// query, and that the query can turn the server-wide option off.
func TestJSONHeartbeatAnnounced(t *testing.T) {
	t.Parallel()
	on := startServer(t, server.Config{Transport: transport.Options{JSONPing: true}})
	off := startServer(t, server.Config{})
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{on.url("/ws"), true},
		{on.url("/ws?json_ping=0"), false},
		{off.url("/ws"), false},
		{off.url("/ws?json_ping=1"), true},
	} {
		c := dial(t, tt.url, nil, nil)
		var d protocol.ConnectionEstablished
		if err := json.Unmarshal(c.expect(protocol.TypeConnectionEstablished).Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.JSONPing != tt.want {
			t.Errorf("%s: json_ping %v, want %v", tt.url, d.JSONPing, tt.want)
		}
	}
}

// TestJSONHeartbeatBadQuery: a json_ping value that is not a boolean is
// refused before the upgrade with a JSON body naming the parameter.
func TestJSONHeartbeatBadQuery(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	for _, q := range []string{"json_ping=yes", "json_ping=1&json_ping=0", "json_ping="} {
		_, resp, err := (&websocket.Dialer{HandshakeTimeout: waitLimit}).Dial(ts.url("/ws?"+q), nil)
		if err == nil {
			t.Fatalf("%s: handshake succeeded", q)
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: response %v, want 400", q, resp)
		}
		code, msg := jsonBody(t, resp)
		if code != "bad_request" || !strings.Contains(msg, "json_ping") {
			t.Errorf("%s: body %s %q", q, code, msg)
		}
	}
}

// TestClientPongAccepted: a client's {"type":"pong"} (with or without an
// id, before or after authentication is irrelevant here) gets no answer
// and no error, however many are sent, so the 1008 error budget is never
// touched; a client ping still gets its pong.
func TestClientPongAccepted(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Hub: hub.Options{MaxMessagesPerSecond: 0}})
	c := ts.dialWS(t)
	for range 120 { // more than the 50-error budget
		c.send(`{"type":"pong"}`)
		c.send(`{"type":"pong","id":"x"}`)
	}
	c.roundTrip("after-pongs") // the next message is the pong: nothing came before it
}
