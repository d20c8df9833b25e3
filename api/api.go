package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// Limits. Each can be changed in Options; these are the defaults.
const (
	// DefaultMaxBodyBytes bounds a request body. A full batch of typical
	// events fits many times over; a runaway client cannot make the node
	// buffer more than this per request.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxBatch bounds the events of one POST /api/publish, so one
	// request cannot hold the engine for long.
	DefaultMaxBatch = 100
	// DefaultMaxDataBytes bounds one event's data. It is a quarter of a
	// connection's default outbound queue (1 MiB), so one event alone can
	// never overflow a client's queue and get it closed as a slow consumer.
	DefaultMaxDataBytes = 256 << 10
	// DefaultTimeout bounds the engine work of one request.
	DefaultTimeout = 10 * time.Second
)

// Options configure the API. Hub is required; zero values of the rest take
// the documented defaults.
type Options struct {
	// Hub is the node's hub. Required.
	Hub *hub.Hub
	// Keys are the accepted API keys; a request must send one as
	// "Authorization: Bearer KEY". Several keys allow rotation. Keys are
	// printable ASCII without spaces.
	//
	// With no keys the API answers only requests whose TCP peer is a
	// loopback address, naming a loopback Host, without an Origin header
	// (browsers) and without proxy headers (Forwarded, X-Forwarded-For,
	// X-Real-IP), and refuses everything else with 403. This keeps a quick
	// start on one machine working; anything reachable from elsewhere, or
	// behind a reverse proxy on the same host, needs a key.
	Keys []string
	// MaxBodyBytes bounds a request body (413 beyond). Default 1 MiB.
	MaxBodyBytes int64
	// MaxBatch bounds the events of one batch publish (413 beyond).
	// Default 100.
	MaxBatch int
	// MaxDataBytes bounds the data of one event (413 beyond).
	// Default 256 KiB.
	MaxDataBytes int
	// Timeout bounds the engine work of one request (503 beyond).
	// Default 10 s.
	Timeout time.Duration
	// Logger receives server-side failures. Default: discard.
	Logger *slog.Logger
}

// Handler serves the API. It is safe for concurrent use.
type Handler struct {
	opts   Options
	hub    *hub.Hub
	log    *slog.Logger
	keys   [][sha256.Size]byte // digests: comparing them takes the same time whatever the key's length
	routes []route
}

// New returns the API handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Hub == nil {
		return nil, errors.New("api: Options.Hub is required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxDataBytes <= 0 {
		opts.MaxDataBytes = DefaultMaxDataBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, hub: opts.Hub, log: opts.Logger, routes: routeTable()}
	for i, k := range opts.Keys {
		if k == "" {
			return nil, fmt.Errorf("api: key %d is empty", i)
		}
		for j := 0; j < len(k); j++ {
			// A header value cannot carry controls, and the server strips
			// surrounding spaces: such a key could never match.
			if k[j] <= ' ' || k[j] > '~' {
				return nil, fmt.Errorf("api: key %d has a character outside printable ASCII (or a space) at byte %d", i, j)
			}
		}
		h.keys = append(h.keys, sha256.Sum256([]byte(k)))
	}
	return h, nil
}

// Error codes of the API besides the protocol's (bad_json, bad_request,
// invalid_room, room_not_found, not_implemented, internal).
const (
	codeUnauthorized     = "unauthorized"           // 401: no API key
	codeForbidden        = "forbidden"              // 403: wrong key, or no keys configured and not a local request
	codeNotFound         = "not_found"              // 404: no such endpoint
	codeConnNotFound     = "connection_not_found"   // 404: the connection is not on this node
	codeMethodNotAllowed = "method_not_allowed"     // 405
	codeBodyTooLarge     = "body_too_large"         // 413
	codeBatchTooLarge    = "batch_too_large"        // 413
	codeDataTooLarge     = "data_too_large"         // 413
	codeMediaType        = "unsupported_media_type" // 415: a body that is not application/json
	codeUnavailable      = "unavailable"            // 503: engine closed or too slow
)

// apiError is an error answer: an HTTP status and the body's code and
// message.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// route is one endpoint. The table (routeTable) is the single list of
// endpoints: the router, the tests and the OpenAPI check all read it.
type route struct {
	method  string
	pattern string // path with {name} wildcards, each one whole segment
	handle  func(h *Handler, w http.ResponseWriter, r *http.Request) *apiError
}

