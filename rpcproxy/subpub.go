package rpcproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/backend"
	"github.com/switchboard-rt/switchboard/protocol"
)

// The subscribe and publish proxies ask the backend before a connection
// joins a room or publishes to it. The backend answers 200 with
//
//	{}                                          allow
//	{"result": {"data": ...}}                   allow; a publish sends this data instead,
//	                                            a subscribe answers it in subscribed.data.data
//	{"error": {"code": "...", "reason": "..."}} refuse: the client gets error CODE with the reason
//
// Anything else (no answer within the timeout, a refused connection, a
// status other than 200, an answer that is not such an object) refuses
// the request with error "unavailable": the connection stays open and the
// client may retry. See docs/api.md, "Subscribe and publish proxies".

// DefaultProxyTimeout bounds one subscribe or publish proxy call. It is
// short because the connection waits: its later messages queue behind it.
const DefaultProxyTimeout = 3 * time.Second

// ProxyOptions configure a subscribe or publish proxy.
type ProxyOptions struct {
	// URL receives the POSTs. Required.
	URL string
	// Timeout bounds one call. Default DefaultProxyTimeout.
	Timeout time.Duration
	// Client makes the calls; the server passes the one all its proxies
	// share. Default: a new client.
	Client *http.Client
}

// SubscribeRequest is the body the subscribe proxy sends.
type SubscribeRequest struct {
	ConnectionID string `json:"connection_id"`
	UserID       string `json:"user_id"`
	Anonymous    bool   `json:"anonymous,omitempty"`
	Room         string `json:"room"`
	// Data is the subscribe's data as the client sent it (it holds the
	// subscription token, if any).
	Data json.RawMessage `json:"data,omitempty"`
	Info json.RawMessage `json:"info,omitempty"` // from the connection's credentials
}

// PublishRequest is the body the publish proxy sends.
type PublishRequest struct {
	ConnectionID string          `json:"connection_id"`
	UserID       string          `json:"user_id"`
	Anonymous    bool            `json:"anonymous,omitempty"`
	Room         string          `json:"room"`
	Type         string          `json:"type"`
	Data         json.RawMessage `json:"data,omitempty"`
	Info         json.RawMessage `json:"info,omitempty"`
}

// proxyAnswer is what the backend answers.
type proxyAnswer struct {
	Result *struct {
		Data json.RawMessage `json:"data"`
	} `json:"result"`
	Error *struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// codeRE is what a backend's error code must look like to reach the
// client unchanged; others become forbidden.
var codeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// maxReason bounds the reason passed to the client.
const maxReason = 512

func (o *ProxyOptions) fill() error {
	if o.URL == "" {
		return errors.New("rpcproxy: URL is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProxyTimeout
	}
	if o.Client == nil {
		o.Client = backend.NewClient()
	}
	return nil
}

// NewSubscribe returns a hub.Hooks.OnSubscribeData that asks opts.URL.
func NewSubscribe(opts ProxyOptions) (func(context.Context, hub.ConnectionInfo, string, json.RawMessage) (json.RawMessage, error), error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, c hub.ConnectionInfo, room string, data json.RawMessage) (json.RawMessage, error) {
		return ask(ctx, opts, "subscribe", SubscribeRequest{
			ConnectionID: c.ConnectionID, UserID: c.UserID, Anonymous: c.Anonymous, Room: room, Data: data, Info: c.Info,
		})
	}, nil
}

// NewPublish returns a hub.Hooks.OnPublish that asks opts.URL.
func NewPublish(opts ProxyOptions) (func(context.Context, hub.ConnectionInfo, string, string, json.RawMessage) (json.RawMessage, error), error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, c hub.ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error) {
		return ask(ctx, opts, "publish", PublishRequest{
			ConnectionID: c.ConnectionID, UserID: c.UserID, Anonymous: c.Anonymous, Room: room, Type: typ, Data: data, Info: c.Info,
		})
	}, nil
}

// ask makes one call and turns its outcome into the hook's answer: new
// data (nil to keep it), a refusal, or an unavailable error.
func ask(ctx context.Context, opts ProxyOptions, what string, req any) (json.RawMessage, error) {
	b, err := backend.Post(ctx, opts.Client, opts.URL, opts.Timeout, req, maxAnswer)
	if err != nil {
		var be *backend.Error
		msg := "the " + what + " proxy failed"
		if errors.As(err, &be) {
			msg = "the " + what + " proxy: " + be.Error()
		}
		return nil, protocol.Errorf(protocol.ErrUnavailable, "", "%s; nothing was done, retry later", msg)
	}
	var ans proxyAnswer
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) || json.Unmarshal(b, &ans) != nil {
		return nil, protocol.Errorf(protocol.ErrUnavailable, "", "the %s proxy's answer is not a JSON object; nothing was done", what)
	}
	if ans.Error != nil {
		code := ans.Error.Code
		if !codeRE.MatchString(code) {
			code = protocol.ErrForbidden
		}
		reason := ans.Error.Reason
		if reason == "" {
			reason = what + " refused by the application"
		}
		if len(reason) > maxReason {
			reason = strings.ToValidUTF8(reason[:maxReason], "")
		}
		return nil, &protocol.Error{Code: code, Message: reason}
	}
	if ans.Result != nil && len(ans.Result.Data) > 0 {
		return ans.Result.Data, nil
	}
	return nil, nil
}
