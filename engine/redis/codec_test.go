package redis

import (
	"bytes"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

// header is what the publish script puts before the body.
func header(off, ms, epoch string) string { return "S" + off + " " + ms + " " + epoch + " " }

func TestCodecRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 300) // lengths above 127 take two varint bytes
	tests := []struct {
		name string
		pub  engine.Publication
	}{
		{"full", engine.Publication{Type: "message", Data: []byte(`{"a":"b c"}`), UserID: "u 1", ClientID: "c1"}},
		{"empty", engine.Publication{}},
		{"no data", engine.Publication{Type: "t", UserID: "u"}},
		{"long fields", engine.Publication{Type: long, UserID: long, ClientID: long, Data: []byte(`"` + long + `"`)}},
		{"binary-looking data", engine.Publication{Type: "x", Data: []byte("S1 2 3 \x00\xff")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := header("42", "1700000000123", "ab12") + string(appendBody(nil, &tt.pub))
			got, err := decodePublication(payload)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := tt.pub
			want.Time = 1700000000123
			want.Position = protocol.StreamPosition{Offset: 42, Epoch: "ab12"}
			checkPub(t, got, &want)

			eph := tt.pub
			eph.Ephemeral, eph.Time = true, 99
			got, err = decodePublication(encodeEphemeral(&eph))
			if err != nil {
				t.Fatalf("decode ephemeral: %v", err)
			}
			checkPub(t, got, &eph)
		})
	}
}

func checkPub(t *testing.T, got, want *engine.Publication) {
	t.Helper()
	if got.Type != want.Type || got.UserID != want.UserID || got.ClientID != want.ClientID ||
		!bytes.Equal(got.Data, want.Data) || got.Time != want.Time || got.Position != want.Position || got.Ephemeral != want.Ephemeral {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if len(want.Data) == 0 && got.Data != nil {
		t.Errorf("empty data decoded as %q, want nil", got.Data)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	body := string(appendBody(nil, &engine.Publication{Type: "m", UserID: "u"}))
	tests := []struct{ name, payload string }{
		{"empty", ""},
		{"other format", "X1 2 e " + body},
		{"no fields", "S"},
		{"missing epoch separator", "S1 2"},
		{"bad offset", header("x", "2", "e") + body},
		{"negative offset", header("-1", "2", "e") + body},
		{"bad time", header("1", "t", "e") + body},
		{"epoch too long", header("1", "2", strings.Repeat("a", protocol.MaxEpochLen+1)) + body},
		{"no body", header("1", "2", "e")},
		{"truncated string", header("1", "2", "e") + "\x00\x05ab"},
		{"varint overflow", header("1", "2", "e") + "\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"},
		{"stream event without offset", header("0", "2", "e") + body},
		{"stream event without epoch", header("3", "2", "") + body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if pub, err := decodePublication(tt.payload); err == nil {
				t.Errorf("decoded %q as %+v, want an error", tt.payload, pub)
			}
		})
	}
}

func TestParsePosition(t *testing.T) {
	tests := []struct {
		in   string
		want protocol.StreamPosition
		ok   bool
	}{
		{"ab 12", protocol.StreamPosition{Offset: 12, Epoch: "ab"}, true},
		{"ab", protocol.StreamPosition{}, false},
		{" 12", protocol.StreamPosition{}, false},
		{"ab x", protocol.StreamPosition{}, false},
		{"", protocol.StreamPosition{}, false},
	}
	for _, tt := range tests {
		got, ok := parsePosition(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parsePosition(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzDecodePublication(f *testing.F) {
	f.Add(header("1", "2", "e") + string(appendBody(nil, &engine.Publication{Type: "m", Data: []byte("{}")})))
	f.Add(encodeEphemeral(&engine.Publication{Type: "user_joined", Ephemeral: true}))
	f.Add("S")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := decodePublication(s)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip through the body.
		again, err := decodePublication(header("1", "2", "e") + string(appendBody(nil, pub)))
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", pub, err)
		}
		if again.Type != pub.Type || again.UserID != pub.UserID || again.ClientID != pub.ClientID || !bytes.Equal(again.Data, pub.Data) {
			t.Fatalf("round trip changed %+v into %+v", pub, again)
		}
	})
}
