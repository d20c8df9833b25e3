package transport

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/hub"
)

// authenticate applies the handshake authentication of Options. A nil
// result with status 0 means "no credentials yet".
func (h *WSHandler) authenticate(r *http.Request) (*hub.Credentials, int, string, string) {
	var creds *hub.Credentials
	var err error
	switch {
	case h.opts.RequestAuthenticator != nil:
		creds, err = h.opts.RequestAuthenticator.AuthenticateRequest(r.Context(), r)
		if err == nil && (creds == nil || creds.UserID == "") {
			err = errors.New("no user")
		}
	case h.opts.Authenticator != nil:
		token := handshakeToken(r, h.opts.TokenCookie)
		if token == "" {
			return nil, 0, "", ""
		}
		creds, err = h.opts.Authenticator.Authenticate(r.Context(), token)
		if err == nil && (creds == nil || creds.UserID == "") {
			err = errors.New("token has no user")
		}
	default:
		return nil, 0, "", ""
	}
	if err != nil {
		return nil, http.StatusUnauthorized, "unauthorized", "authentication failed: " + err.Error()
	}
	if h.hub.Banned(creds.UserID) {
		return nil, http.StatusForbidden, "banned", "this user is banned"
	}
	return creds, 0, "", ""
}

// handshakeToken finds a token in r: the Authorization: Bearer header, then
// the cookie, then the token query parameter.
func handshakeToken(r *http.Request, cookie string) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return r.URL.Query().Get("token")
}

// check validates the handshake before anything is hijacked.
func (h *WSHandler) check(w http.ResponseWriter, r *http.Request) (int, string, string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, "method_not_allowed", "a WebSocket handshake is a GET request"
	}
	if !r.ProtoAtLeast(1, 1) { // RFC 6455 4.1: HTTP/1.1 or higher
		return http.StatusBadRequest, "bad_handshake", "a WebSocket handshake needs HTTP/1.1, not " + r.Proto
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return http.StatusBadRequest, "bad_handshake", "missing \"Connection: Upgrade\" header"
	}
	// Exactly "websocket", as the upgrader requires: a token list would pass
	// here and then be refused by gws in plain text after the hijack.
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket") {
		return http.StatusBadRequest, "bad_handshake", "missing \"Upgrade: websocket\" header"
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, "unsupported_version", "Sec-WebSocket-Version must be 13"
	}
	if !validKey(r.Header.Get("Sec-WebSocket-Key")) {
		return http.StatusBadRequest, "bad_handshake", "Sec-WebSocket-Key must be 16 random bytes in base64"
	}
	if !h.originAllowed(r) {
		return http.StatusForbidden, "origin_not_allowed", "origin " + strconv.Quote(r.Header.Get("Origin")) + " is not allowed to connect"
	}
	return 0, "", ""
}

// validKey reports whether k is base64 of 16 bytes (RFC 6455 4.1).
func validKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// headerHasToken reports whether a comma-separated header has token
// (case-insensitive), as in "Connection: keep-alive, Upgrade".
func headerHasToken(hd http.Header, name, token string) bool {
	for _, v := range hd.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func offersSubprotocol(values []string, want string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == want {
				return true
			}
		}
	}
	return false
}

// originAllowed applies AllowedOrigins; see Options.
func (h *WSHandler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: Origin protects browsers' users only
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.opts.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	return matchOrigin(h.opts.AllowedOrigins, u)
}

// matchOrigin reports whether origin u matches one of patterns (see
// Options.AllowedOrigins).
func matchOrigin(patterns []string, u *url.URL) bool {
	full := strings.ToLower(u.Scheme + "://" + u.Host)
	host := strings.ToLower(u.Host)
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "*" {
			return true
		}
		target := host
		if strings.Contains(p, "://") {
			target = full
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}
