package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// RPCCall is one remote procedure call from a client.
type RPCCall struct {
	UserID       string
	ConnectionID string
	Method       string
	Params       json.RawMessage
}

// RPCHandler answers calls. It returns the JSON result, or an error; an
// *RPCError chooses the JSON-RPC error code, any other error is reported
// as an internal error (-32603) with its text. The context ends at the RPC
// timeout or when the connection goes away.
type RPCHandler func(ctx context.Context, call RPCCall) (json.RawMessage, error)

// RPCError is a JSON-RPC 2.0 error object.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// JSON-RPC error codes: the standard ones, and ours in the range the spec
// leaves to servers (-32000 to -32099).
const (
	RPCParseError     = -32700
	RPCInvalidRequest = -32600
	RPCMethodNotFound = -32601
	RPCInvalidParams  = -32602
	RPCInternalError  = -32603
	RPCTimeout        = -32001 // the handler did not answer within the RPC timeout
	RPCBackendFailure = -32002 // the RPC proxy's backend failed or was unreachable
	RPCForbidden      = -32003 // the room permissions refuse the call
	RPCTooMany        = -32004 // too many calls in flight on this connection
)

// Defaults for RPC.
const (
	DefaultRPCTimeout = 10 * time.Second
	// DefaultMaxRPCInFlight bounds the calls one connection may have
	// running, so a slow backend cannot pile up goroutines.
	DefaultMaxRPCInFlight = 16
)

// HandleRPC registers h for method, replacing any handler (built-ins
// included). Register before clients call; safe for concurrent use.
func (h *Hub) HandleRPC(method string, handler RPCHandler) {
	h.rpcMu.Lock()
	defer h.rpcMu.Unlock()
	h.rpc[method] = handler
}

func (h *Hub) rpcHandler(method string) RPCHandler {
	h.rpcMu.RLock()
	defer h.rpcMu.RUnlock()
	if fn := h.rpc[method]; fn != nil {
		return fn
	}
	return h.opts.RPCFallback
}

// registerBuiltinRPC adds "presence" and "history", answered from the hub
// under the connection's room permissions.
func (h *Hub) registerBuiltinRPC() {
	h.rpc["presence"] = func(ctx context.Context, call RPCCall) (json.RawMessage, error) {
		var p struct {
			Room       string `json:"room"`
			CountsOnly bool   `json:"counts_only"`
		}
		if err := json.Unmarshal(call.Params, &p); err != nil || p.Room == "" {
			return nil, &RPCError{Code: RPCInvalidParams, Message: `params must be {"room": string, "counts_only": bool}`}
		}
		if c := h.client(call.ConnectionID); c != nil && !c.allowed(h.settings(p.Room).perms.Presence, p.Room, false) {
			return nil, &RPCError{Code: RPCForbidden, Message: "not allowed to see this room's presence"}
		}
		info, err := h.Presence(ctx, p.Room, p.CountsOnly)
		if err != nil {
			return nil, rpcFromHubError(err)
		}
		return protocol.EncodeData(info), nil
	}
	h.rpc["history"] = func(ctx context.Context, call RPCCall) (json.RawMessage, error) {
		var p struct {
			Room string `json:"room"`
			HistoryRequest
		}
		if err := json.Unmarshal(call.Params, &p); err != nil || p.Room == "" {
			return nil, &RPCError{Code: RPCInvalidParams, Message: `params must be {"room": string, "since": event id, "limit": number}`}
		}
		if c := h.client(call.ConnectionID); c != nil && !c.allowed(h.settings(p.Room).perms.History, p.Room, false) {
			return nil, &RPCError{Code: RPCForbidden, Message: "not allowed to read this room's history"}
		}
		page, err := h.History(ctx, p.Room, p.HistoryRequest)
		if err != nil {
			return nil, rpcFromHubError(err)
		}
		return protocol.EncodeData(page), nil
	}
}

func rpcFromHubError(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return &RPCError{Code: RPCInvalidParams, Message: pe.Message}
	}
	if errors.Is(err, ErrHistoryDisabled) || errors.Is(err, ErrPresenceDisabled) {
		return &RPCError{Code: RPCMethodNotFound, Message: err.Error()}
	}
	return err
}

func (h *Hub) client(connID string) *Client {
	sh := h.connShard(connID)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.byID[connID]
}

