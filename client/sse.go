package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// SSEOptions configure SubscribeSSE. Zero values take the defaults of
// Options (backoff, handshake timeout).
type SSEOptions struct {
	// Header is sent with every request (cookies, a User-Agent, ...).
	Header http.Header
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// SubTokens are subscription tokens for private rooms, one per room.
	SubTokens []string
	// LastEventID resumes from a position an earlier stream reported
	// (SSEStream.LastEventID); empty: from now.
	LastEventID string
	// HTTPClient makes the requests. Default: a client without a timeout
	// (a stream is one long response).
	HTTPClient *http.Client
	// Reconnect backoff, as in Options. Defaults 500 ms, 30 s, 2.
	InitialDelay time.Duration
	MaxDelay     time.Duration
	Factor       float64
	// MaxAttempts is how many connection attempts in a row may fail before
	// the stream stops. 0: never give up.
	MaxAttempts int
	// HandshakeTimeout bounds one attempt, up to the last `subscribed`.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// OnEvent receives the stream's other envelopes (connection_established,
	// session_expiring, events sent to the user, ...).
	OnEvent func(e Event)
	// OnError receives errors of reconnect attempts and the one that
	// stopped the stream.
	OnError func(err error)
}

// SSEStream is a one-way subscription to rooms over Server-Sent Events
// (GET /sse; docs/protocol.md section 13), for networks where a WebSocket
// cannot get through or a program only reads. It reconnects by itself and
// resumes from the last event id, so the handler sees every event once and
// in order, or an Event with RecoveryFailed where the server could not
// replay. Publishing needs a Client.
type SSEStream struct {
	url     string
	rooms   []string
	handler func(Event)
	opts    SSEOptions
	hc      *http.Client
	bo      backoff
	cancel  context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	last string
	err  error
}

