package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCloseCodesTable(t *testing.T) {
	codes := CloseCodes()
	if len(codes) == 0 {
		t.Fatal("empty close-code table")
	}
	names := map[string]bool{}
	for i, ci := range codes {
		if i > 0 && ci.Code <= codes[i-1].Code {
			t.Errorf("row %d: code %d not above %d: table must ascend", i, ci.Code, codes[i-1].Code)
		}
		switch ci.Code {
		case 1005, 1006, 1015:
			t.Errorf("code %d must never be sent by an endpoint (RFC 6455 7.4.1)", ci.Code)
		}
		if ci.Code < 1000 || ci.Code >= 5000 || (ci.Code >= 1016 && ci.Code < 3000) {
			t.Errorf("code %d is outside the ranges a server may send", ci.Code)
		}
		if ci.Name == "" || strings.ToLower(ci.Name) != ci.Name || strings.ContainsAny(ci.Name, " -") {
			t.Errorf("code %d: name %q must be non-empty snake_case", ci.Code, ci.Name)
		}
		if names[ci.Name] {
			t.Errorf("name %q used twice", ci.Name)
		}
		names[ci.Name] = true
		if ci.Meaning == "" {
			t.Errorf("code %d has no meaning", ci.Code)
		}
		if ci.Code.Reconnect() != ci.Reconnect {
			t.Errorf("code %d: Reconnect() = %v, table says %v", ci.Code, ci.Code.Reconnect(), ci.Reconnect)
		}
		if ci.Code.String() != ci.Name {
			t.Errorf("code %d: String() = %q, want %q", ci.Code, ci.Code.String(), ci.Name)
		}
		info, ok := ci.Code.Info()
		if !ok || info != ci {
			t.Errorf("code %d: Info() = %+v, %v", ci.Code, info, ok)
		}
	}
}

func TestCloseCodesConstants(t *testing.T) {
	// Every named constant is in the table with the number the docs promise.
	want := map[CloseCode]uint16{
		CloseNormal: 1000, CloseGoingAway: 1001, CloseProtocolError: 1002, CloseUnsupportedData: 1003,
		CloseInvalidPayload: 1007, ClosePolicyViolation: 1008, CloseMessageTooBig: 1009, CloseInternalError: 1011,
		CloseServiceRestart: 1012, CloseTryAgainLater: 1013, CloseSessionExpired: 4000, CloseUnauthorized: 4001,
		CloseForbidden: 4003, CloseBanned: 4004, CloseSlowConsumer: 4005, CloseKicked: 4006, CloseHeartbeatTimeout: 4008,
	}
	for c, n := range want {
		if uint16(c) != n {
			t.Errorf("constant %s = %d, want %d", c, c, n)
		}
		if _, ok := c.Info(); !ok {
			t.Errorf("constant %d missing from the table", c)
		}
	}
	if len(CloseCodes()) != len(want) {
		t.Errorf("table has %d rows, %d constants", len(CloseCodes()), len(want))
	}
}

func TestCloseCodesReturnsCopy(t *testing.T) {
	a := CloseCodes()
	a[0].Name = "changed"
	if CloseCodes()[0].Name == "changed" {
		t.Fatal("CloseCodes exposes the table itself")
	}
}

func TestReconnectAdvice(t *testing.T) {
	tests := []struct {
		code CloseCode
		want bool
	}{
		{CloseNormal, false},
		{CloseGoingAway, false},
		{CloseProtocolError, false},
		{ClosePolicyViolation, false},
		{CloseMessageTooBig, false},
		{CloseInternalError, true},
		{CloseServiceRestart, true},
		{CloseTryAgainLater, true},
		{CloseSessionExpired, true},
		{CloseUnauthorized, false},
		{CloseBanned, false},
		{CloseSlowConsumer, true},
		{CloseKicked, false},
		{CloseHeartbeatTimeout, true},
		{1006, true},  // abnormal closure (network): transient
		{1014, true},  // unknown 1xxx: transient
		{2999, true},  // last of the protocol's range
		{3000, false}, // libraries' range: a decision, not retried
		{3999, false},
		{4999, false}, // unknown application code: not retried
		{4002, false},
	}
	for _, tt := range tests {
		if got := tt.code.Reconnect(); got != tt.want {
			t.Errorf("%d.Reconnect() = %v, want %v", tt.code, got, tt.want)
		}
	}
	if _, ok := CloseCode(1006).Info(); ok {
		t.Error("1006 has a table row")
	}
	if CloseCode(4999).String() != "4999" {
		t.Errorf("unknown code String() = %q", CloseCode(4999).String())
	}
}

func TestNewDisconnect(t *testing.T) {
	d := NewDisconnect(CloseSlowConsumer, "")
	if d.Code != CloseSlowConsumer || d.Reason != "slow_consumer" || !d.Reconnect {
		t.Errorf("NewDisconnect(4005, \"\") = %+v", d)
	}
	d = NewDisconnect(CloseKicked, "bye")
	if d.Reason != "bye" || d.Reconnect {
		t.Errorf("NewDisconnect(4006, bye) = %+v", d)
	}
	if d.Error() != "switchboard: disconnect 4006 (bye)" {
		t.Errorf("Error() = %q", d.Error())
	}
	b, _ := json.Marshal(d)
	if string(b) != `{"code":4006,"reason":"bye","reconnect":false}` {
		t.Errorf("JSON = %s", b)
	}
	if d := NewDisconnect(4999, ""); d.Reason != "4999" || d.Reconnect {
		t.Errorf("unknown code: %+v", d)
	}
}

func TestNewDisconnectTruncates(t *testing.T) {
	tests := []struct {
		name    string
		reason  string
		wantLen int
	}{
		{"short", "x", 1},
		{"exactly 123", strings.Repeat("a", 123), 123},
		{"124 ascii", strings.Repeat("a", 124), 123},
		{"long ascii", strings.Repeat("a", 1000), 123},
		// 61 two-byte runes = 122 bytes; a 62nd would end at 124.
		{"two-byte runes", strings.Repeat("é", 100), 122},
		// 41 three-byte runes = 123 bytes exactly.
		{"three-byte runes", strings.Repeat("中", 50), 123},
		// 30 four-byte runes = 120; the 31st would end at 124.
		{"four-byte runes", strings.Repeat("😀", 40), 120},
		{"rune straddling the limit", strings.Repeat("a", 122) + "😀", 122},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDisconnect(CloseKicked, tt.reason)
			if len(d.Reason) != tt.wantLen {
				t.Errorf("len(reason) = %d, want %d", len(d.Reason), tt.wantLen)
			}
			if !utf8.ValidString(d.Reason) {
				t.Errorf("reason %q is not valid UTF-8: a rune was split", d.Reason)
			}
			if !strings.HasPrefix(tt.reason, d.Reason) {
				t.Errorf("reason is not a prefix of the input")
			}
		})
	}
}
