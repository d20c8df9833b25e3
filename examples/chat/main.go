// Command chat is a chat backend that embeds Switchboard in an ordinary
// net/http server: the WebSocket endpoint sits beside the application's
// own routes, hooks enforce the chat's rules, and the backend posts and
// reads messages through the hub.
//
//	go run ./examples/chat -listen 127.0.0.1:8090
//
// Clients connect to ws://127.0.0.1:8090/ws, subscribe to chat:ROOM and
// publish {"type":"message","room":"chat:ROOM","data":{"text":"hi","name":"ann"}}.
// See README.md.
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
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/server"
)

// The chat's rules.
const (
	roomPrefix = "chat:" // the only rooms this backend serves
	maxText    = 500     // characters in one message
	maxName    = 32      // characters in a display name
)

// message is what a chat message's data must look like. Publishes are
// rewritten to exactly these fields, so clients cannot smuggle others in.
type message struct {
	Text string `json:"text"`
	Name string `json:"name,omitempty"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, log); err != nil {
		log.Error("chat", "err", err)
		os.Exit(1)
	}
}

func run(listen string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	node, err := server.New(ctx, server.Config{
		NoDemo:  true, // this application has its own pages
		NoAdmin: true,
		Logger:  log,
		Hub: hub.Options{Hooks: hub.Hooks{
			OnConnect:    func(c hub.ConnectionInfo) { log.Info("connected", "user", c.UserID, "conn", c.ConnectionID) },
			OnDisconnect: func(c hub.ConnectionInfo) { log.Info("disconnected", "user", c.UserID, "conn", c.ConnectionID) },
			OnSubscribe: func(ctx context.Context, c hub.ConnectionInfo, room string) error {
				if !strings.HasPrefix(room, roomPrefix) {
					return protocol.Errorf(protocol.ErrForbidden, "", "this server has chat rooms only: %s...", roomPrefix)
				}
				return nil
			},
			OnPublish: func(ctx context.Context, c hub.ConnectionInfo, room, typ string, data json.RawMessage) (json.RawMessage, error) {
				if !strings.HasPrefix(room, roomPrefix) || typ != "message" {
					return nil, protocol.Errorf(protocol.ErrForbidden, "", "only chat messages (type \"message\") to %s... rooms", roomPrefix)
				}
				m, err := checkMessage(data)
				if err != nil {
					return nil, protocol.Errorf(protocol.ErrBadRequest, "", "%v", err)
				}
				return json.Marshal(m)
			},
		}},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/ws", node.WS)
	// The backend reads a room's recent messages from the hub's history...
	mux.HandleFunc("GET /rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		page, err := node.Hub.History(r.Context(), roomPrefix+r.PathValue("room"), protocol.HistoryRequest{Limit: 50})
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, page)
	})
	// ...and posts to a room as itself (no user): an announcement.
	mux.HandleFunc("POST /rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		var m message
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&m); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"text\": ...}: " + err.Error()})
			return
		}
		m.Name = "announcer"
		b, err := json.Marshal(m)
		if err == nil {
			_, err = checkMessage(b)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		res, err := node.Hub.Publish(r.Context(), roomPrefix+r.PathValue("room"), "message", b, hub.PublishOptions{})
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, res)
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
	// Drain: refuse new handshakes, tell clients to reconnect elsewhere
	// (1012), then stop the HTTP server. net/http's Shutdown alone would
	// leave the WebSockets (hijacked connections) open.
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(
		node.WS.Shutdown(dctx),
		node.Hub.Shutdown(dctx, protocol.NewDisconnect(protocol.CloseServiceRestart, "server shutting down")),
		srv.Shutdown(dctx),
	)
}

// checkMessage validates a chat message and returns it with only the
// known fields.
func checkMessage(data json.RawMessage) (message, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("a chat message is {\"text\": string, \"name\": string}: %v", err)
	}
	m.Text = strings.TrimSpace(m.Text)
	m.Name = strings.TrimSpace(m.Name)
	switch {
	case m.Text == "":
		return m, errors.New("the message has no text")
	case utf8.RuneCountInString(m.Text) > maxText:
		return m, fmt.Errorf("the message is longer than %d characters", maxText)
	case utf8.RuneCountInString(m.Name) > maxName:
		return m, fmt.Errorf("the name is longer than %d characters", maxName)
	}
	return m, nil
}

func httpError(w http.ResponseWriter, err error) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": pe.Message})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
