// Package rpcproxy forwards socket RPC calls to an application backend
// over HTTP: the standalone server's answer to "Go library users register
// handlers". Plug it in as hub.Options.RPCFallback.
package rpcproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// Options configure the proxy.
type Options struct {
	// URL receives POST {"user_id", "connection_id", "method", "params"}
	// and answers {"result": any} or {"error": {"code", "message"}}.
	URL string
	// Timeout bounds one call. Default 5 s (the hub's RPC timeout also
	// applies).
	Timeout time.Duration
	// Client makes the calls. Default: an http.Client with Timeout.
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
		client = &http.Client{Timeout: opts.Timeout}
	}
	return func(ctx context.Context, call hub.RPCCall) (json.RawMessage, error) {
		body, _ := json.Marshal(Request{UserID: call.UserID, ConnectionID: call.ConnectionID, Method: call.Method, Params: call.Params})
		ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.URL, bytes.NewReader(body))
		if err != nil {
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "bad RPC proxy URL"}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, &hub.RPCError{Code: hub.RPCTimeout, Message: "the RPC backend did not answer in time"}
			}
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "the RPC backend is unreachable"}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		if err != nil {
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: "reading the RPC backend's answer failed"}
		}
		if resp.StatusCode != http.StatusOK {
			return nil, &hub.RPCError{Code: hub.RPCBackendFailure, Message: fmt.Sprintf("the RPC backend answered status %d", resp.StatusCode)}
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
