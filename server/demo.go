package server

import (
	_ "embed"
	"net/http"
)

//go:embed web/index.html
var demoHTML []byte

// demoPage serves the small chat page that shows a newcomer the server
// works: it speaks docs/protocol.md with the browser's own WebSocket.
func demoPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:")
	_, _ = w.Write(demoHTML)
}