// SubscribeSSE opens a stream of rooms from the SSE endpoint sseURL
// ("http://localhost:8080/sse") and returns once every room is subscribed.
// The handler gets the rooms' events, one at a time, on a goroutine of the
// stream. An HTTP refusal (a *HandshakeError with the server's error code
// in the message) is returned as is; the stream never started.
func SubscribeSSE(ctx context.Context, sseURL string, rooms []string, handler func(Event), opts *SSEOptions) (*SSEStream, error) {
	if len(rooms) == 0 {
		return nil, errors.New("client: SubscribeSSE needs at least one room")
	}
	if handler == nil {
		return nil, errors.New("client: SubscribeSSE needs a handler")
	}
	u, err := url.Parse(sseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: SSE URL %q is not an http(s) URL", sseURL)
	}
	s := &SSEStream{url: sseURL, rooms: append([]string(nil), rooms...), handler: handler, done: make(chan struct{})}
	if opts != nil {
		s.opts = *opts
	}
	o := &s.opts
	if o.SubTokens != nil && len(o.SubTokens) != len(rooms) {
		return nil, fmt.Errorf("client: %d subscription tokens for %d rooms", len(o.SubTokens), len(rooms))
	}
	s.hc = o.HTTPClient
	if s.hc == nil {
		s.hc = &http.Client{}
	}
	s.bo = backoff{initial: or(o.InitialDelay, DefaultInitialDelay), max: or(o.MaxDelay, DefaultMaxDelay), factor: o.Factor, randN: rand.Int64N}
	if s.bo.factor <= 1 {
		s.bo.factor = DefaultFactor
	}
	o.HandshakeTimeout = or(o.HandshakeTimeout, DefaultHandshakeTimeout)
	s.last = o.LastEventID

	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	body, br, err := s.open(ctx, sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go s.run(sctx, body, br)
	return s, nil
}

func or(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// LastEventID is the position to resume from: give it to SSEOptions of a
// later SubscribeSSE to continue where this stream stopped.
func (s *SSEStream) LastEventID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Done is closed when the stream has stopped.
func (s *SSEStream) Done() <-chan struct{} { return s.done }

// Err is why the stream stopped (nil after Close, or while it runs).
func (s *SSEStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the stream and waits for its goroutine.
func (s *SSEStream) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// sseMsg is one dispatched event.
type sseMsg struct{ id, event, data string }

// readEvent reads one event (comments and retry-only blocks are skipped).
func readEvent(br *bufio.Reader) (sseMsg, error) {
	var m sseMsg
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if m.data != "" {
				return m, nil
			}
			m = sseMsg{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			m.id = value
		case "event":
			m.event = value
		case "data":
			if m.data != "" {
				m.data += "\n"
			}
			m.data += value
		}
	}
}

// open makes one request and reads up to the last `subscribed` within the
// handshake timeout (bounded by ctx too), handing those on; it returns the
// body to keep reading.
func (s *SSEStream) open(ctx, life context.Context) (io.ReadCloser, *bufio.Reader, error) {
	q := url.Values{"room": s.rooms}
	if s.opts.SubTokens != nil {
		q["sub_token"] = s.opts.SubTokens
	}
	u := s.url
	if strings.Contains(u, "?") {
		u += "&" + q.Encode()
	} else {
		u += "?" + q.Encode()
	}
	// The attempt's context outlives the handshake (it carries the
	// stream); the timeout and the caller's ctx end it only until then.
	actx, acancel := context.WithCancel(life)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		acancel()
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	for k, vs := range s.opts.Header {
		req.Header[k] = vs
	}
	if s.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last := s.LastEventID(); last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	timer := time.AfterFunc(s.opts.HandshakeTimeout, acancel)
	stop := context.AfterFunc(ctx, acancel)
	ok := false
	defer func() {
		timer.Stop()
		stop()
		if !ok {
			acancel()
		}
	}()
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("client: SSE request: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
		return nil, nil, fmt.Errorf("%w: %s: %s", &HandshakeError{StatusCode: resp.StatusCode}, body.Error.Code, body.Error.Message)
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for subscribed := 0; subscribed < len(s.rooms); {
		m, err := readEvent(br)
		if err != nil {
			resp.Body.Close()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, fmt.Errorf("client: SSE stream ended before its subscriptions: %w", err)
		}
		if m.event == protocol.TypeSubscribed {
			subscribed++
		}
		s.dispatch(m)
	}
	if !timer.Stop() || !stop() {
		resp.Body.Close() // timed out or cancelled just now
		return nil, nil, errors.New("client: SSE handshake timed out")
	}
	ok = true
	return cancelBody{resp.Body, acancel}, br, nil
}

// cancelBody ends its request's context when closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// dispatch hands one event to the handler or OnEvent, and keeps its id.
func (s *SSEStream) dispatch(m sseMsg) {
	var env protocol.Envelope
	if err := json.Unmarshal([]byte(m.data), &env); err != nil {
		s.report(fmt.Errorf("client: SSE event %q is not an envelope: %w", m.data, err))
		return
	}
	if m.id != "" {
		s.mu.Lock()
		s.last = m.id
		s.mu.Unlock()
	}
	switch {
	case env.Type == protocol.TypeSubscribed:
		var d struct {
			Position  string `json:"position"`
			Recovered *bool  `json:"recovered"`
		}
		_ = json.Unmarshal(env.Data, &d)
		if d.Recovered != nil && !*d.Recovered {
			s.handler(Event{Type: protocol.TypeSubscribed, ID: d.Position, Room: env.Room, RecoveryFailed: true})
		}
	case env.Room != "" && (!protocol.IsReserved(env.Type) || env.Type == protocol.TypeUserJoined || env.Type == protocol.TypeUserLeft):
		s.handler(eventOf(&env))
	case s.opts.OnEvent != nil:
		s.opts.OnEvent(eventOf(&env))
	}
}

func (s *SSEStream) report(err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(err)
	}
}

// run reads the stream and reconnects after it ends, until Close, a
// `disconnect` that advises against reconnecting, a refusal, or
// MaxAttempts failures in a row.
func (s *SSEStream) run(ctx context.Context, body io.ReadCloser, br *bufio.Reader) {
	defer close(s.done)
	var final error
	defer func() {
		s.mu.Lock()
		s.err = final
		s.mu.Unlock()
		if final != nil {
			s.report(final)
		}
	}()
	for {
		var d *protocol.Disconnect
		for {
			m, err := readEvent(br)
			if err != nil {
				break
			}
			if m.event == protocol.TypeDisconnect {
				var env struct{ Data protocol.Disconnect }
				if json.Unmarshal([]byte(m.data), &env) == nil {
					d = &env.Data
				}
				continue
			}
			s.dispatch(m)
		}
		body.Close()
		if ctx.Err() != nil {
			return
		}
		if d != nil && !d.Reconnect {
			final = &CloseError{Code: d.Code, Reason: d.Reason, advice: -1}
			return
		}
		for attempt := 0; ; attempt++ {
			if s.opts.MaxAttempts > 0 && attempt >= s.opts.MaxAttempts {
				final = fmt.Errorf("client: SSE gave up after %d attempts", attempt)
				return
			}
			if err := sleepCtx(ctx, s.bo.delay(attempt)); err != nil {
				return
			}
			var err error
			body, br, err = s.open(ctx, ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			var he *HandshakeError
			if errors.As(err, &he) && he.StatusCode >= 400 && he.StatusCode < 500 && he.StatusCode != http.StatusTooManyRequests && he.StatusCode != http.StatusRequestTimeout {
				final = err
				return
			}
			s.report(err)
		}
	}
}
