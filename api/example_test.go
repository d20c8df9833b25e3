package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
)

// Mount the API next to your own routes and publish to a room.
func ExampleNew() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := hub.New(hub.Options{Engine: memory.New(memory.Options{})})
	if err != nil {
		panic(err)
	}
	if err := h.Run(ctx); err != nil {
		panic(err)
	}
	apiHandler, err := api.New(api.Options{Hub: h, Keys: []string{"example-key-0123456789"}})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", apiHandler)

	for _, body := range []string{`{"type":"score_update","data":{"home":1}}`, `{"type":"subscribe"}`} {
		r := httptest.NewRequest("POST", "/api/broadcast/match:42", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer example-key-0123456789")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Println(w.Code, strings.Contains(w.Body.String(), `"event_id"`), strings.Contains(w.Body.String(), `"bad_request"`))
	}
	// Output:
	// 200 true false
	// 400 false true
}
