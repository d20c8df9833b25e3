package server

import (
	"context"
	"embed"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// The SDK bundle is built from clients/js and committed, so that a plain
// `go build` embeds it; TestEmbeddedSDKIsFresh checks it against a fresh
// build. Refresh it with `go generate ./server` after `npm ci` in clients/js.
//
//go:generate node web/build-sdk.mjs web/switchboard.min.js

//go:embed web/index.html web/demo.js web/demo.css web/switchboard.min.js
var demoFiles embed.FS

// demoPageCSP allows the page's own scripts, styles and WebSocket and
// nothing else: no inline script, no third-party origin.
const demoPageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Demo publishing limits: the publish button is open to every visitor the
// access rule admits, so it is rate-limited for the whole node, and it can
// only advance a fixed script in the demo's own rooms.
const (
	demoPublishRate  = 2  // steps per second, sustained
	demoPublishBurst = 10 // steps at once
	demoRoomPrefix   = "demo-match:"
)

// demoMatches are the demo's fixtures, by id.
var demoMatches = map[string][2]string{
	"1": {"Rovers", "United"},
	"2": {"City", "Athletic"},
	"3": {"Wanderers", "Rangers"},
}

// demo serves the demo page at / and its publish button.
type demo struct {
	hub    *hub.Hub
	keyed  bool // an API key is configured: the button needs it
	api    *api.Handler
	bucket tokenBucket

	mu   sync.Mutex
	step map[string]int // next script step per match
}

// demoFile serves one of the demo's files; the browser revalidates it.
func demoFile(name, contentType string) http.Handler {
	return staticFile(demoFiles, name, contentType, "no-cache")
}

// mountDemo adds the demo page, its assets, the SDK bundle and the publish
// button's endpoint to mux.
func mountDemo(mux *http.ServeMux, h *hub.Hub, apiHandler *api.Handler, apiKey bool) {
	d := &demo{hub: h, keyed: apiKey, api: apiHandler, step: map[string]int{},
		bucket: tokenBucket{rate: demoPublishRate, burst: demoPublishBurst}}
	mux.Handle("GET /{$}", demoFile("web/index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /demo/demo.js", demoFile("web/demo.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /demo/demo.css", demoFile("web/demo.css", "text/css; charset=utf-8"))
	// The SDK's ESM browser bundle, where its README says a page without a
	// bundler finds it.
	mux.Handle("GET /switchboard.min.js", demoFile("web/switchboard.min.js", "text/javascript; charset=utf-8"))
	var publish http.Handler = http.HandlerFunc(d.publish)
	if apiKey {
		publish = apiHandler.Protect(publish)
	}
	mux.Handle("POST /demo/matches/{id}/next", sameOrigin(publish))
	mux.HandleFunc("/demo/matches/{id}/next", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here (allowed: POST)")
	})
}

// sameOrigin refuses requests that a browser sent from another origin: a
// page elsewhere must not make a visitor's browser press the button.
// Requests without Origin (curl, scripts) pass to the next check.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
			writeError(w, http.StatusForbidden, "forbidden", "cross-origin request refused: the demo accepts requests from its own page only")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// demoEvent is one event of the script.
type demoEvent struct {
	Type string
	Data map[string]any
}

// demoScript returns the steps of a match between home and away, each
// one or two events; the button publishes one step a press and loops.
func demoScript(id, home, away string) [][]demoEvent {
	score := func(h, a int) map[string]int { return map[string]int{"home": h, "away": a} }
	com := func(min int, text string) demoEvent {
		return demoEvent{"commentary", map[string]any{"match_id": id, "minute": min, "text": text}}
	}
	upd := func(min, h, a int, status string) demoEvent {
		return demoEvent{"score_update", map[string]any{"match_id": id, "minute": min, "score": score(h, a), "status": status}}
	}
	data := func(min, h, a int, status string) demoEvent {
		return demoEvent{"match_data", map[string]any{"match_id": id, "home_team": home, "away_team": away, "minute": min, "score": score(h, a), "status": status}}
	}
	return [][]demoEvent{
		{data(0, 0, 0, "live"), com(0, "Kick-off! "+home+" get us under way.")},
		{com(12, away+" win a corner; it is cleared at the near post.")},
		{upd(23, 1, 0, "live"), com(23, "GOAL! "+home+" lead with a header from a corner.")},
		{upd(45, 1, 0, "half_time"), com(45, "Half-time: "+home+" 1, "+away+" 0.")},
		{upd(46, 1, 0, "live"), com(46, away+" restart the second half.")},
		{upd(61, 1, 1, "live"), com(61, "GOAL! "+away+" level with a low shot into the corner.")},
		{com(77, "Yellow card for "+away+"'s captain after a late tackle.")},
		{upd(88, 2, 1, "live"), com(88, "GOAL! "+home+" win it late on the counter-attack.")},
		{data(90, 2, 1, "full_time"), com(90, "Full time: "+home+" 2, "+away+" 1.")},
	}
}

// publishAnswer is the answer of the publish button.
type publishAnswer struct {
	Room   string           `json:"room"`
	Step   int              `json:"step"`
	Events []publishedEvent `json:"events"`
}

type publishedEvent struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
}

// publish advances match {id} by one script step and publishes its events
// to demo-match:{id} through the hub, as the HTTP API does.
func (d *demo) publish(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	teams, ok := demoMatches[id]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no demo match "+strconv.Quote(id)+" (the demo has matches 1, 2 and 3)")
		return
	}
	if !d.keyed {
		// Without an API key the button works from this machine only, by
		// the same rule as the API (see localRequest).
		if msg := localRequest(r); msg != "" {
			writeError(w, http.StatusForbidden, "forbidden", msg)
			return
		}
	}
	if !d.bucket.take(time.Now()) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "throttled", "the demo publishes at most 2 steps a second; try again in a moment")
		return
	}
	// A visitor who goes away mid-step must not leave half a step
	// published: the publishes outlive the request.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock() // held across the publishes: concurrent presses keep the script in order
	steps := demoScript(id, teams[0], teams[1])
	room := demoRoomPrefix + id
	step := d.step[id] % len(steps)
	if next, ok := nextDemoStep(ctx, d.hub, room, steps); ok {
		step = next
	}
	d.step[id] = step + 1
	ans := publishAnswer{Room: room, Step: step}
	for _, ev := range steps[step] {
		data, err := json.Marshal(ev.Data)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		res, err := d.hub.Publish(ctx, ans.Room, ev.Type, data, hub.PublishOptions{})
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "publish failed: "+err.Error())
			return
		}
		ans.Events = append(ans.Events, publishedEvent{ev.Type, res.EventID})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ans)
}

