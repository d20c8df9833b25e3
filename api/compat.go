package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchboard-rt/switchboard/hub"
)

// The seeds' backends (the FastAPI guide) publish with
//
//	POST /broadcast/{room}    body: any JSON object
//
// and their clients receive {"type": "broadcast", "room", "data": body}.
// The route below gives such a backend that answer unchanged, behind the
// same API key as /api/; /api/broadcast/{room} is the full route (own
// event type, idempotency, exclude_connection).

// SeedEventType is the event type of a publish through the seed-shaped
// route, the type the seeds' clients look for.
const SeedEventType = "broadcast"

// seedAnswer is the answer of POST /broadcast/{room}: the seeds' shape
// ({"status": "sent", "room", "recipients"}) plus the event id.
type seedAnswer struct {
	Status     string `json:"status"`
	Room       string `json:"room"`
	Recipients int    `json:"recipients"`
	EventID    string `json:"event_id"`
}

func (h *Handler) seedBroadcast(w http.ResponseWriter, r *http.Request) *apiError {
	room := r.PathValue("room")
	if _, e := query(r); e != nil {
		return e
	}
	if e := checkRoom(room); e != nil {
		return e
	}
	var body json.RawMessage
	if e := h.decodeBody(w, r, &body, false); e != nil {
		return e
	}
	typ := SeedEventType
	if e := h.check(&typ, &body); e != nil {
		e.message = strings.Replace(e.message, `field "data"`, "the body", 1)
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	res, err := h.hub.Publish(ctx, room, typ, body, hub.PublishOptions{})
	if err != nil {
		return hubError(err)
	}
	w.Header().Set("Link", `</api/broadcast/`+url.PathEscape(room)+`>; rel="alternate"`)
	writeJSON(w, http.StatusOK, seedAnswer{Status: "sent", Room: room, Recipients: res.Recipients, EventID: res.EventID})
	return nil
}

// Suggest returns the API route a request to path was probably meant for
// ("/api" + path, when the API serves that), so that a 404 outside /api/
// can name it: a backend written from the seeds calls GET /rooms and
// GET /stats.
func (h *Handler) Suggest(path string) (string, bool) {
	if strings.HasPrefix(path, "/api/") {
		return "", false
	}
	segs := strings.Split(strings.TrimPrefix("/api"+path, "/"), "/")
	for _, rt := range h.routes {
		if _, ok := matchPath(rt.pattern, segs); ok {
			return rt.method + " /api" + path, true
		}
	}
	return "", false
}
