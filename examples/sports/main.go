// Command sports is the live-match backend of the seeds' FastAPI and
// Django Channels examples, on Switchboard: the application keeps the
// matches and exposes its own HTTP API; every change is pushed to the
// match's room, match:ID, through the embedded hub.
//
//	go run ./examples/sports -listen 127.0.0.1:8091
//
//	POST /matches                    {"id":1,"home_team":"Rovers","away_team":"United"}
//	GET  /matches/{id}
//	POST /matches/{id}/commentary    {"minute":23,"text":"GOAL!"}        -> event "commentary"
//	PUT  /matches/{id}/score         {"home":1,"away":0,"minute":23}    -> event "score_update"
//
// A client subscribes to match:ID and calls the RPC method match_data
// for the match as it stands (the seeds' match_data message on join),
// then applies only the events newer than its last_event_id. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// Match is a match as the application stores it.
type Match struct {
	ID       int    `json:"id"`
	HomeTeam string `json:"home_team"`
	AwayTeam string `json:"away_team"`
	Score    Score  `json:"score"`
	Minute   int    `json:"minute"`
	Status   string `json:"status"` // scheduled, live, half_time, full_time
	// Commentary is the match's commentary, oldest first.
	Commentary []Commentary `json:"commentary"`
	// LastEventID is the room event of the newest change in this state.
	// A client that loads the state drops live events at or before it.
	LastEventID string `json:"last_event_id,omitempty"`
}

// Score is a match's score.
type Score struct {
	Home int `json:"home"`
	Away int `json:"away"`
}

// Commentary is one line of commentary.
type Commentary struct {
	Minute int    `json:"minute"`
	Text   string `json:"text"`
}

var statuses = map[string]bool{"scheduled": true, "live": true, "half_time": true, "full_time": true}

// store holds the matches. Each change is published while the lock is
// held, so the stored state and LastEventID always agree and events leave
// in the order of the changes.
type store struct {
	hub     *hub.Hub
	mu      sync.Mutex
	matches map[int]*Match
}

func room(id int) string { return "match:" + strconv.Itoa(id) }

// change applies fn to match id and publishes the event it returns.
func (s *store) change(ctx context.Context, id int, fn func(m *Match) (typ string, data any, err error)) (*Match, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.matches[id]
	if !ok {
		return nil, errNotFound
	}
	next := *m
	next.Commentary = append([]Commentary(nil), m.Commentary...)
	typ, data, err := fn(&next)
	if err != nil {
		return nil, err
	}
	if err := s.publish(ctx, &next, typ, data); err != nil {
		return nil, err
	}
	*m = next
	return &next, nil
}

func (s *store) publish(ctx context.Context, m *Match, typ string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	res, err := s.hub.Publish(ctx, room(m.ID), typ, b, hub.PublishOptions{})
	if err != nil {
		return err
	}
	m.LastEventID = res.EventID
	return nil
}

var errNotFound = errors.New("no such match")

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to listen on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, log); err != nil {
		log.Error("sports", "err", err)
		os.Exit(1)
	}
}

