package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping","id":"1"}`,
		`{"type":"subscribe","id":"s1","room":"chat:1","last_event_id":"abc-7"}`,
		`{"type":"message","room":"chat:1","id":"m1","data":{"text":"hi \"x\" \\ \u00e9","n":[1,2.5,null,true]}}`,
		`{"type":"x","ts":1700000000000,"user_id":"u1","data":null}`,
		`{"type":"x","data":"{[{[\"]}"}`,
		`{"type":5,"id":"r"}`,
		`{"type":"x","id":7}`,
		`[1,2]`,
		`{"type":"x","data":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
		"{\"type\":\"x\",\"id\":\"\xff\xfe\"}",
		`{"TYPE":"x","Room":"y"}`,
		`{"jsonrpc":"2.0","id":1,"method":"sum","params":[1,2]}`,
		`{"jsonrpc":"2.0","id":"r-1","method":"m"}`,
		"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"m\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Decode(b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *protocol.Error: %v", err, err)
			}
			if pe.Code != ErrBadJSON && pe.Code != ErrBadRequest {
				t.Fatalf("unexpected error code %q", pe.Code)
			}
			if len(pe.Ref) > MaxIDLen {
				t.Fatalf("ref longer than MaxIDLen")
			}
			return
		}
		if env.Type == "" || len(env.Type) > MaxTypeLen || !isIdent(env.Type) || len(env.ID) > MaxIDLen {
			t.Fatalf("accepted an envelope breaking the limits: %+v", env)
		}
		for _, f := range []string{env.Type, env.ID, env.Room, env.UserID, env.LastEventID} {
			if !utf8.ValidString(f) {
				t.Fatalf("accepted envelope has a field that is not valid UTF-8: %+v", env)
			}
		}
		if len(env.Data) > 0 && !json.Valid(env.Data) {
			t.Fatalf("accepted invalid data %q", env.Data)
		}
		if env.Type == TypeJSONRPC {
			// A raw JSON-RPC frame is passed on whole, never re-encoded
			// as an envelope (a "jsonrpc" envelope is refused).
			if !bytes.Equal(env.Data, b) || (env.ID != "" && !json.Valid([]byte(env.ID))) {
				t.Fatalf("JSON-RPC frame %q decoded as %+v", b, env)
			}
			return
		}
		enc := Encode(env)
		if !json.Valid(enc) {
			t.Fatalf("Encode(%+v) = %q: invalid JSON", env, enc)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded envelope %q rejected: %v", enc, err)
		}
		if !envEqual(*back, *env) {
			t.Fatalf("round trip changed the envelope:\n in  %+v\n out %+v", env, back)
		}
	})
}

func FuzzValidateRoom(f *testing.F) {
	for _, s := range []string{"chat:lobby", "", ":a", "a:", "a b", "dm:a@b.c/d=e+f", strings.Repeat("x", 201), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		e := ValidateRoom(name)
		if e != nil {
			if e.Code != ErrInvalidRoom || e.Message == "" {
				t.Fatalf("ValidateRoom(%q) = %+v", name, e)
			}
			return
		}
		// A valid name is short, printable ASCII from the allowed set, and
		// survives JSON encoding unchanged (no escaping needed anywhere).
		if name == "" || len(name) > MaxRoomLen || name[0] == ':' || name[len(name)-1] == ':' {
			t.Fatalf("accepted %q", name)
		}
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:@=+/") != "" {
			t.Fatalf("accepted %q with a character outside the set", name)
		}
		if got := string(AppendString(nil, name)); got != `"`+name+`"` {
			t.Fatalf("valid room %q needs escaping: %s", name, got)
		}
		if ns := Namespace(name); ns != "" && !strings.HasPrefix(name, ns+":") {
			t.Fatalf("Namespace(%q) = %q", name, ns)
		}
	})
}

func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"abc-1", "k3j2h1g0-18446744073709551615", "a-0", "-1", "abc-", "ABC-1", "a-b-1", "abc-007", "abc-+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, ok := ParseEventID(id)
		if !ok {
			if p != (StreamPosition{}) {
				t.Fatalf("rejected %q but returned %+v", id, p)
			}
			return
		}
		if p.Epoch == "" || len(p.Epoch) > MaxEpochLen {
			t.Fatalf("accepted %q with epoch %q", id, p.Epoch)
		}
		canon := p.EventID()
		q, ok := ParseEventID(canon)
		if !ok || q != p {
			t.Fatalf("ParseEventID(%q) = %+v; EventID %q parses to %+v, %v", id, p, canon, q, ok)
		}
		if string(p.AppendEventID(nil)) != canon {
			t.Fatalf("AppendEventID differs from EventID")
		}
		// The epoch part of an accepted id is kept exactly; only the
		// offset may be written differently (leading zeros).
		if !strings.HasPrefix(id, p.Epoch+"-") {
			t.Fatalf("epoch %q is not the prefix of %q", p.Epoch, id)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x1f\n\t", "é😀\u2028", "\xff\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString([]byte("{"), s)[1:]
		if !json.Valid(b) {
			t.Fatalf("AppendString(%q) = %q: invalid JSON", s, b)
		}
		if !utf8.Valid(b) {
			t.Fatalf("AppendString(%q) = %q: invalid UTF-8", s, b)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(s) {
			if got != s {
				t.Fatalf("AppendString(%q) decodes to %q", s, got)
			}
			return
		}
		// Invalid UTF-8 decodes as encoding/json would have written it.
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("AppendString(%q) decodes to %q, encoding/json to %q", s, got, want)
		}
		if bytes.Contains(b, []byte{0xff}) {
			t.Fatalf("raw 0xff passed through")
		}
	})
}