// ServeHTTP authenticates the request, routes it and writes a JSON answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if e := h.authorize(w, r); e != nil {
		writeError(w, e)
		return
	}
	rt, e := h.match(w, r)
	if e == nil {
		e = rt.handle(h, w, r)
	}
	if e != nil {
		if e.status >= 500 {
			h.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "status", e.status, "err", e.message)
		}
		writeError(w, e)
	}
}

// authorize checks the API key, or with no keys configured, that the
// request is local.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) *apiError {
	if len(h.keys) == 0 {
		return localOnly(r)
	}
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		return errorf(http.StatusUnauthorized, codeUnauthorized, `the API needs a key: send "Authorization: Bearer KEY"`)
	}
	sum := sha256.Sum256([]byte(token))
	match := 0
	for i := range h.keys {
		// Every key is compared, so the time taken does not say which one
		// (or whether any) matched.
		match |= subtle.ConstantTimeCompare(sum[:], h.keys[i][:])
	}
	if match != 1 {
		return errorf(http.StatusForbidden, codeForbidden, "the API key is not valid")
	}
	return nil
}

// localOnly admits a request when no key is configured. The peer address
// is the TCP connection's, never a header a client can write; headers can
// only refuse: a browser (Origin), a reverse proxy (forwarding headers) or
// a foreign Host (DNS rebinding) all mean the request did not come from a
// program on this machine.
func localOnly(r *http.Request) *apiError {
	if why := LocalRequest(r, false); why != "" {
		return errorf(http.StatusForbidden, codeForbidden, "no API key is configured and %s; set an API key (--api-key or SWITCHBOARD_API_KEY) to use the API from elsewhere", why)
	}
	return nil
}

// LocalRequest is the rule for a node without an API key: it returns why r
// did not come from a program on this machine, or "" if it did. The peer
// address is the TCP connection's, never a header a client can write;
// headers can only refuse: a reverse proxy (forwarding headers), a foreign
// Host (DNS rebinding) and, unless allowBrowser, a browser (Origin). The
// demo and the admin pages, whose own same-origin checks come first, allow
// the browser.
func LocalRequest(r *http.Request, allowBrowser bool) string {
	if !isLoopback(r.RemoteAddr) {
		return "the request did not come from this machine (loopback clients only)"
	}
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if r.Header.Get(k) != "" {
			return "the request came through a proxy (" + k + " header)"
		}
	}
	if !allowBrowser && r.Header.Get("Origin") != "" {
		return "the request came from a browser (Origin header)"
	}
	if !isLoopbackHost(r.Host) {
		return "the Host header names no loopback address"
	}
	return ""
}

// isLoopback reports whether addr ("host:port") is in 127.0.0.0/8 or ::1,
// IPv4-mapped forms included.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// match finds the route for r and sets its path values. Paths are matched
// segment by segment on the escaped path, so a '/' inside a room name is
// sent as %2F.
func (h *Handler) match(w http.ResponseWriter, r *http.Request) (*route, *apiError) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	var allow []string
	for i := range h.routes {
		rt := &h.routes[i]
		vals, ok := matchPath(rt.pattern, segs)
		if !ok {
			continue
		}
		// HEAD is GET without the body (net/http drops it), as RFC 9110
		// asks of every GET resource.
		if rt.method != r.Method && (rt.method != http.MethodGet || r.Method != http.MethodHead) {
			allow = append(allow, rt.method)
			if rt.method == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
			continue
		}
		for name, v := range vals {
			r.SetPathValue(name, v)
		}
		return rt, nil
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		allow = slices.Compact(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return nil, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))
	}
	return nil, errorf(http.StatusNotFound, codeNotFound, "no API endpoint %s (see docs/api.md; a '/' inside a room name is sent as %%2F)", r.URL.Path)
}

// matchPath matches the escaped path segments against pattern and returns
// the unescaped wildcard values. A wildcard never matches an empty segment.
func matchPath(pattern string, segs []string) (map[string]string, bool) {
	ps := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	if len(ps) != len(segs) {
		return nil, false
	}
	var vals map[string]string
	for i, p := range ps {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			if vals == nil {
				vals = make(map[string]string, 1)
			}
			vals[p[1:len(p)-1]] = v
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return vals, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"cannot encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	writeJSON(w, e.status, b)
}

// Protect serves next behind the API's access rule (the API key, or
// loopback only without one), for endpoints outside /api/ such as
// /metrics and the admin pages.
func (h *Handler) Protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := h.authorize(w, r); e != nil {
			w.Header().Set("Cache-Control", "no-store")
			writeError(w, e)
			return
		}
		next.ServeHTTP(w, r)
	})
}
