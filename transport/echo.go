package transport

import (
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
		},
	})
	check := &Handler{opts: Options{}} // handshake checks only; no origin policy
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, code, msg := check.check(w, r); status != 0 && status != http.StatusForbidden {
			httpError(w, status, code, msg)
			return
		}
		ws, err := up.Upgrade(w, r)
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
