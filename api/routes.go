package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// routeTable is every endpoint of the API. docs/api.md and openapi.yaml
// describe the same list; a test checks openapi.yaml against it.
func routeTable() []route {
	return []route{
		{http.MethodPost, "/api/broadcast/{room}", (*Handler).publishRoom},
		{http.MethodPost, "/api/broadcast", (*Handler).broadcast},
		{http.MethodPost, "/api/publish", (*Handler).publishBatch},
		{http.MethodGet, "/api/rooms", (*Handler).rooms},
		{http.MethodGet, "/api/rooms/{room}", (*Handler).room},
		{http.MethodGet, "/api/rooms/{room}/history", (*Handler).history},
		{http.MethodGet, "/api/rooms/{room}/presence", (*Handler).presence},
		{http.MethodGet, "/api/stats", (*Handler).stats},
		{http.MethodPost, "/api/users/{user}/send", (*Handler).userSend},
		{http.MethodPost, "/api/users/{user}/disconnect", (*Handler).userDisconnect},
		{http.MethodPost, "/api/users/{user}/ban", (*Handler).userBan},
		{http.MethodPost, "/api/connections/{id}/send", (*Handler).connSend},
		{http.MethodPost, "/api/connections/{id}/disconnect", (*Handler).connDisconnect},
		// The seeds' publish route, for backends written from them
		// (compat.go); the server mounts the handler at /broadcast/ too.
		{http.MethodPost, "/broadcast/{room}", (*Handler).seedBroadcast},
	}
}

// pathID reads the path value name of a route that takes no query
// parameters and checks it as an id of at most max bytes (what names it in
// errors).
func pathID(r *http.Request, name, what string, max int) (string, *apiError) {
	if _, e := query(r); e != nil {
		return "", e
	}
	id := r.PathValue(name)
	if e := checkID(what, id, max); e != nil {
		return "", e
	}
	return id, nil
}

// userID and connID read the {user} and {id} path values.
func userID(r *http.Request) (string, *apiError) { return pathID(r, "user", "user id", maxUserIDLen) }
func connID(r *http.Request) (string, *apiError) {
	return pathID(r, "id", "connection id", maxConnIDLen)
}

// decodeEvent reads and checks an event body ({type, data}).
func (h *Handler) decodeEvent(w http.ResponseWriter, r *http.Request) (event, *apiError) {
	var ev event
	if e := h.decodeBody(w, r, &ev, false); e != nil {
		return ev, e
	}
	return ev, h.check(&ev.Type, &ev.Data)
}

// hubError turns an error from the hub into an answer.
func hubError(err error) *apiError {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return errorf(http.StatusBadRequest, pe.Code, "%s", pe.Message)
	case errors.Is(err, hub.ErrHistoryDisabled), errors.Is(err, hub.ErrPresenceDisabled):
		return errorf(http.StatusBadRequest, protocol.ErrNotImplemented, "%v", err)
	case errors.Is(err, hub.ErrClosed):
		return errorf(http.StatusServiceUnavailable, codeUnavailable, "the node is shutting down: %v", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, codeUnavailable, "the engine did not answer in time: %v", err)
	}
	return errorf(http.StatusInternalServerError, protocol.ErrInternal, "%v", err)
}

func (h *Handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.opts.Timeout)
}

