package transport

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/lxzan/gws"
)

// EchoMaxMessageSize is the echo endpoint's message limit: big enough for
// the conformance suites' large-message cases.
const EchoMaxMessageSize = 16 << 20

// EchoHandler returns a handler that echoes every text and binary message
// unchanged, for RFC 6455 conformance testing (Autobahn and the like). It
// always negotiates permessage-deflate when offered, honouring the client's
// context-takeover and window parameters as RFC 7692 says, and is as strict
// as /ws: invalid UTF-8 closes 1007, protocol violations 1002, oversize
// 1009. It shares nothing with the hub.
func EchoHandler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	up := gws.NewUpgrader(echoEvents{}, &gws.ServerOption{
		ReadMaxPayloadSize:  EchoMaxMessageSize,
		WriteMaxPayloadSize: EchoMaxMessageSize,
		CheckUtf8Enabled:    true,
		HandshakeTimeout:    5 * time.Second,
		Recovery:            recovery(log),
		Logger:              gwsLogger{log},
		PermessageDeflate: gws.PermessageDeflate{
			Enabled:               true,
			ServerContextTakeover: true,
			ClientContextTakeover: true,
			// Full 32 KiB windows: with gws's default of 12 bits it answers
			// client_max_window_bits=12 to offers without that parameter
			// (RFC 7692 7.1.2.2 forbids it) and inflates with a 4 KiB
			// dictionary, so a client keeping its context fails.
			ServerMaxWindowBits: 15,
			ClientMaxWindowBits: 15,
		},
	})
	check := &Handler{opts: Options{}} // handshake checks only; no origin policy
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, code, msg := check.check(w, r); status != 0 && status != http.StatusForbidden {
			httpError(w, status, code, msg)
			return
		}
		deflate := negotiateDeflate(r.Header)
		hj, ok := w.(http.Hijacker)
		if !ok {
			httpError(w, http.StatusInternalServerError, "internal", "connection cannot be upgraded (no hijacker)")
			return
		}
		raw, brw, err := hj.Hijack()
		if err != nil {
			log.Debug("echo: hijack failed", "err", err)
			return
		}
		// Not up.Upgrade: it drops what net/http buffered behind the request
		// (frames a client sent before the 101 arrived).
		var rd io.Reader = raw
		if n := brw.Reader.Buffered(); n > 0 {
			early, _ := brw.Reader.Peek(n)
			rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), raw)
		}
		ws, err := up.UpgradeFromConn(closeFixConn{raw}, bufio.NewReader(newFrameGuard(rd, deflate)), r)
		if err != nil {
			log.Debug("echo: upgrade failed", "err", err)
			return
		}
		go ws.ReadLoop()
	})
}

type echoEvents struct{ gws.BuiltinEventHandler }

func (echoEvents) OnPing(ws *gws.Conn, payload []byte) { _ = ws.WritePong(payload) }

func (echoEvents) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	_ = ws.WriteMessage(msg.Opcode, msg.Bytes())
}
