package transport_test

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// deflate compresses one message as permessage-deflate does without
// context takeover (RFC 7692 7.2.1: the sync flush tail is removed).
func deflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(p)
	w.Flush()
	b := buf.Bytes()
	if !bytes.HasSuffix(b, []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("no sync flush tail")
	}
	return b[:len(b)-4]
}

// inflate reverses deflate.
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return b
}

func TestCompressionNegotiation(t *testing.T) {
	t.Parallel()
	on := startServer(t, server.Config{Transport: transport.Options{Compression: true}})
	off := startServer(t, server.Config{})
	tests := []struct {
		name  string
		ts    *testServer
		offer string
		want  bool
	}{
		{"on, offered", on, "permessage-deflate", true},
		{"on, offered with params", on, "permessage-deflate; client_max_window_bits", true},
		{"on, full server window", on, "permessage-deflate; server_max_window_bits=15", true},
		// Our deflater always uses a 32 KiB window: a smaller one is declined.
		{"on, small server window", on, "permessage-deflate; server_max_window_bits=10", false},
		{"on, not offered", on, "", false},
		{"on, other extension", on, "x-webkit-deflate-frame", false},
		{"off, offered", off, "permessage-deflate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra http.Header
			if tt.offer != "" {
				extra = http.Header{"Sec-Websocket-Extensions": {tt.offer}}
			}
			rc, resp := rawDial(t, tt.ts.addr, "/ws", extra, 0)
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			if !tt.want {
				if ext != "" {
					t.Fatalf("extension %q negotiated, want none", ext)
				}
			} else if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions %q, want permessage-deflate with server_no_context_takeover", ext)
			}
			if f, e := rc.nextText(); f.rsv != 0 || e.Type != protocol.TypeConnectionEstablished {
				t.Fatalf("first frame rsv %#x %s", f.rsv, encode(e))
			}
			// Without the extension a compressed frame is a protocol error.
			if !tt.want {
				rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: deflate(t, []byte(`{"type":"ping"}`))})
				rc.expectClose(1002)
			}
		})
	}
}

// TestCompressedEvents: large events are sent compressed (once for all
// recipients), small ones plain, and both a raw inflater and gorilla read
// them back unchanged.
func TestCompressedEvents(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{Compression: true}})
	rc, _ := rawDial(t, ts.addr, "/ws", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}, 0)
	rc.nextText()
	g := dial(t, ts.url("/ws"), &websocket.Dialer{EnableCompression: true}, nil)
	if ext := g.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("gorilla did not negotiate compression: %q", ext)
	}
	g.c.EnableWriteCompression(true) // our messages to the server are compressed too
	g.expect(protocol.TypeConnectionEstablished)
	g.subscribe("z")
	rc.sendText(`{"type":"subscribe","id":"s","room":"z"}`)
	if f, e := rc.nextText(); e.Type != protocol.TypeSubscribed || f.rsv != 0 {
		t.Fatalf("subscribed frame rsv %#x %s", f.rsv, encode(e))
	}
	for _, size := range []int{10, 255, 300, 4 << 10, 60 << 10} {
		data := `"` + bytesRepeat(size) + `"`
		g.send(`{"type":"message","room":"z","data":` + data + `}`)
		if e := g.expect("message"); string(e.Data) != data {
			t.Fatalf("gorilla: size %d: data differs (%d bytes)", size, len(e.Data))
		}
		f, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		payload := f.payload
		compressed := f.rsv == 0x40
		if compressed {
			payload = inflate(t, payload)
		}
		var e protocol.Envelope
		if f.op != 0x1 || json.Unmarshal(payload, &e) != nil || string(e.Data) != data {
			t.Fatalf("raw: size %d: op %#x rsv %#x, payload %.80q", size, f.op, f.rsv, payload)
		}
		if wantCompressed := len(payload) >= 256; compressed != wantCompressed {
			t.Errorf("event of %d bytes: compressed %v, want %v", len(payload), compressed, wantCompressed)
		}
		if compressed && len(f.payload) >= len(payload) {
			t.Errorf("compressed frame of %d bytes for %d", len(f.payload), len(payload))
		}
	}
	// A compressed request from the raw client works as well.
	rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: deflate(t, []byte(`{"type":"ping","id":"zp"}`))})
	if _, e := rc.nextText(); e.Type != protocol.TypePong || e.ID != "zp" {
		t.Fatalf("reply to a compressed ping: %s", encode(e))
	}
}

// TestCompressionBomb: a small compressed message that inflates past
// MaxMessageSize closes with 1009, like any oversize message (gws says
// 1011; the transport corrects it).
func TestCompressionBomb(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{Compression: true}})
	by := ts.dialWS(t)
	by.subscribe("by:1")
	for i, size := range []int{65 << 10, 4 << 20} {
		rc, _ := rawDial(t, ts.addr, "/ws", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}, 0)
		rc.nextText()
		msg := `{"type":"message","room":"r","data":"` + strings.Repeat("a", size) + `"}`
		c := deflate(t, []byte(msg))
		if len(c) > 8<<10 {
			t.Fatalf("bomb of %d bytes is not small", len(c))
		}
		rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: c})
		rc.expectClose(1009)
		checkBystander(t, ts.srv.Hub, by, i)
	}
	waitFor(t, "the bombs' connections to be gone", func() bool { return ts.srv.Hub.Stats().Connections == 1 })
	if n := ts.srv.Hub.Stats().Closes["1009"]; n != 2 {
		t.Errorf("Closes = %v, want two 1009", ts.srv.Hub.Stats().Closes)
	}
}

// TestCorruptCompressedFrame: a compressed frame that does not inflate is
// the client's invalid payload (1007), not a server error (1011, which
// advises reconnecting to send the same thing again).
func TestCorruptCompressedFrame(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Transport: transport.Options{Compression: true}})
	rc, _ := rawDial(t, ts.addr, "/ws", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}, 0)
	rc.nextText()
	// BTYPE 11 is reserved in DEFLATE (RFC 1951 3.2.3).
	rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: []byte{0xff, 0xff, 0xff, 0xff}})
	rc.expectClose(1007)
	waitFor(t, "the connection to be gone", func() bool { return ts.srv.Hub.Stats().Connections == 0 })
	if closes := ts.srv.Hub.Stats().Closes; closes["1007"] != 1 {
		t.Errorf("Closes %v, want one 1007", closes)
	}
}
