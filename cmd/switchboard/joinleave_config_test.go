package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
)

// TestJoinLeaveRateConfig: join_leave_rate from the file, env and flag,
// in that order of precedence, reaching server.Config; its default is the
// hub's.
func TestJoinLeaveRateConfig(t *testing.T) {
	file := writeFile(t, "join_leave_rate: 5\n")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want int
	}{
		"default":          {nil, nil, 20},
		"file":             {[]string{"--config", file}, nil, 5},
		"env beats file":   {[]string{"--config", file}, map[string]string{"SWITCHBOARD_JOIN_LEAVE_RATE": "7"}, 7},
		"flag beats env":   {[]string{"--config", file, "--join-leave-rate", "-1"}, map[string]string{"SWITCHBOARD_JOIN_LEAVE_RATE": "7"}, -1},
		"flag, large rate": {[]string{"--join-leave-rate", "500"}, nil, 500},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := loadConfig("serve", tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Hub.JoinLeaveRate != tc.want {
				t.Errorf("JoinLeaveRate = %d, want %d", o.cfg.Hub.JoinLeaveRate, tc.want)
			}
		})
	}
}

// TestJoinLeaveRateRefused: 0 (which would quietly mean the default) and
// values that are not integers stop the node with a message naming the
// setting.
func TestJoinLeaveRateRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		file string
		want string
	}{
		"flag 0":      {args: []string{"--join-leave-rate", "0"}, want: "--join-leave-rate"},
		"env 0":       {env: map[string]string{"SWITCHBOARD_JOIN_LEAVE_RATE": "0"}, want: "SWITCHBOARD_JOIN_LEAVE_RATE"},
		"file 0":      {file: "join_leave_rate: 0\n", want: "join_leave_rate"},
		"file string": {file: "join_leave_rate: lots\n", want: "join_leave_rate"},
		"env float":   {env: map[string]string{"SWITCHBOARD_JOIN_LEAVE_RATE": "2.5"}, want: "SWITCHBOARD_JOIN_LEAVE_RATE"},
	} {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, tc.file))
			}
			_, err := loadConfig("serve", args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := configCmd([]string{"check", writeFile(t, "join_leave_rate: 0\n")}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "join_leave_rate") {
		t.Errorf("config check exited %d: %s", code, errb.String())
	}
}

// TestJoinLeaveWindowConfig: join_leave_window reaches the hub's options
// from the file, env and flag; its default is the hub's, and 0 or less
// (which would quietly mean the default) is refused, naming the setting.
func TestJoinLeaveWindowConfig(t *testing.T) {
	file := writeFile(t, "join_leave_window: 3s\n")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		"default":        {nil, nil, hub.DefaultJoinLeaveWindow},
		"file":           {[]string{"--config", file}, nil, 3 * time.Second},
		"env beats file": {[]string{"--config", file}, map[string]string{"SWITCHBOARD_JOIN_LEAVE_WINDOW": "500ms"}, 500 * time.Millisecond},
		"flag beats env": {[]string{"--join-leave-window", "2s"}, map[string]string{"SWITCHBOARD_JOIN_LEAVE_WINDOW": "500ms"}, 2 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := loadConfig("serve", tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Hub.JoinLeaveWindow != tc.want {
				t.Errorf("JoinLeaveWindow = %s, want %s", o.cfg.Hub.JoinLeaveWindow, tc.want)
			}
		})
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"flag 0":        {args: []string{"--join-leave-window", "0"}, want: "--join-leave-window"},
		"env negative":  {env: map[string]string{"SWITCHBOARD_JOIN_LEAVE_WINDOW": "-1s"}, want: "SWITCHBOARD_JOIN_LEAVE_WINDOW"},
		"file not time": {args: []string{"--config", writeFile(t, "join_leave_window: soon\n")}, want: "join_leave_window"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig("serve", tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestHistoryConfig: --history-size maps to the hub's history policy as
// it did when server.Config had HistorySize: -1 turns history off, 0
// keeps the default size.
func TestHistoryConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want engine.HistoryPolicy
		off  bool
	}{
		"default":       {nil, engine.HistoryPolicy{Size: 100, TTL: 5 * time.Minute}, false},
		"size and ttl":  {[]string{"--history-size", "7", "--history-ttl", "1m"}, engine.HistoryPolicy{Size: 7, TTL: time.Minute}, false},
		"no ttl":        {[]string{"--history-ttl", "0"}, engine.HistoryPolicy{Size: 100}, false},
		"off":           {[]string{"--history-size", "-1"}, engine.HistoryPolicy{}, true},
		"size 0, ttl":   {[]string{"--history-size", "0", "--history-ttl", "1m"}, engine.HistoryPolicy{Size: 100, TTL: time.Minute}, false},
		"size 0, ttl 0": {[]string{"--history-size", "0", "--history-ttl", "0"}, engine.HistoryPolicy{}, false},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := loadConfig("serve", tc.args, func(string) string { return "" }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Hub.History != tc.want || o.cfg.Hub.NoHistory != tc.off {
				t.Errorf("history %+v off %v, want %+v off %v", o.cfg.Hub.History, o.cfg.Hub.NoHistory, tc.want, tc.off)
			}
		})
	}
}
