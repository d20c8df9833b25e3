package protocol

import (
	"strings"
	"testing"
)

func TestValidateRoom(t *testing.T) {
	tests := []struct {
		name    string
		room    string
		wantErr string // substring of the message; "" means valid
	}{
		{"simple", "lobby", ""},
		{"namespaced", "chat:lobby", ""},
		{"every allowed class", "aZ09_-.:@=+/x", ""},
		{"user room", "user:42", ""},
		{"email-ish", "dm:alice@example.com", ""},
		{"max length", strings.Repeat("r", MaxRoomLen), ""},
		{"double colon inside", "a::b", ""},
		{"single char", "a", ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("r", MaxRoomLen+1), "longer than 200"},
		{"space", "chat lobby", "at byte 4"},
		{"unicode", "chät", "at byte 2"},
		{"quote", `a"b`, "at byte 1"},
		{"star", "chat:*", "at byte 5"},
		{"hash", "#general", "at byte 0"},
		{"newline", "a\n", "at byte 1"},
		{"nul", "a\x00", "at byte 1"},
		{"invalid utf8", "a\xff", "at byte 1"},
		{"leading colon", ":lobby", "start or end"},
		{"trailing colon", "chat:", "start or end"},
		{"only colon", ":", "start or end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ValidateRoom(tt.room)
			if tt.wantErr == "" {
				if e != nil {
					t.Fatalf("ValidateRoom(%q) = %v, want nil", tt.room, e)
				}
				return
			}
			if e == nil {
				t.Fatalf("ValidateRoom(%q) = nil, want error containing %q", tt.room, tt.wantErr)
			}
			if e.Code != ErrInvalidRoom {
				t.Errorf("code = %q, want %q", e.Code, ErrInvalidRoom)
			}
			if !strings.Contains(e.Message, tt.wantErr) {
				t.Errorf("message %q does not contain %q", e.Message, tt.wantErr)
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	tests := []struct{ room, want string }{
		{"chat:lobby", "chat"},
		{"chat:a:b", "chat"},
		{"lobby", ""},
		{":x", ""}, // invalid anyway; no empty-named namespace
		{"", ""},
		{"a:", "a"},
	}
	for _, tt := range tests {
		if got := Namespace(tt.room); got != tt.want {
			t.Errorf("Namespace(%q) = %q, want %q", tt.room, got, tt.want)
		}
	}
}
