package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/protocol"
)

// decodeBody reads r's JSON object body into v, refusing unknown fields.
// With optional set an empty body leaves v as it is.
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "the body is larger than %d bytes", h.opts.MaxBodyBytes)
		}
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "cannot read the body: %v", err)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if optional {
			return nil
		}
		return errorf(http.StatusBadRequest, protocol.ErrBadJSON, "the body is empty: send a JSON object")
	}
	// A JSON content type cannot be sent cross-site by a browser without a
	// CORS preflight, which this API never grants.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeMediaType, "the body must be sent as Content-Type: application/json (got %q)", r.Header.Get("Content-Type"))
	}
	if trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "the body must be a JSON object")
		}
		return errorf(http.StatusBadRequest, protocol.ErrBadJSON, "the body is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, protocol.ErrBadJSON, "the body has data after its JSON object")
	}
	return nil
}

func decodeError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, protocol.ErrBadJSON, "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, protocol.ErrBadJSON, "malformed JSON: the body ends early")
	case errors.As(err, &te):
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "field %q must be %s", te.Field, jsonKind(te.Type.String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for DisallowUnknownFields.
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "%v", err)
}

// jsonKind names the JSON kind of a Go destination type for messages.
func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.Contains(goType, "int"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	}
	return "an object"
}

// event is an application event as the API accepts it. (Request types
// repeat its fields rather than embed it: encoding/json would name the
// embedded struct in type errors.)
type event struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// check validates an event's type and data and fills the default type.
// Validation here, before the hub is called, means a bad request changes
// nothing.
func (h *Handler) check(typ *string, data *json.RawMessage) *apiError {
	if *typ == "" {
		*typ = protocol.TypeMessage
	}
	if e := protocol.ValidateType(*typ); e != nil {
		return errorf(http.StatusBadRequest, e.Code, "%s", e.Message)
	}
	if string(*data) == "null" {
		*data = nil
	}
	if len(*data) > h.opts.MaxDataBytes {
		return errorf(http.StatusRequestEntityTooLarge, codeDataTooLarge, "field \"data\" is %d bytes, more than the limit of %d", len(*data), h.opts.MaxDataBytes)
	}
	return nil
}

// checkRoom validates a room name.
func checkRoom(room string) *apiError {
	if e := protocol.ValidateRoom(room); e != nil {
		return errorf(http.StatusBadRequest, e.Code, "%s", e.Message)
	}
	return nil
}

// Identifier limits for path values. They are generous; their job is to
// keep a mistaken multi-kilobyte value out of logs and control messages.
const (
	maxUserIDLen = 256
	maxConnIDLen = 64
	// maxIdempotencyKeyLen matches client publish ids; UUIDs are 36 bytes.
	maxIdempotencyKeyLen = protocol.MaxIDLen
	// maxReasonLen is what a close frame can carry (125 bytes minus the
	// code).
	maxReasonLen = 123
)

func checkID(what, v string, max int) *apiError {
	if len(v) > max {
		return errorf(http.StatusBadRequest, protocol.ErrBadRequest, "%s is longer than %d bytes", what, max)
	}
	return nil
}

// query reads r's query parameters, refusing names not in allowed so that
// a misspelt parameter is an error rather than silently ignored.
func query(r *http.Request, allowed ...string) (map[string]string, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "malformed query string: %v", err)
	}
	out := make(map[string]string, len(q))
	for name, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || a == name
		}
		if !known {
			if len(allowed) == 0 {
				return nil, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "unknown query parameter %q: this endpoint takes none", name)
			}
			return nil, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "unknown query parameter %q (allowed: %s)", name, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "query parameter %q is given %d times", name, len(vs))
		}
		out[name] = vs[0]
	}
	return out, nil
}

// parseBool reads a boolean query value: 1/0/true/false (empty: false).
func parseBool(name, v string) (bool, *apiError) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, protocol.ErrBadRequest, "query parameter %q must be true or false (or 1 or 0)", name)
	}
	return b, nil
}
