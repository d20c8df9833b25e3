// Package backend makes the JSON POSTs that the connect, RPC, subscribe
// and publish proxies send to the application's backend: one HTTP client
// shared by all of them (one pool of kept-alive connections), one timeout
// rule and one classification of failures, which each proxy turns into
// its own documented answer.
package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Kind says how a call failed.
type Kind int

// Kinds of failure.
const (
	Unreachable Kind = iota + 1 // no answer: refused, reset, DNS, bad URL
	Timeout                     // no answer within the timeout
	Status                      // an answer other than 200
	BadAnswer                   // the answer could not be read
)

// Error is a failed call.
type Error struct {
	Kind   Kind
	Status int // for Status
	Err    error
}

func (e *Error) Error() string {
	switch e.Kind {
	case Timeout:
		return "backend did not answer in time"
	case Status:
		return fmt.Sprintf("backend answered status %d", e.Status)
	case BadAnswer:
		return fmt.Sprintf("reading the backend's answer: %v", e.Err)
	}
	return fmt.Sprintf("backend unreachable: %v", e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NewClient returns the client the proxies share. It has no overall
// timeout (each call brings its own) and keeps enough idle connections per
// backend host for a burst of subscribes.
func NewClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// Post sends body as JSON to url and returns the answer's bytes (at most
// limit) when the status is 200. timeout bounds the whole call, reading
// the answer included.
func Post(ctx context.Context, client *http.Client, url string, timeout time.Duration, body any, limit int64) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("backend: encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, &Error{Kind: Unreachable, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &Error{Kind: Timeout, Err: err}
		}
		return nil, &Error{Kind: Unreachable, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Kind: Status, Status: resp.StatusCode}
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &Error{Kind: Timeout, Err: err}
		}
		return nil, &Error{Kind: BadAnswer, Err: err}
	}
	return out, nil
}
