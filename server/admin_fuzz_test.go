package server

import (
	"crypto/sha256"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/protocol"
)

// FuzzAdminFirstFrame feeds arbitrary first messages to the admin socket's
// parser and auth decision, for a server with an API key and for one
// without (where the request may or may not come from this machine). Only
// {"type":"auth","key":KEY} with the exact key (or, without a key, any
// auth message from an allowed peer) may get in; every refusal is 4001 or
// 4003 with a reason that fits a close frame.
func FuzzAdminFirstFrame(f *testing.F) {
	const key = "s3cret-key"
	keyed := &admin{keyed: true, key: sha256.Sum256([]byte(key))}
	open := &admin{key: sha256.Sum256(nil)}
	for _, s := range []string{
		`{"type":"auth","key":"s3cret-key"}`,
		`{"type":"auth","key":"s3cret-key "}`,
		`{"type":"auth","key":""}`,
		`{"type":"auth"}`,
		`{"type":"AUTH","key":"s3cret-key"}`,
		`{"type":"auth","key":"s3cret-key","extra":1}`,
		`{"type":"auth","key":"s3cret-key"}{"type":"ping"}`,
		`{"type":"auth","key":"s3cret-key"}}`,
		`{"type":"auth","key":"s3cret-key"} `,
		`{"Type":"auth","Key":"s3cret-key"}`,
		`{"type":"auth","key":"s3cret-\u006bey"}`,
		`{"type":"ping","id":"1"}`,
		`{"type":"disconnect_user","user":"u"}`,
		`[]`, `null`, `"auth"`, ``, `{"type":1}`,
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "the admin dashboard answers this machine only: set an API key")
	}
	f.Fuzz(func(t *testing.T, frame []byte, refused string) {
		req, err := decodeAdminRequest(frame)
		if err != nil {
			return // closed with 1003 by OnMessage
		}
		for _, a := range []*admin{keyed, open} {
			code, reason := a.refusal(req, refused)
			if code == 0 {
				if req.Type != "auth" {
					t.Fatalf("%q let in without an auth message", frame)
				}
				if a.keyed && req.Key != key {
					t.Fatalf("%q let in with key %q", frame, req.Key)
				}
				if !a.keyed && refused != "" {
					t.Fatalf("%q let in although the peer is refused", frame)
				}
				continue
			}
			if code != protocol.CloseUnauthorized && code != protocol.CloseForbidden {
				t.Fatalf("%q refused with %d", frame, code)
			}
			if reason == "" || len(reason) > 123 || (utf8.ValidString(refused) && !utf8.ValidString(reason)) {
				t.Fatalf("%q refused with reason %q (%d bytes)", frame, reason, len(reason))
			}
		}
	})
}

// An admin message is exactly one JSON object: trailing data after it is
// refused rather than ignored.
func TestAdminRequestIsOneObject(t *testing.T) {
	for _, s := range []string{`{"type":"auth","key":"k"}{"type":"ping"}`, `{"type":"auth","key":"k"}}`, `{"type":"auth","key":"k"} x`} {
		if _, err := decodeAdminRequest([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if req, err := decodeAdminRequest([]byte(" {\"type\":\"auth\",\"key\":\"k\"}\n")); err != nil || req.Key != "k" {
		t.Errorf("one object with white space: %+v, %v", req, err)
	}
}
