package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/backend"
)

// ConnectProxy authenticates a handshake by asking the application's
// backend: for apps whose users log in with a cookie session (the seeds'
// Django and FastAPI backends). It POSTs the handshake's cookies and chosen
// headers as JSON to URL; a 200 answer
//
//	{"user_id": "42", "rooms": ["team:7"], "info": {...}, "expires_at": 1767225600}
//
// lets the connection in as that user (expires_at in Unix seconds,
// optional). Any other status, a malformed answer, an empty user_id, or no
// answer within Timeout refuses it: the proxy never lets a client in on
// failure.
type ConnectProxy struct {
	// URL of the backend endpoint. Required.
	URL string
	// Timeout bounds one call. Default 3 s.
	Timeout time.Duration
	// Headers are the request headers forwarded besides Cookie. Default:
	// Authorization, User-Agent, Origin, X-Forwarded-For.
	Headers []string
	// Client makes the call; the server passes the one all its proxies
	// share. Default: a new client (internal/backend.NewClient).
	Client *http.Client
}

// ProxyRequest is the body the connect proxy sends.
type ProxyRequest struct {
	RemoteAddr string            `json:"remote_addr"`
	Cookies    map[string]string `json:"cookies"`
	Headers    map[string]string `json:"headers"`
}

// ProxyResponse is the body the backend answers.
type ProxyResponse struct {
	UserID    string          `json:"user_id"`
	Rooms     []string        `json:"rooms,omitempty"`
	Info      json.RawMessage `json:"info,omitempty"`
	ExpiresAt int64           `json:"expires_at,omitempty"`
}

// maxProxyAnswer bounds the backend's answer.
const maxProxyAnswer = 64 << 10

// AuthenticateRequest asks the backend about r.
func (p *ConnectProxy) AuthenticateRequest(ctx context.Context, r *http.Request) (*hub.Credentials, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	client := p.Client
	if client == nil {
		client = backend.NewClient()
	}
	headers := p.Headers
	if headers == nil {
		headers = []string{"Authorization", "User-Agent", "Origin", "X-Forwarded-For"}
	}
	req := ProxyRequest{RemoteAddr: r.RemoteAddr, Cookies: map[string]string{}, Headers: map[string]string{}}
	for _, c := range r.Cookies() {
		req.Cookies[c.Name] = c.Value
	}
	for _, h := range headers {
		if v := r.Header.Get(h); v != "" {
			req.Headers[h] = v
		}
	}
	b, err := backend.Post(ctx, client, p.URL, timeout, req, maxProxyAnswer)
	var be *backend.Error
	if errors.As(err, &be) && be.Kind == backend.Status {
		return nil, fmt.Errorf("connect proxy refused the connection (status %d)", be.Status)
	} else if err != nil {
		return nil, fmt.Errorf("connect proxy unreachable: %w", err)
	}
	var out ProxyResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("connect proxy answer is not JSON: %w", err)
	}
	if out.UserID == "" {
		return nil, errors.New("connect proxy answer has no user_id")
	}
	creds := &hub.Credentials{UserID: out.UserID, Rooms: out.Rooms, Info: out.Info}
	if out.ExpiresAt > 0 {
		creds.ExpiresAt = time.Unix(out.ExpiresAt, 0)
		if time.Until(creds.ExpiresAt) <= 0 {
			return nil, errors.New("connect proxy answer has already expired")
		}
	}
	return creds, nil
}
