package main

import (
	"bytes"
	"strings"
	"testing"
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
			if o.cfg.JoinLeaveRate != tc.want {
				t.Errorf("JoinLeaveRate = %d, want %d", o.cfg.JoinLeaveRate, tc.want)
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
