package transport

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// The parsers of ours on the handshake path: comma-separated header
// tokens, subprotocol offers, Origin patterns, the handshake token and the
// client address behind proxies. None may panic, and each keeps its
// invariant on any input.

func FuzzHeaderTokens(f *testing.F) {
	f.Add("keep-alive, Upgrade", "upgrade")
	f.Add("Upgrade", "websocket")
	f.Add(",,, ,", "")
	f.Add("switchboard.v1, chat", "switchboard.v1")
	f.Fuzz(func(t *testing.T, value, token string) {
		h := http.Header{}
		h.Add("Connection", value)
		got := headerHasToken(h, "Connection", token)
		// A token containing a comma can never match one comma-separated
		// item: if it did, the split was wrong.
		if got && strings.Contains(token, ",") {
			t.Fatalf("token %q with a comma matched %q", token, value)
		}
		if got && !strings.Contains(strings.ToLower(value), strings.ToLower(strings.TrimSpace(token))) {
			t.Fatalf("token %q matched %q, which does not contain it", token, value)
		}
		sub := offersSubprotocol([]string{value}, token)
		if sub && !strings.Contains(value, strings.TrimSpace(token)) {
			t.Fatalf("subprotocol %q found in %q", token, value)
		}
	})
}

func FuzzMatchOrigin(f *testing.F) {
	f.Add("https://app.example.com", "*.example.com")
	f.Add("http://localhost:3000", "localhost:3000")
	f.Add("null", "*")
	f.Add("https://evil.com/.example.com", "*.example.com")
	f.Fuzz(func(t *testing.T, origin, pattern string) {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			return
		}
		ok := matchOrigin([]string{pattern}, u)
		if ok && pattern != "*" && !strings.Contains(pattern, "*") && !strings.Contains(pattern, "?") && !strings.ContainsAny(pattern, "[\\") {
			// Without wildcards, a match is equality with the host or the
			// full origin.
			p := strings.ToLower(pattern)
			if p != strings.ToLower(u.Host) && p != strings.ToLower(u.Scheme+"://"+u.Host) {
				t.Fatalf("pattern %q matched origin %q", pattern, origin)
			}
		}
	})
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:4000", "203.0.113.9, 10.0.0.2")
	f.Add("[::1]:80", "::ffff:198.51.100.1")
	f.Add("garbage", "")
	f.Add("10.0.0.1:1", "not-an-ip, 203.0.113.9")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		ip := clientIP(r, trusted)
		if !ip.IsValid() {
			return
		}
		host, _, err := splitHostPortLoose(remote)
		peer, perr := netip.ParseAddr(host)
		if err != nil || perr != nil {
			t.Fatalf("valid client %s from an unparseable peer %q", ip, remote)
		}
		// An untrusted peer is the client, whatever the header says.
		if !isTrusted(peer.Unmap(), trusted) && ip != peer.Unmap() {
			t.Fatalf("untrusted peer %s, client %s from X-Forwarded-For %q", peer, ip, xff)
		}
	})
}

func FuzzHandshakeToken(f *testing.F) {
	f.Add("Bearer abc", "c=1", "token=x")
	f.Add("bearer ", "", "token=")
	f.Add("Basic abc", "switchboard_token=t", "")
	f.Fuzz(func(t *testing.T, authz, cookie, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: query}}
		r.Header.Set("Authorization", authz)
		r.Header.Set("Cookie", cookie)
		tok := handshakeToken(r, "switchboard_token")
		if strings.ContainsAny(tok, "\r\n") && !strings.ContainsAny(authz+cookie, "\r\n") && !strings.Contains(query, "%0") {
			t.Fatalf("token %q has a line break its sources did not", tok)
		}
	})
}

// splitHostPortLoose mirrors clientIP's reading of RemoteAddr.
func splitHostPortLoose(addr string) (string, string, error) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h, p, nil
	}
	return addr, "", nil
}

// The POST /emulation/send body: any bytes give either an error with a
// 4xx status and a code, or a session and 1 to 64 JSON objects, none
// over the frame limit.
func FuzzSendBody(f *testing.F) {
	f.Add([]byte(`{"session":"0123456789abcdef.x","frames":[{"type":"ping"}]}`))
	f.Add([]byte(`{"session":"s","frames":[1,"a",null]}`))
	f.Add([]byte(`{"session":"s","frames":[ {"type":"ping"} , {}]}`))
	f.Add([]byte(`{"session":"s","frames":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		const maxFrame = 64
		session, frames, status, code, _ := parseSendBody(body, maxFrame)
		if status != 0 {
			if status < 400 || status > 499 || code == "" || frames != nil {
				t.Fatalf("refusal %d %q with %d frames", status, code, len(frames))
			}
			return
		}
		if session == "" || len(frames) == 0 || len(frames) > 64 {
			t.Fatalf("accepted session %q with %d frames", session, len(frames))
		}
		for _, fr := range frames {
			if len(fr) > maxFrame || fr[0] != '{' || !json.Valid(fr) {
				t.Fatalf("accepted frame %q", fr)
			}
		}
	})
}
