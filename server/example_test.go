package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
)

// Embed Switchboard in an existing net/http application: mount the
// WebSocket endpoint on your own mux, publish from Go, answer RPC calls,
// and watch connections with hooks.
func Example_embed() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	joined := make(chan string, 1)
	node, err := server.New(ctx, server.Config{
		NoDemo: true,
		Hub: hub.Options{Hooks: hub.Hooks{OnSubscribe: func(ctx context.Context, c hub.ConnectionInfo, room string) error {
			joined <- room
			return nil
		}}},
	})
	if err != nil {
		panic(err)
	}
	node.Hub.HandleRPC("getMatches", func(ctx context.Context, call hub.RPCCall) (json.RawMessage, error) {
		return json.RawMessage(`[{"id":123,"status":"live"}]`), nil
	})

	mux := http.NewServeMux()
	mux.Handle("/realtime", node.WS) // your app's routes live beside it
	mux.HandleFunc("/matches/123/score", func(w http.ResponseWriter, r *http.Request) {
		res, err := node.Hub.Publish(r.Context(), "match:123", "score_update", json.RawMessage(`{"home":1,"away":0}`), hub.PublishOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, res.EventID != "")
	})
	app := httptest.NewServer(mux)
	defer app.Close()

	// A client subscribes to the match room...
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(app.URL, "http")+"/realtime", nil)
	if err != nil {
		panic(err)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]string{"type": "subscribe", "room": "match:123"})
	<-joined // the hook ran; the join completes before the subscribed answer
	read := func(typ string) json.RawMessage {
		for {
			var m struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			if err := ws.ReadJSON(&m); err != nil {
				panic(err)
			}
			if m.Type == typ {
				return m.Data
			}
		}
	}
	read("subscribed")
	// ...and the app publishes a score update from an ordinary handler.
	if _, err := http.Post(app.URL+"/matches/123/score", "text/plain", nil); err != nil {
		panic(err)
	}
	fmt.Println("score_update", string(read("score_update")))
	// Output: score_update {"home":1,"away":0}
}
