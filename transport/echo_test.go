package transport_test

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/server"
)

// randomText returns n printable bytes that do not compress within a few
// KiB, from a fixed seed.
func randomText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

func TestEcho(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	big := randomText(1<<20, 1)
	tests := []struct {
		name     string
		compress bool
		kind     int
		data     []byte
	}{
		{"text", false, websocket.TextMessage, []byte("hello, \u00e9cho")},
		{"empty text", false, websocket.TextMessage, nil},
		{"binary", false, websocket.BinaryMessage, []byte{0, 1, 2, 0xff, 0xfe}},
		{"1 MiB text", false, websocket.TextMessage, big},
		{"1 MiB binary", false, websocket.BinaryMessage, append(big[:len(big):len(big)], 0xff)},
		{"compressed text", true, websocket.TextMessage, bytes.Repeat([]byte("compress me "), 1000)},
		{"compressed 1 MiB binary", true, websocket.BinaryMessage, big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.url("/echo"), &websocket.Dialer{EnableCompression: tt.compress}, nil)
			ext := c.resp.Header.Get("Sec-WebSocket-Extensions")
			if tt.compress != strings.Contains(ext, "permessage-deflate") {
				t.Fatalf("Sec-WebSocket-Extensions %q with compression offered: %v", ext, tt.compress)
			}
			c.c.EnableWriteCompression(tt.compress)
			for range 2 { // twice: the second reuses the connection's state
				if err := c.c.WriteMessage(tt.kind, tt.data); err != nil {
					t.Fatal(err)
				}
				m := c.raw()
				if m.kind != tt.kind || !bytes.Equal(m.data, tt.data) {
					t.Fatalf("echo: kind %d, %d bytes; want kind %d, %d bytes", m.kind, len(m.data), tt.kind, len(tt.data))
				}
			}
			if err := c.c.WriteControl(websocket.PingMessage, []byte("hi"), deadline()); err != nil {
				t.Fatal(err)
			}
			if err := c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), deadline()); err != nil {
				t.Fatal(err)
			}
			if code, _ := c.expectClose(); code != 1000 {
				t.Fatalf("close answered with %d", code)
			}
		})
	}
}

func TestEchoInvalidUTF8(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	rc, _ := rawDial(t, ts.addr, "/echo", nil, 0)
	rc.sendText("ok")
	if f, err := rc.readFrame(); err != nil || f.op != 0x1 || string(f.payload) != "ok" {
		t.Fatalf("echo %+v %v", f, err)
	}
	rc.sendText("bad \xc3\x28")
	rc.expectClose(1007)
}

// TestEchoContextTakeover: a client that keeps its compression context
// (it did not offer client_no_context_takeover) may refer back up to 32 KiB
// into earlier messages; the echo endpoint must inflate with that window
// and must not answer with a client_max_window_bits the client did not
// offer (RFC 7692 7.1.2.2).
func TestEchoContextTakeover(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	rc, resp := rawDial(t, ts.addr, "/echo", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; server_no_context_takeover"}}, 0)
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Fatalf("Sec-WebSocket-Extensions %q", ext)
	}
	if strings.Contains(ext, "client_max_window_bits") {
		t.Errorf("response %q has client_max_window_bits, which the client did not offer", ext)
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression) // one context for the whole connection
	msg := randomText(10<<10, 2)
	for i := range 3 { // messages 2 and 3 are back-references ~10 KiB away
		buf.Reset()
		w.Write(msg)
		w.Flush()
		p := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
		if i > 0 && len(p) > len(msg)/4 {
			t.Fatalf("message %d compressed to %d bytes: not using the context", i, len(p))
		}
		rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x1, masked: true, payload: bytes.Clone(p)})
		f, err := rc.readFrame()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got := f.payload
		if f.rsv == 0x40 {
			got = inflate(t, got)
		}
		if f.op != 0x1 || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: echo op %#x, %d bytes (%.60q)", i, f.op, len(got), got)
		}
	}
}

func TestEchoDeclinesSmallServerWindow(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	rc, resp := rawDial(t, ts.addr, "/echo", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; server_max_window_bits=10"}}, 0)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("accepted as %q; the server cannot compress with a 1 KiB window", ext)
	}
	rc.sendText("plain")
	if f, err := rc.readFrame(); err != nil || f.rsv != 0 || string(f.payload) != "plain" {
		t.Fatalf("echo %+v %v", f, err)
	}
	// With a second offer without the limit, that one is taken (RFC 7692
	// 5: the server picks the first offer it accepts).
	_, resp = rawDial(t, ts.addr, "/echo", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; server_max_window_bits=10, permessage-deflate"}}, 0)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") || strings.Contains(ext, "=10") {
		t.Errorf("two offers: answer %q, want the second (full window)", ext)
	}
}
