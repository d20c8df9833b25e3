// Package rpcproxy forwards socket RPC calls to an application backend
// over HTTP: the standalone server's answer to "Go library users register
// handlers". Plug it in as hub.Options.RPCFallback. NewSubscribe and
// NewPublish do the same for subscribes and publishes (hub.Hooks), so a
// backend in any language can allow, refuse or rewrite them.
package rpcproxy

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

// Options configure the proxy.
type Options struct {
	// URL receives POST {"user_id", "connection_id", "method", "params"}
	// and answers {"result": any} or {"error": {"code", "message"}}.
	URL string
	// Timeout bounds one call. Default 5 s (the hub's RPC timeout also
	// applies).
	Timeout time.Duration
	// Client makes the calls; the server passes the one all its proxies
	// share. Default: a new client (internal/backend.NewClient).
	Client *http.Client
}

// Request is the body sent to the backend.
type Request struct {
	UserID       string          `json:"user_id"`
	ConnectionID string          `json:"connection_id"`
	Method       string          `json:"method"`
	Params       json.RawMessage `json:"params,omitempty"`
}

// maxAnswer bounds the backend's answer.
const maxAnswer = 1 << 20

// New returns a handler that forwards every call to opts.URL.
func New(opts Options) (hub.RPCHandler, error) {
	if opts.URL == "" {
		return nil, errors.New("rpcproxy: URL is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	client := opts.Client
	if client == nil {
		client = backend.NewClient()
	}
	return func(ctx context.Context, call hub.RPCCall) (json.RawMessage, error) {
		b, err := backend.Post(ctx, client, opts.URL, opts.Timeout,
			Request{UserID: call.UserID, ConnectionID: call.ConnectionID, Method: call.Method, Params: call.Params}, maxAnswer)
		var be *backend.Error
		if errors.As(err, &be) {
			switch be.Kind {
			case backend.Timeout:
				return nil, &hub.RPCError{Code: hub.RPCTimeout, Message: "the RPC backend did not answer in time"}
			case backend.Status:
				return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: fmt.Sprintf("the RPC backend answered status %d", be.Status)}
			case backend.BadAnswer:
				return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "reading the RPC backend's answer failed"}
			}
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "the RPC backend is unreachable"}
		} else if err != nil {
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "bad RPC proxy request"}
		}
		var out struct {
			Result json.RawMessage `json:"result"`
			Error  *hub.RPCError   `json:"error"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "the RPC backend's answer is not JSON"}
		}
		if out.Error != nil {
			return nil, out.Error
		}
		return out.Result, nil
	}, nil
}
