package server

import (
	"embed"
	"fmt"
	"net/http"
)

// staticFile serves one embedded file of the demo or the admin page with
// the pages' security headers; cache is its Cache-Control (the admin page
// is never stored, the demo's files are revalidated).
func staticFile(files embed.FS, name, contentType, cache string) http.Handler {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("server: embedded file %s is missing: %v", name, err)) // a build defect, caught by every test
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Type", contentType)
		hdr.Set("Content-Security-Policy", demoPageCSP)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("Cache-Control", cache)
		_, _ = w.Write(b)
	})
}