// nextDemoStep finds where the room's match stands from its newest event,
// so that the button carries on a match that a backend (publish.sh, which
// plays the same script) or another node published: the step after the one
// that event belongs to. After full time, or when the newest event is not
// the script's (someone published their own match), it starts a new match
// at kick-off. Without history it reports false and the button counts on
// its own.
func nextDemoStep(ctx context.Context, h *hub.Hub, room string, steps [][]demoEvent) (int, bool) {
	page, err := h.History(ctx, room, protocol.HistoryRequest{Limit: 1})
	if err != nil || len(page.Events) == 0 {
		return 0, false
	}
	var last struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if json.Unmarshal(page.Events[len(page.Events)-1], &last) != nil {
		return 0, true
	}
	lastData, _ := json.Marshal(last.Data) // map keys sorted: comparable with the script's
	for i, st := range steps {
		for _, ev := range st {
			if b, _ := json.Marshal(ev.Data); ev.Type == last.Type && string(b) == string(lastData) {
				return (i + 1) % len(steps), true
			}
		}
	}
	return 0, true
}

// localRequest applies the API's rule for a node without a key (see
// api.LocalRequest), a same-origin browser request allowed: sameOrigin has
// already refused the others. It returns why a request is refused, or "".
func localRequest(r *http.Request) string {
	if why := api.LocalRequest(r, true); why != "" {
		return "no API key is configured and " + why + "; set an API key (--api-key) and enter it on the page to publish from elsewhere"
	}
	return ""
}

// tokenBucket is a small rate limiter: rate tokens a second, at most
// burst saved. Safe for concurrent use.
type tokenBucket struct {
	rate, burst float64
	mu          sync.Mutex
	tokens      float64
	last        time.Time
}

func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
