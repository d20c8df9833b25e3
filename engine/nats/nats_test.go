package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestEngineSuite runs the shared engine contract against NATS with
// JetStream, each subtest under its own prefix (its own streams).
func TestEngineSuite(t *testing.T) {
	testNATSURL(t)
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{})
	})
}

// TestEngineSuiteMemoryStorage runs it again with the streams in memory.
func TestEngineSuiteMemoryStorage(t *testing.T) {
	testNATSURL(t)
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		return newTestEngine(t, Options{MemoryStorage: true})
	})
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // substring of the error; "" = valid
	}{
		{"zero value", Options{}, ""},
		{"core only", Options{CoreOnly: true}, ""},
		{"token", Options{Token: "t"}, ""},
		{"user and password", Options{User: "u", Password: "p"}, ""},
		{"tls with client cert", Options{TLS: true, TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem"}, ""},
		{"prefix with a dot", Options{Prefix: "a.b"}, "Prefix"},
		{"prefix with a wildcard", Options{Prefix: "a*"}, "Prefix"},
		{"prefix with a space", Options{Prefix: "a b"}, "Prefix"},
		{"prefix too long", Options{Prefix: strings.Repeat("a", 65)}, "Prefix"},
		{"presence TTL too short", Options{PresenceTTL: 500 * time.Millisecond}, "minimum"},
		{"negative position TTL", Options{PositionTTL: -time.Second}, "negative"},
		{"negative op timeout", Options{OpTimeout: -time.Second}, "negative"},
		{"too many replicas", Options{Replicas: 6}, "Replicas"},
		{"token and user", Options{Token: "t", User: "u"}, "not both"},
		{"password without user", Options{Password: "p"}, "needs User"},
		{"CA file without TLS", Options{TLSCAFile: "/ca.pem"}, "need TLS"},
		{"cert without key", Options{TLS: true, TLSCertFile: "/c.pem"}, "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				e.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	o := e.opts
	if o.URL != DefaultURL || o.Prefix != DefaultPrefix || o.PresenceTTL != DefaultPresenceTTL ||
		o.PositionTTL != DefaultPositionTTL || o.IdempotencyWindow != DefaultIdempotencyWindow ||
		o.ConnectTimeout != DefaultConnectTimeout || o.OpTimeout != DefaultOpTimeout || o.Replicas != 1 || o.NodeID == "" {
		t.Errorf("defaults not applied: %+v", o)
	}
	if e.histStream != "SWITCHBOARD_switchboard" || e.controlSubj != "switchboard.control" {
		t.Errorf("names: stream %q, control %q", e.histStream, e.controlSubj)
	}
}

func TestMethodsBeforeRunAndAfterClose(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		if _, err := e.Publish(ctx, "r", &engine.Publication{}, engine.PublishOptions{}); err == nil {
			t.Errorf("%s: Publish succeeded", when)
		}
		if _, err := e.History(ctx, "r", engine.HistoryQuery{}, engine.HistoryPolicy{}); err == nil {
			t.Errorf("%s: History succeeded", when)
		}
		if err := e.Subscribe(ctx, "r"); err == nil {
			t.Errorf("%s: Subscribe succeeded", when)
		}
		if err := e.PublishControl(ctx, []byte("x")); err == nil {
			t.Errorf("%s: PublishControl succeeded", when)
		}
		if err := e.AddPresence(ctx, "r", engine.ClientInfo{UserID: "u", ConnectionID: "c"}); err == nil {
			t.Errorf("%s: AddPresence succeeded", when)
		}
		if _, err := e.PresenceStats(ctx, "r"); err == nil {
			t.Errorf("%s: PresenceStats succeeded", when)
		}
		if err := e.Ready(ctx); err == nil {
			t.Errorf("%s: Ready = nil", when)
		}
	}
	check("before Run")
	e.Close()
	check("after Close")
	if err := e.Run(ctx, enginetest.NewRecorder()); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

func TestRunFailsWithoutServer(t *testing.T) {
	e, err := New(Options{URL: "nats://127.0.0.1:" + itoa(freePort(t)), ConnectTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Run(context.Background(), enginetest.NewRecorder()); err == nil {
		t.Fatal("Run succeeded with no server")
	}
}

func TestRunTwice(t *testing.T) {
	e := newTestEngine(t, Options{})
	startEngine(t, e, enginetest.NewRecorder())
	if err := e.Run(context.Background(), enginetest.NewRecorder()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

// TestHostileRoomNames: names with subject syntax ('.', '*', '>', spaces)
// or of any length are rooms of their own: a room named like a wildcard
// receives nothing of the others.
func TestHostileRoomNames(t *testing.T) {
	e := newTestEngine(t, Options{})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx := context.Background()
	rooms := []string{"a.b", "a.*", "a.>", ">", "*", "a b", "a\tb", "", "ü:€", strings.Repeat("x", 300), strings.Repeat("x", 301)}
	for _, r := range rooms {
		mustNoErr(t, e.Subscribe(ctx, r), "subscribe %q", r)
	}
	policy := engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}}
	for i, r := range rooms {
		res, err := e.Publish(ctx, r, &engine.Publication{Type: "m", Data: json.RawMessage(`{"i":` + itoa(i) + `}`)}, policy)
		mustNoErr(t, err, "publish to %q", r)
		if res.Position.Offset != 1 {
			t.Errorf("room %q: first event at offset %d", r, res.Position.Offset)
		}
	}
	for i, r := range rooms {
		waitFor(t, 5*time.Second, "delivery to "+r, func() bool { return rec.Count(r) >= 1 })
		h, err := e.History(ctx, r, engine.HistoryQuery{}, policy.History)
		mustNoErr(t, err, "history of %q", r)
		if len(h.Publications) != 1 || string(h.Publications[0].Data) != `{"i":`+itoa(i)+`}` {
			t.Errorf("room %q: history %+v", r, h.Publications)
		}
	}
	// A barrier per room: anything misrouted would have arrived before it.
	for _, r := range rooms {
		_, err := e.Publish(ctx, r, &engine.Publication{Type: "barrier"}, policy)
		mustNoErr(t, err, "barrier")
	}
	for _, r := range rooms {
		waitFor(t, 5*time.Second, "barrier of "+r, func() bool { return rec.Count(r) >= 2 })
		if got := rec.Get(r); len(got) != 2 || got[1].Type != "barrier" {
			t.Errorf("room %q got %d deliveries, want its own 2", r, len(got))
		}
	}
}

func TestTokens(t *testing.T) {
	names := []string{"", "a", "a.b", "a*", ">", " ", "chat:1", "k", strings.Repeat("z", maxPlainToken), strings.Repeat("z", maxPlainToken+1)}
	seen := map[string]string{}
	for _, n := range names {
		tok := token(n)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Errorf("token(%q) = %q: not one subject token", n, tok)
		}
		if len(tok) > 1+4*(maxPlainToken+2)/3 {
			t.Errorf("token(%q) is %d long", n, len(tok))
		}
		if other, ok := seen[tok]; ok {
			t.Errorf("token(%q) = token(%q) = %q", n, other, tok)
		}
		seen[tok] = n
	}
	if token(strings.Repeat("y", 10000))[0] != 'h' {
		t.Error("a long name is not hashed")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pub   engine.Publication
		pos   protocol.StreamPosition
		claim string
	}{
		{"full", engine.Publication{Type: "message", Data: json.RawMessage(`{"a":1}`), UserID: "u", ClientID: "c", Time: 1700000000000}, protocol.StreamPosition{Offset: 7, Epoch: "abc"}, ""},
		{"claim", engine.Publication{Type: "m", Time: 1}, protocol.StreamPosition{Offset: 1, Epoch: "e"}, "claim-1"},
		{"ephemeral", engine.Publication{Type: "user_joined", Ephemeral: true, Data: json.RawMessage(`{}`), Time: 5}, protocol.StreamPosition{}, ""},
		{"no data", engine.Publication{Type: "m", Time: 2}, protocol.StreamPosition{Offset: 1 << 40, Epoch: strings.Repeat("z", protocol.MaxEpochLen)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := decodeRecord(encodePublication(&tt.pub, tt.pos, tt.claim))
			if err != nil {
				t.Fatal(err)
			}
			p := rec.pub
			if p.Type != tt.pub.Type || string(p.Data) != string(tt.pub.Data) || p.UserID != tt.pub.UserID ||
				p.ClientID != tt.pub.ClientID || p.Time != tt.pub.Time || p.Ephemeral != tt.pub.Ephemeral ||
				p.Position != tt.pos || rec.claim != tt.claim || rec.marker {
				t.Errorf("round trip: got %+v claim %q, want %+v at %+v claim %q", p, rec.claim, tt.pub, tt.pos, tt.claim)
			}
		})
	}
	rec, err := decodeRecord(encodeMarker("ep", 3))
	if err != nil || !rec.marker || rec.pub.Position != (protocol.StreamPosition{Epoch: "ep"}) {
		t.Errorf("marker: %+v, %v", rec, err)
	}
}

func TestCodecRejectsMalformed(t *testing.T) {
	good := encodePublication(&engine.Publication{Type: "m", UserID: "u"}, protocol.StreamPosition{Offset: 1, Epoch: "e"}, "")
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one byte", []byte{formatV1}},
		{"wrong format", append([]byte{'X'}, good[1:]...)},
		{"truncated", good[:5]},
		{"stream event without offset", encodePublication(&engine.Publication{Type: "m"}, protocol.StreamPosition{Epoch: "e"}, "")},
		{"stream event without epoch", encodePublication(&engine.Publication{Type: "m"}, protocol.StreamPosition{Offset: 1}, "")},
		{"epoch too long", encodePublication(&engine.Publication{Type: "m"}, protocol.StreamPosition{Offset: 1, Epoch: strings.Repeat("a", protocol.MaxEpochLen+1)}, "")},
		{"marker with offset", func() []byte { b := encodeMarker("e", 1); b[2] = 5; return b }()},
		{"claim flag without claim", []byte{formatV1, flagClaim, 1, 1, 1, 'e', 0, 0, 0}},
		{"length beyond end", []byte{formatV1, 0, 1, 1, 9, 'e'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(tt.b); err == nil {
				t.Errorf("decodeRecord(%q) accepted it", tt.b)
			}
		})
	}
}

func TestAckStreamSeq(t *testing.T) {
	tests := []struct {
		reply string
		seq   uint64
		ok    bool
	}{
		{"$JS.ACK.S.C.1.42.7.1700000000.0", 42, true},
		{"$JS.ACK.dom.hash.S.C.1.43.7.1700000000.0.rand", 43, true},
		{"$JS.ACK.S.C.1.x.7.1.0", 0, false},
		{"_INBOX.abc", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		seq, ok := ackStreamSeq(tt.reply)
		if seq != tt.seq || ok != tt.ok {
			t.Errorf("ackStreamSeq(%q) = %d, %v; want %d, %v", tt.reply, seq, ok, tt.seq, tt.ok)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
