package transport_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// The RFC 6455 / 7692 cases a conformance probe found gws v1.8.9 to let
// through, over raw sockets, on /ws and on the echo endpoint, with
// permessage-deflate negotiated and not (see frameGuard and
// negotiateDeflate).

// conformanceTargets are the endpoints and extension offers each case runs
// against.
func conformanceTargets(t *testing.T) []struct {
	name    string
	ts      *testServer
	path    string
	deflate bool
} {
	t.Helper()
	on := startServer(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, Transport: transport.Options{Compression: true}, EchoPath: "/echo"})
	off := startServer(t, server.Config{EchoPath: "/echo", Hub: hub.Options{NoJoinLeave: true}})
	return []struct {
		name    string
		ts      *testServer
		path    string
		deflate bool
	}{
		{"ws deflate", on, "/ws", true},
		{"ws plain", off, "/ws", false},
		{"echo deflate", on, "/echo", true},
		{"echo plain", on, "/echo", false},
	}
}

// openConformance dials path, offering permessage-deflate when deflate is
// set and checking it was agreed, and reads /ws's connection_established.
func openConformance(t *testing.T, ts *testServer, path string, deflate bool) *rawConn {
	t.Helper()
	var extra http.Header
	if deflate {
		extra = http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; server_no_context_takeover; client_max_window_bits"}}
	}
	rc, resp := rawDial(t, ts.addr, path, extra, 0)
	if got := strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"); got != deflate {
		t.Fatalf("deflate negotiated %v, want %v", got, deflate)
	}
	if path == "/ws" {
		if _, e := rc.nextText(); e.Type != protocol.TypeConnectionEstablished {
			t.Fatalf("first frame %s", encode(e))
		}
	}
	return rc
}

func TestConformanceRSV1(t *testing.T) {
	t.Parallel()
	for _, tg := range conformanceTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Run("continuation", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				rc.writeFrame(frame{op: 0x1, masked: true, payload: []byte(`{"type":`)})
				rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x0, masked: true, payload: []byte(`"ping"}`)})
				rc.expectClose(1002)
			})
			t.Run("ping", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x9, masked: true, payload: []byte("hi")})
				rc.expectClose(1002)
			})
			t.Run("close", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				rc.writeFrame(frame{fin: true, rsv: 0x40, op: 0x8, masked: true, payload: []byte{0x03, 0xe8}})
				rc.expectClose(1002)
			})
		})
	}
}

// TestConformanceUTF8FailFast: invalid UTF-8 in the first fragment of a
// text message, or in the first part of a frame that is still arriving,
// closes 1007 without waiting for the rest, which never comes.
func TestConformanceUTF8FailFast(t *testing.T) {
	t.Parallel()
	bad := []byte("{\"type\":\"ping\",\"id\":\"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80") // U+D800, a surrogate
	for _, tg := range conformanceTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Run("first fragment", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				rc.writeFrame(frame{op: 0x1, masked: true, payload: bad})
				rc.expectClose(1007)
			})
			t.Run("later fragment", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				rc.writeFrame(frame{op: 0x1, masked: true, payload: []byte(`{"type":"ping","id":"`)})
				rc.writeFrame(frame{op: 0x0, masked: true, payload: []byte("\xf4\x90")}) // above U+10FFFF
				rc.expectClose(1007)
			})
			t.Run("part of a frame", func(t *testing.T) {
				rc := openConformance(t, tg.ts, tg.path, tg.deflate)
				whole := encodeFrame(frame{fin: true, op: 0x1, masked: true, payload: append(append([]byte(nil), bad...), []byte(`"}`)...)})
				if err := rc.write(whole[:len(whole)-2]); err != nil {
					t.Fatal(err)
				}
				rc.expectClose(1007)
			})
		})
	}
}