// publishRequest is the body of POST /api/broadcast/{room}.
type publishRequest struct {
	Type           string          `json:"type"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
	// ExcludeConnection is a connection id that does not receive the
	// event: the client a backend relays the event for.
	ExcludeConnection string `json:"exclude_connection"`
}

func checkKey(key string) *apiError {
	return checkID("field \"idempotency_key\"", key, maxIdempotencyKeyLen)
}

func checkExclude(id string) *apiError {
	return checkID("field \"exclude_connection\"", id, maxConnIDLen)
}

func (h *Handler) publishRoom(w http.ResponseWriter, r *http.Request) *apiError {
	room := r.PathValue("room")
	if _, e := query(r); e != nil {
		return e
	}
	if e := checkRoom(room); e != nil {
		return e
	}
	var req publishRequest
	if e := h.decodeBody(w, r, &req, false); e != nil {
		return e
	}
	if e := h.check(&req.Type, &req.Data); e != nil {
		return e
	}
	if e := checkKey(req.IdempotencyKey); e != nil {
		return e
	}
	if e := checkExclude(req.ExcludeConnection); e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	res, err := h.hub.Publish(ctx, room, req.Type, req.Data, hub.PublishOptions{IdempotencyKey: req.IdempotencyKey, ExcludeConnection: req.ExcludeConnection})
	if err != nil {
		return hubError(err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// batchRequest is the body of POST /api/publish.
type batchRequest struct {
	Events []batchEvent `json:"events"`
}

type batchEvent struct {
	Room              string          `json:"room"`
	Type              string          `json:"type"`
	Data              json.RawMessage `json:"data"`
	IdempotencyKey    string          `json:"idempotency_key"`
	ExcludeConnection string          `json:"exclude_connection"`
}

// batchAnswer is the answer of a batch publish.
type batchAnswer struct {
	Results []batchResult `json:"results"`
	Failed  int           `json:"failed"` // events that could not be published
}

// batchResult is one event's outcome, in request order.
type batchResult struct {
	Room       string     `json:"room"`
	EventID    string     `json:"event_id,omitempty"`
	Recipients int        `json:"recipients"`
	Duplicate  bool       `json:"duplicate,omitempty"`
	Error      *errorInfo `json:"error,omitempty"`
}

type errorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// publishBatch validates every event first, so that a bad one publishes
// none; after that each event stands alone and a failure (engine trouble)
// is reported in its result.
func (h *Handler) publishBatch(w http.ResponseWriter, r *http.Request) *apiError {
	if _, e := query(r); e != nil {
		return e
	}
	var req batchRequest
	if e := h.decodeBody(w, r, &req, false); e != nil {
		return e
	}
	switch {
	case len(req.Events) == 0:
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "field \"events\" must list 1 to %d events", h.opts.MaxBatch)
	case len(req.Events) > h.opts.MaxBatch:
		return errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d events in one batch, more than the limit of %d", len(req.Events), h.opts.MaxBatch)
	}
	for i := range req.Events {
		ev := &req.Events[i]
		e := checkRoom(ev.Room)
		if e == nil {
			e = h.check(&ev.Type, &ev.Data)
		}
		if e == nil {
			e = checkKey(ev.IdempotencyKey)
		}
		if e == nil {
			e = checkExclude(ev.ExcludeConnection)
		}
		if e != nil {
			e.message = "events[" + strconv.Itoa(i) + "]: " + e.message
			return e
		}
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	out := batchAnswer{Results: make([]batchResult, len(req.Events))}
	for i, ev := range req.Events {
		res, err := h.hub.Publish(ctx, ev.Room, ev.Type, ev.Data, hub.PublishOptions{IdempotencyKey: ev.IdempotencyKey, ExcludeConnection: ev.ExcludeConnection})
		br := batchResult{Room: ev.Room, EventID: res.EventID, Recipients: res.Recipients, Duplicate: res.Duplicate}
		if err != nil {
			e := hubError(err)
			h.log.Error("api: batch publish failed", "room", ev.Room, "err", err)
			br.Error = &errorInfo{Code: e.code, Message: e.message}
			out.Failed++
		}
		out.Results[i] = br
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// recipients is the answer of sends: how many connections on this node
// the event was addressed to. Other nodes deliver it too but are not
// counted.
type recipients struct {
	Recipients int `json:"recipients"`
}

func (h *Handler) broadcast(w http.ResponseWriter, r *http.Request) *apiError {
	if _, e := query(r); e != nil {
		return e
	}
	ev, e := h.decodeEvent(w, r)
	if e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n := int(h.hub.Stats().Connections)
	if err := h.hub.Broadcast(ctx, ev.Type, ev.Data); err != nil {
		return hubError(err)
	}
	writeJSON(w, http.StatusOK, recipients{n})
	return nil
}

func (h *Handler) userSend(w http.ResponseWriter, r *http.Request) *apiError {
	user, e := userID(r)
	if e != nil {
		return e
	}
	ev, e := h.decodeEvent(w, r)
	if e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n := h.hub.UserConnections(user)
	if err := h.hub.SendToUser(ctx, user, ev.Type, ev.Data); err != nil {
		return hubError(err)
	}
	writeJSON(w, http.StatusOK, recipients{n})
	return nil
}

func (h *Handler) connSend(w http.ResponseWriter, r *http.Request) *apiError {
	id, e := connID(r)
	if e != nil {
		return e
	}
	ev, e := h.decodeEvent(w, r)
	if e != nil {
		return e
	}
	found, err := h.hub.SendToConn(id, ev.Type, ev.Data)
	if err != nil {
		return hubError(err)
	}
	if !found {
		return errorf(http.StatusNotFound, codeConnNotFound, "connection %q is not open on this node", id)
	}
	writeJSON(w, http.StatusOK, recipients{1})
	return nil
}

// disconnectRequest is the body of the disconnect endpoints; both fields
// are optional.
type disconnectRequest struct {
	Code   *int   `json:"code"`
	Reason string `json:"reason"`
}

// disconnect validates the request and returns the Disconnect to send.
func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request) (protocol.Disconnect, *apiError) {
	var req disconnectRequest
	if e := h.decodeBody(w, r, &req, true); e != nil {
		return protocol.Disconnect{}, e
	}
	code := int(protocol.CloseKicked)
	if req.Code != nil {
		code = *req.Code
	}
	if !apiCloseCode(code) {
		return protocol.Disconnect{}, errorf(http.StatusBadRequest, protocol.ErrBadRequest,
			"field \"code\" must be 1000, 1001, 1008, 1011, 1012, 1013 or 4000-4999 (got %d)", code)
	}
	if len(req.Reason) > maxReasonLen {
		return protocol.Disconnect{}, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "field \"reason\" is longer than %d bytes, what a close frame can carry", maxReasonLen)
	}
	return protocol.NewDisconnect(protocol.CloseCode(code), req.Reason), nil
}

// apiCloseCode reports whether the API may close connections with code:
// the standard codes a server may send for its own reasons, and the
// application range. 1002, 1003, 1007 and 1009 describe a client's
// protocol fault, which only the transport can see.
func apiCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1008, 1011, 1012, 1013:
		return true
	}
	return code >= 4000 && code <= 4999
}

// disconnectAnswer says how many connections of the user this node held.
type disconnectAnswer struct {
	Connections int `json:"connections"`
}

func (h *Handler) userDisconnect(w http.ResponseWriter, r *http.Request) *apiError {
	user, e := userID(r)
	if e != nil {
		return e
	}
	d, e := h.disconnect(w, r)
	if e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n := h.hub.UserConnections(user)
	if err := h.hub.DisconnectUser(ctx, user, d); err != nil {
		return hubError(err)
	}
	writeJSON(w, http.StatusOK, disconnectAnswer{n})
	return nil
}

// banRequest is the body of POST /api/users/{user}/ban.
type banRequest struct {
	// Seconds the ban lasts; 0 lifts a ban.
	Seconds *int64 `json:"seconds"`
}

// banAnswer says until when the user is banned (Unix ms; 0: not banned).
type banAnswer struct {
	BannedUntil int64 `json:"banned_until"`
}

// maxBanSeconds caps a ban at a year; longer is a job for the identity
// provider, not a real-time server's memory.
const maxBanSeconds = 365 * 24 * 3600

func (h *Handler) userBan(w http.ResponseWriter, r *http.Request) *apiError {
	user, e := userID(r)
	if e != nil {
		return e
	}
	var req banRequest
	if e := h.decodeBody(w, r, &req, false); e != nil {
		return e
	}
	if req.Seconds == nil || *req.Seconds < 0 || *req.Seconds > maxBanSeconds {
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "field \"seconds\" must be 0 (lift the ban) to %d", maxBanSeconds)
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	d := time.Duration(*req.Seconds) * time.Second
	if err := h.hub.Ban(ctx, user, d); err != nil {
		return hubError(err)
	}
	var until int64
	if d > 0 {
		until = time.Now().Add(d).UnixMilli()
	}
	writeJSON(w, http.StatusOK, banAnswer{until})
	return nil
}

type accepted struct {
	Accepted bool `json:"accepted"`
}

func (h *Handler) connDisconnect(w http.ResponseWriter, r *http.Request) *apiError {
	id, e := connID(r)
	if e != nil {
		return e
	}
	d, e := h.disconnect(w, r)
	if e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.hub.DisconnectConn(ctx, id, d); err != nil {
		return hubError(err)
	}
	// The command goes to every node; none reports back whether it held
	// the connection, so the answer can only say it was sent.
	writeJSON(w, http.StatusAccepted, accepted{true})
	return nil
}

// roomList and roomDetail describe this node's rooms; Node names the node
// so that answers from several nodes can be told apart.
type roomList struct {
	Node  string         `json:"node"`
	Rooms []hub.RoomInfo `json:"rooms"`
}

type roomDetail struct {
	Node        string           `json:"node"`
	Room        string           `json:"room"`
	Members     int              `json:"members"`
	Connections []hub.MemberInfo `json:"connections"`
}

func (h *Handler) rooms(w http.ResponseWriter, r *http.Request) *apiError {
	if _, e := query(r); e != nil {
		return e
	}
	rooms := h.hub.Rooms()
	if rooms == nil {
		rooms = []hub.RoomInfo{}
	}
	slices.SortFunc(rooms, func(a, b hub.RoomInfo) int { return cmp.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, roomList{h.hub.NodeID(), rooms})
	return nil
}

func (h *Handler) room(w http.ResponseWriter, r *http.Request) *apiError {
	room := r.PathValue("room")
	if _, e := query(r); e != nil {
		return e
	}
	if e := checkRoom(room); e != nil {
		return e
	}
	members, ok := h.hub.RoomMembers(room)
	if !ok {
		return errorf(http.StatusNotFound, protocol.ErrRoomNotFound, "room %q has no members on this node", room)
	}
	slices.SortFunc(members, func(a, b hub.MemberInfo) int { return cmp.Compare(a.ConnectionID, b.ConnectionID) })
	writeJSON(w, http.StatusOK, roomDetail{h.hub.NodeID(), room, len(members), members})
	return nil
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request) *apiError {
	room := r.PathValue("room")
	q, e := query(r, "since", "limit")
	if e != nil {
		return e
	}
	if e := checkRoom(room); e != nil {
		return e
	}
	req := protocol.HistoryRequest{Since: q["since"]}
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "query parameter \"limit\" must be an integer from 0 to %d", hub.MaxHistoryLimit)
		}
		req.Limit = n
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	page, err := h.hub.History(ctx, room, req)
	if err != nil {
		return hubError(err)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// presenceResponse lists members as [] when there are none, and leaves
// the field out only for counts_only.
type presenceResponse struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
	Members any `json:"members,omitempty"`
}

func (h *Handler) presence(w http.ResponseWriter, r *http.Request) *apiError {
	room := r.PathValue("room")
	q, e := query(r, "counts_only")
	if e != nil {
		return e
	}
	if e := checkRoom(room); e != nil {
		return e
	}
	countsOnly, e := parseBool("counts_only", q["counts_only"])
	if e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	info, err := h.hub.Presence(ctx, room, countsOnly)
	if err != nil {
		return hubError(err)
	}
	out := presenceResponse{Clients: info.Clients, Users: info.Users}
	if !countsOnly {
		out.Members = info.Members
		if info.Members == nil {
			out.Members = []any{} // [] in JSON, as the members would be
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// statsResponse leaves room for a cluster: Node is the answering node,
// Nodes every node it knows of (with the memory engine, itself only).
type statsResponse struct {
	Node    hub.Stats     `json:"node"`
	Nodes   []hub.Stats   `json:"nodes"`
	Cluster clusterTotals `json:"cluster"`
}

// clusterTotals add up the nodes' counters that can be added: a room with
// members on several nodes counts once per node, so rooms are not summed.
type clusterTotals struct {
	Nodes        int    `json:"nodes"`
	Connections  int64  `json:"connections"`
	MessagesIn   uint64 `json:"messages_in"`
	MessagesOut  uint64 `json:"messages_out"`
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	Writes       uint64 `json:"writes"`
	Publications uint64 `json:"publications"`
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) *apiError {
	if _, e := query(r); e != nil {
		return e
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	// Without the engine, this node's own numbers are still worth
	// answering; the other nodes are then missing from the list.
	nodes, err := h.hub.ClusterStats(ctx)
	if err != nil {
		h.log.Warn("api: other nodes' stats unavailable", "err", err)
	}
	resp := statsResponse{Node: nodes[0], Nodes: nodes}
	for _, n := range nodes {
		c := &resp.Cluster
		c.Nodes++
		c.Connections += n.Connections
		c.MessagesIn += n.MessagesIn
		c.MessagesOut += n.MessagesOut
		c.BytesIn += n.BytesIn
		c.BytesOut += n.BytesOut
		c.Writes += n.Writes
		c.Publications += n.Publications
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