func run(listen string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &store{matches: map[int]*Match{}}
	node, err := server.New(ctx, server.Config{
		NoDemo:  true,
		NoAdmin: true,
		Logger:  log,
		Hub: hub.Options{Hooks: hub.Hooks{
			// Like the seeds' consumer, which closed with 1008 for an
			// unknown match: here the subscribe is refused instead.
			OnSubscribe: func(ctx context.Context, c hub.ConnectionInfo, r string) error {
				id, ok := strings.CutPrefix(r, "match:")
				n, err := strconv.Atoi(id)
				if !ok || err != nil {
					return protocol.Errorf(protocol.ErrForbidden, "", "this server has match rooms only: match:ID")
				}
				s.mu.Lock()
				_, found := s.matches[n]
				s.mu.Unlock()
				if !found {
					return protocol.Errorf(protocol.ErrRoomNotFound, "", "no match %d", n)
				}
				return nil
			},
			// Only the backend writes to match rooms.
			OnPublish: func(ctx context.Context, c hub.ConnectionInfo, r, typ string, data json.RawMessage) (json.RawMessage, error) {
				return nil, protocol.Errorf(protocol.ErrForbidden, "", "match rooms are read-only: the backend publishes")
			},
		}},
	})
	if err != nil {
		return err
	}
	s.hub = node.Hub

	// match_data answers with the match as it stands: what the seeds'
	// consumers sent on connect.
	node.Hub.HandleRPC("match_data", func(ctx context.Context, call hub.RPCCall) (json.RawMessage, error) {
		var p struct {
			ID int `json:"id"`
		}
		if err := json.Unmarshal(call.Params, &p); err != nil {
			return nil, &protocol.RPCError{Code: protocol.RPCInvalidParams, Message: `params must be {"id": number}`}
		}
		s.mu.Lock()
		m, ok := s.matches[p.ID]
		var b []byte
		if ok {
			b, err = json.Marshal(m)
		}
		s.mu.Unlock()
		if !ok {
			return nil, &protocol.RPCError{Code: protocol.RPCInvalidParams, Message: fmt.Sprintf("no match %d", p.ID)}
		}
		return b, err
	})

	mux := http.NewServeMux()
	mux.Handle("/ws", node.WS)
	mux.HandleFunc("POST /matches", func(w http.ResponseWriter, r *http.Request) {
		var m Match
		if !decode(w, r, &m) {
			return
		}
		if m.ID <= 0 || m.HomeTeam == "" || m.AwayTeam == "" || utf8.RuneCountInString(m.HomeTeam+m.AwayTeam) > 100 {
			fail(w, http.StatusBadRequest, "a match needs a positive id, a home_team and an away_team")
			return
		}
		if m.Status == "" {
			m.Status = "scheduled"
		}
		if !statuses[m.Status] || m.Score.Home < 0 || m.Score.Away < 0 || m.Minute < 0 {
			fail(w, http.StatusBadRequest, "status must be scheduled, live, half_time or full_time; score and minute not negative")
			return
		}
		m.Commentary, m.LastEventID = []Commentary{}, ""
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, dup := s.matches[m.ID]; dup {
			fail(w, http.StatusConflict, fmt.Sprintf("match %d exists", m.ID))
			return
		}
		data := map[string]any{"match_id": m.ID, "home_team": m.HomeTeam, "away_team": m.AwayTeam, "score": m.Score, "minute": m.Minute, "status": m.Status}
		if err := s.publish(r.Context(), &m, "match_data", data); err != nil {
			fail(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		s.matches[m.ID] = &m
		writeJSON(w, http.StatusCreated, &m)
	})
	mux.HandleFunc("GET /matches/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := matchID(w, r)
		if !ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		m, found := s.matches[id]
		if !found {
			fail(w, http.StatusNotFound, "match not found")
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("POST /matches/{id}/commentary", func(w http.ResponseWriter, r *http.Request) {
		id, ok := matchID(w, r)
		var c Commentary
		if !ok || !decode(w, r, &c) {
			return
		}
		c.Text = strings.TrimSpace(c.Text)
		if c.Text == "" || utf8.RuneCountInString(c.Text) > 500 || c.Minute < 0 || c.Minute > 150 {
			fail(w, http.StatusBadRequest, "commentary needs text (at most 500 characters) and a minute from 0 to 150")
			return
		}
		m, err := s.change(r.Context(), id, func(m *Match) (string, any, error) {
			m.Commentary = append(m.Commentary, c)
			return "commentary", map[string]any{"match_id": id, "minute": c.Minute, "text": c.Text}, nil
		})
		respond(w, http.StatusCreated, m, err)
	})
	mux.HandleFunc("PUT /matches/{id}/score", func(w http.ResponseWriter, r *http.Request) {
		id, ok := matchID(w, r)
		var u struct {
			Home   *int   `json:"home"`
			Away   *int   `json:"away"`
			Minute int    `json:"minute"`
			Status string `json:"status"`
		}
		if !ok || !decode(w, r, &u) {
			return
		}
		if u.Home == nil || u.Away == nil || *u.Home < 0 || *u.Away < 0 || u.Minute < 0 || (u.Status != "" && !statuses[u.Status]) {
			fail(w, http.StatusBadRequest, "a score update is {\"home\": n, \"away\": n, \"minute\": n, \"status\": optional}")
			return
		}
		m, err := s.change(r.Context(), id, func(m *Match) (string, any, error) {
			m.Score = Score{*u.Home, *u.Away}
			m.Minute = u.Minute
			if u.Status != "" {
				m.Status = u.Status
			} else if m.Status == "scheduled" {
				m.Status = "live"
			}
			return "score_update", map[string]any{"match_id": id, "score": m.Score, "minute": m.Minute, "status": m.Status}, nil
		})
		respond(w, http.StatusOK, m, err)
	})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("listening on http://%s\n", ln.Addr()) // the examples' test reads this line
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(
		node.WS.Shutdown(dctx),
		node.Hub.Shutdown(dctx, protocol.NewDisconnect(protocol.CloseServiceRestart, "server shutting down")),
		srv.Shutdown(dctx),
	)
}

func matchID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		fail(w, http.StatusNotFound, "match not found")
		return 0, false
	}
	return id, true
}

// decode reads a JSON body of at most 16 KiB into v, refusing unknown
// fields, and answers 400 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func respond(w http.ResponseWriter, status int, m *Match, err error) {
	switch {
	case errors.Is(err, errNotFound):
		fail(w, http.StatusNotFound, "match not found")
	case err != nil:
		fail(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, status, m)
	}
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
