package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateType(t *testing.T) {
	for _, typ := range []string{"message", "chat.msg", "a:b-c_d", strings.Repeat("x", MaxTypeLen)} {
		if e := ValidateType(typ); e != nil {
			t.Errorf("ValidateType(%q) = %v, want nil", typ, e)
		}
	}
	tests := []struct{ typ, want string }{
		{"", "must be 1-64 characters"},
		{strings.Repeat("x", MaxTypeLen+1), "must be 1-64 characters"},
		{"has space", "must be 1-64 characters"},
		{"émoji", "must be 1-64 characters"},
		{TypeSubscribe, "reserved by the protocol"},
		{TypeAck, "reserved by the protocol"},
	}
	for _, tt := range tests {
		e := ValidateType(tt.typ)
		if e == nil || e.Code != ErrBadRequest || !strings.Contains(e.Message, tt.want) {
			t.Errorf("ValidateType(%q) = %v, want bad_request containing %q", tt.typ, e, tt.want)
		}
	}
}

// The payloads' JSON names are the wire protocol: a renamed field would
// break every SDK.
func TestPayloadWireNames(t *testing.T) {
	yes := true
	tests := []struct {
		v    any
		want string
	}{
		{SubscribedData{Members: 2, Position: "e-0", Recovered: &yes, Replayed: 1, ExpiresAt: 5, Data: json.RawMessage(`{}`)},
			`{"members":2,"position":"e-0","recovered":true,"replayed":1,"expires_at":5,"data":{}}`},
		{SubscribedData{Position: "e-0"}, `{"members":0,"position":"e-0"}`},
		{AckData{EventID: "e-1"}, `{"event_id":"e-1"}`},
		{ConnectionEstablished{UserID: "u", ConnectionID: "c", ServerTime: 1, HeartbeatInterval: 2, ProtocolVersion: 1, Node: "n", JSONPing: true},
			`{"user_id":"u","connection_id":"c","server_time":1,"heartbeat_interval_ms":2,"protocol_version":1,"node":"n","json_ping":true}`},
		{RefreshedData{}, `{}`},
		{SessionExpiringData{ExpiresAt: 3}, `{"expires_at":3}`},
		{SubscriptionExpiringData{ExpiresAt: 3}, `{"expires_at":3}`},
		{JoinLeaveData{ConnectionID: "c"}, `{"connection_id":"c"}`},
		{HistoryRequest{}, `{}`},
		{HistoryPage{Events: []json.RawMessage{}}, `{"events":[],"position":"","complete":false,"has_more":false}`},
		{PresenceInfo{Clients: 1, Users: 1, Members: []Member{{UserID: "u", ConnectionID: "c", Info: json.RawMessage(`{"n":1}`)}}},
			`{"clients":1,"users":1,"members":[{"user_id":"u","connection_id":"c","info":{"n":1}}]}`},
		{PresenceInfo{Clients: 2}, `{"clients":2,"users":0}`},
		{RPCRequest{Method: "m"}, `{"method":"m"}`},
		{JSONRPCResponse{JSONRPC: "2.0", ID: json.RawMessage(`1`), Error: &RPCError{Code: RPCTimeout, Message: "x"}},
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"x"}}`},
	}
	for _, tt := range tests {
		if got := string(EncodeData(tt.v)); got != tt.want {
			t.Errorf("%T: %s, want %s", tt.v, got, tt.want)
		}
	}
}
