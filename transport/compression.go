package transport

import (
	"net/http"
	"strconv"
	"strings"
)

// negotiateDeflate reduces the Sec-WebSocket-Extensions offers in h to the
// first permessage-deflate offer the server can accept, or removes the
// header when there is none, and reports whether one is left. gws takes
// any header that contains "permessage-deflate" and ignores what it does
// not know; RFC 7692 7.1 says a server must decline an offer with an
// unknown parameter, a duplicate one, or an invalid value. The server
// also declines server_max_window_bits below 15: neither gws nor our
// deflater compresses with a smaller window, and answering without the
// parameter would send frames the client cannot inflate. A declined
// connection is simply uncompressed.
func negotiateDeflate(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for _, offer := range strings.Split(v, ",") {
			if ok, norm := deflateOffer(offer); ok {
				h.Set("Sec-WebSocket-Extensions", norm)
				return true
			}
		}
	}
	h.Del("Sec-WebSocket-Extensions")
	return false
}

// deflateOffer checks one offer and returns it in the form gws parses
// (lower case, no spaces or quotes).
func deflateOffer(offer string) (bool, string) {
	params := strings.Split(offer, ";")
	if !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
		return false, ""
	}
	out := []string{"permessage-deflate"}
	seen := map[string]bool{}
	for _, p := range params[1:] {
		k, val, hasVal := strings.Cut(p, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1] // a quoted-string value (RFC 7692 7.1)
		}
		if seen[k] {
			return false, ""
		}
		seen[k] = true
		switch k {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasVal {
				return false, ""
			}
			out = append(out, k)
		case "server_max_window_bits":
			if !hasVal || val != "15" {
				return false, ""
			}
			out = append(out, k+"=15")
		case "client_max_window_bits":
			if !hasVal {
				out = append(out, k)
				continue
			}
			if n, err := strconv.Atoi(val); err != nil || n < 8 || n > 15 || val != strconv.Itoa(n) {
				return false, ""
			}
			out = append(out, k+"="+val)
		default:
			return false, "" // unknown parameter, or an empty one
		}
	}
	return true, strings.Join(out, "; ")
}