// TestConformanceUTF8Split: valid UTF-8 cut inside a character, across
// fragments and across TCP writes, is accepted.
func TestConformanceUTF8Split(t *testing.T) {
	t.Parallel()
	msg := []byte(`{"type":"ping","id":"κόσμε 𝄞 é"}`)
	for _, tg := range conformanceTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			rc := openConformance(t, tg.ts, tg.path, tg.deflate)
			for cut := 21; cut < len(msg)-2; cut += 3 {
				rc.writeFrame(frame{op: 0x1, masked: true, payload: msg[:cut]})
				b := encodeFrame(frame{fin: true, op: 0x0, masked: true, payload: msg[cut:]})
				for i := range b { // one byte per write: the guard sees every split
					if err := rc.write(b[i : i+1]); err != nil {
						t.Fatal(err)
					}
				}
				f, err := rc.readFrame()
				for err == nil && f.op != 0x1 {
					f, err = rc.readFrame()
				}
				if err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				if f.rsv == 0x40 {
					f.payload = inflate(t, f.payload)
				}
				if tg.path == "/echo" && string(f.payload) != string(msg) {
					t.Fatalf("cut at %d: echo %q", cut, f.payload)
				}
				if tg.path == "/ws" && !strings.Contains(string(f.payload), `"id":"κόσμε 𝄞 é"`) {
					t.Fatalf("cut at %d: reply %q", cut, f.payload)
				}
			}
		})
	}
}

// TestConformanceDeflateOffers: RFC 7692 7.1: an offer with an unknown or
// duplicate parameter or an invalid value is declined; the next offer in
// the header may still be taken.
func TestConformanceDeflateOffers(t *testing.T) {
	t.Parallel()
	on := startServer(t, server.Config{Transport: transport.Options{Compression: true}, EchoPath: "/echo"})
	tests := []struct {
		offer string
		want  string // the agreed extension's parameters, "" for declined
	}{
		{"permessage-deflate; foo", ""},
		{"permessage-deflate; foo=1", ""},
		{"permessage-deflate; x-webkit", ""},
		{"permessage-deflate; client_max_window_bits; client_max_window_bits", ""},
		{"permessage-deflate; client_max_window_bits=7", ""},
		{"permessage-deflate; client_max_window_bits=16", ""},
		{"permessage-deflate; client_max_window_bits=abc", ""},
		{"permessage-deflate; server_no_context_takeover=1", ""},
		{"permessage-deflate; server_max_window_bits", ""},
		{"permessage-deflate; foo, permessage-deflate", "permessage-deflate"},
		{"permessage-deflate; server_max_window_bits=\"15\"", "permessage-deflate"},
		{"permessage-deflate; client_max_window_bits=\"10\"", "permessage-deflate"},
		{"PerMessage-Deflate; Client_No_Context_Takeover", "permessage-deflate"},
	}
	for _, path := range []string{"/ws", "/echo"} {
		for _, tt := range tests {
			t.Run(path+" "+tt.offer, func(t *testing.T) {
				rc, resp := rawDial(t, on.addr, path, http.Header{"Sec-Websocket-Extensions": {tt.offer}}, 0)
				ext := resp.Header.Get("Sec-WebSocket-Extensions")
				if tt.want == "" && ext != "" || tt.want != "" && !strings.HasPrefix(ext, tt.want) {
					t.Fatalf("answer %q, want %q", ext, tt.want)
				}
				// The connection works, compressed or not.
				rc.writeFrame(frame{fin: true, op: 0x1, masked: true, payload: []byte(`{"type":"ping","id":"p"}`)})
				for {
					f, err := rc.readFrame()
					if err != nil {
						t.Fatal(err)
					}
					if f.op == 0x1 && strings.Contains(string(f.payload), `"p"`) {
						break
					}
				}
			})
		}
	}
}

// TestConformanceHTTP10: an HTTP/1.0 upgrade gets 400 with the JSON error
// body (RFC 6455 4.1 asks for HTTP/1.1 or later), on /ws and /echo.
func TestConformanceHTTP10(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{EchoPath: "/echo"})
	for _, path := range []string{"/ws", "/echo"} {
		t.Run(path, func(t *testing.T) {
			_, resp := rawRequestProto(t, ts.addr, http.MethodGet, path, "HTTP/1.0", handshakeHeaders(), 0)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if code, msg := jsonBody(t, resp); code != "bad_handshake" || !strings.Contains(msg, "HTTP/1.1") {
				t.Errorf("body %s: %s", code, msg)
			}
		})
	}
}
