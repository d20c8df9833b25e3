// Package api is Switchboard's HTTP server API: the JSON endpoints under
// /api/ that backends call to publish to rooms, message or disconnect
// users and connections, and read rooms, history, presence and stats.
//
// The first call is New, which returns an http.Handler to mount at /api/:
//
//	h, err := api.New(api.Options{Hub: theHub, Keys: []string{key}})
//	mux.Handle("/api/", h)
//
// Every request must carry one of Keys as "Authorization: Bearer KEY".
// With no keys the API answers loopback clients only (see Options.Keys).
// docs/api.md describes the endpoints; openapi.yaml in this directory is
// the same description for tools, checked against the route table by
// tests.
package api