// RPCRequest is the data of an envelope-style `rpc` request.
type RPCRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// rpcCall runs an `rpc` envelope or a raw JSON-RPC frame. The handler runs
// on its own goroutine: a slow backend must not stall this connection's
// reads (and so its pongs).
func (c *Client) rpcCall(env *protocol.Envelope) {
	raw := env.Type == protocol.TypeJSONRPC
	var method string
	var params json.RawMessage
	if raw {
		var r protocol.JSONRPCRequest
		_ = json.Unmarshal(env.Data, &r) // Decode already parsed it
		if !validRPCID(r.ID) {
			// JSON-RPC 2.0 ids are strings, numbers or null; the answer to
			// a request whose id cannot be echoed carries id null.
			c.rpcReply(&protocol.Envelope{Type: env.Type, ID: "null"}, raw, nil, &RPCError{Code: RPCInvalidRequest, Message: "id must be a string, a number or null"})
			return
		}
		method, params = r.Method, r.Params
	} else {
		var r RPCRequest
		if len(env.Data) > 0 {
			if err := json.Unmarshal(env.Data, &r); err != nil {
				c.rpcReply(env, raw, nil, &RPCError{Code: RPCInvalidRequest, Message: `rpc data must be {"method": string, "params": any}`})
				return
			}
		}
		method, params = r.Method, r.Params
	}
	if method == "" {
		c.rpcReply(env, raw, nil, &RPCError{Code: RPCInvalidRequest, Message: "method is required"})
		return
	}
	h := c.hub
	fn := h.rpcHandler(method)
	if fn == nil {
		h.stats.rpc("not_found")
		c.rpcReply(env, raw, nil, &RPCError{Code: RPCMethodNotFound, Message: fmt.Sprintf("method %q not found", method)})
		return
	}
	c.mu.Lock()
	if c.rpcInFlight >= h.opts.MaxRPCInFlight {
		c.mu.Unlock()
		h.stats.rpc("rejected")
		c.rpcReply(env, raw, nil, &RPCError{Code: RPCTooMany, Message: fmt.Sprintf("more than %d calls in flight", h.opts.MaxRPCInFlight)})
		return
	}
	c.rpcInFlight++
	c.mu.Unlock()

	call := RPCCall{UserID: c.UserID(), ConnectionID: c.id, Method: method, Params: params}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.RPCTimeout)
		defer cancel()
		type answer struct {
			res json.RawMessage
			err error
		}
		done := make(chan answer, 1)
		go func() {
			defer func() {
				if p := recover(); p != nil {
					done <- answer{err: fmt.Errorf("handler panicked: %v", p)}
				}
				c.mu.Lock()
				c.rpcInFlight--
				c.mu.Unlock()
			}()
			res, err := fn(ctx, call)
			done <- answer{res, err}
		}()
		select {
		case a := <-done:
			if a.err != nil {
				var re *RPCError
				if !errors.As(a.err, &re) {
					re = &RPCError{Code: RPCInternalError, Message: a.err.Error()}
				}
				h.stats.rpc(rpcOutcome(re.Code))
				c.rpcReply(env, raw, nil, re)
				return
			}
			if len(a.res) == 0 {
				a.res = json.RawMessage("null")
			}
			if !json.Valid(a.res) {
				h.stats.rpc("error")
				c.rpcReply(env, raw, nil, &RPCError{Code: RPCInternalError, Message: "handler returned invalid JSON"})
				return
			}
			h.stats.rpc("ok")
			c.rpcReply(env, raw, a.res, nil)
		case <-ctx.Done():
			h.stats.rpc("timeout")
			c.rpcReply(env, raw, nil, &RPCError{Code: RPCTimeout, Message: fmt.Sprintf("no answer within %s", h.opts.RPCTimeout)})
		}
	}()
}

// validRPCID reports whether a raw JSON-RPC id (already valid JSON) is one
// JSON-RPC 2.0 allows: absent (a notification), a string, a number or null.
func validRPCID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	switch c := id[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	case c == 'n':
		return string(id) == "null"
	}
	return false
}

func rpcOutcome(code int) string {
	switch code {
	case RPCTimeout:
		return "timeout"
	case RPCBackendFailure:
		return "backend_failure"
	case RPCMethodNotFound:
		return "not_found"
	}
	return "error"
}

// rpcResponse is the JSON-RPC 2.0 response shape.
type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *RPCError       `json:"error,omitempty"`
}

// rpcReply answers in the shape the call came in: a raw JSON-RPC response,
// or an rpc_result envelope whose data is one. Raw notifications (no id)
// get no answer, as JSON-RPC says.
func (c *Client) rpcReply(env *protocol.Envelope, raw bool, res json.RawMessage, rerr *RPCError) {
	resp := rpcResponse{JSONRPC: "2.0", Result: res, Error: rerr}
	if raw {
		if env.ID == "" {
			return
		}
		resp.ID = json.RawMessage(env.ID)
		b, err := json.Marshal(resp)
		if err != nil { // not reached: rpcCall checked the id, handlers' results are valid JSON
			resp.ID, resp.Result = json.RawMessage("null"), nil
			resp.Error = &RPCError{Code: RPCInternalError, Message: "the answer could not be encoded"}
			b, _ = json.Marshal(resp)
		}
		c.sink.Send(protocol.NewFrame(b))
		return
	}
	if env.ID != "" {
		resp.ID, _ = json.Marshal(env.ID)
	}
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeRPCResult, ID: env.ID, Data: protocol.EncodeData(resp)})
}
