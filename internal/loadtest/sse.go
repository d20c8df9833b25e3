package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Subscriber transports of a run (Scenario.Transport).
const (
	TransportWebSocket = "websocket"
	TransportSSE       = "sse"
)

// sseSub is an SSE subscriber: one GET /sse?room=... on a raw connection,
// read with net/http's response parser (a body that ends with the
// connection on HTTP/1.1, or a chunked one from an older server) and a
// small line reader.
type sseSub struct {
	nc  net.Conn
	br  *bufio.Reader // over the response body
	buf []byte        // the current event's data
}

func (s *sseSub) close() {
	if tc, ok := s.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // no TIME_WAIT, as closeWS(abort)
	}
	_ = s.nc.Close()
}

// sseDisconnect starts the data of a disconnect event.
var sseDisconnect = []byte(`{"type":"disconnect"`)

// openSSE connects subscriber i (worker-local) to /sse on the worker's
// host with its room in the query; it returns once the stream's
// connection_established event is read. The `subscribed` event that
// follows is counted by readSSE.
func (w *worker) openSSE(ctx context.Context, d *net.Dialer, i int) (*sub, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", w.host)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	room := (w.cfg.First + i) % w.cfg.Rooms
	req := "GET /sse?room=" + roomName(room) + " HTTP/1.1\r\nHost: " + w.host + "\r\nAccept: text/event-stream\r\n\r\n"
	fail := func(err error) (*sub, error) {
		_ = nc.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := io.WriteString(nc, req); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, clientReadBuffer), nil)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("GET /sse answered %s", resp.Status))
	}
	s := &sub{sse: &sseSub{nc: nc, br: bufio.NewReaderSize(resp.Body, clientReadBuffer)}, room: room, next: 1}
	data, err := s.sse.next()
	if err == nil && !bytes.HasPrefix(data, establishedPrefix) {
		err = fmt.Errorf("first event is not connection_established: %.120q", data)
	}
	if err != nil {
		s.sse.close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return s, nil
}

// next returns the data of the next event (valid until the next call);
// comments (heartbeats) and id/event/retry lines are skipped, as the data
// line carries the whole envelope. Only the reading goroutine calls it.
func (s *sseSub) next() ([]byte, error) {
	data := s.buf[:0]
	have := false
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = line[:len(line)-1]
		switch {
		case len(line) == 0:
			if have {
				s.buf = data
				return data, nil
			}
		case bytes.HasPrefix(line, []byte("data: ")):
			// The server writes one data line per event. It is copied:
			// the reader's buffer moves on at the blank line.
			data, have = append(data[:0], line[len("data: "):]...), true
		}
	}
}

// readSSE is an SSE subscriber's read loop, the counterpart of read.
func (w *worker) readSSE(s *sub) {
	defer s.ended.Store(true)
	for {
		data, err := s.sse.next()
		now := time.Now().UnixNano()
		if err != nil {
			return
		}
		if bytes.HasPrefix(data, sseDisconnect) {
			code := 0
			if i := bytes.Index(data, []byte(`"code":`)); i >= 0 {
				code, _ = strconv.Atoi(string(bytes.TrimRight(data[i+7:min(len(data), i+11)], ",}")))
			}
			s.closeCode.Store(uint32(code))
			s.sse.close()
			return
		}
		w.text(s, data, now)
	}
}
