package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// TestConfigDocsUpToDate fails when a flag changes without
// docs/configuration.md being regenerated with "switchboard config docs".
func TestConfigDocsUpToDate(t *testing.T) {
	var out bytes.Buffer
	if code := configCmd([]string{"docs"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("config docs exited %d", code)
	}
	want, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("docs/configuration.md: %v", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("docs/configuration.md is stale: run `go run ./cmd/switchboard config docs > docs/configuration.md`")
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `
listen: 127.0.0.1:1111
heartbeat_interval: 20s
pong_timeout: 7s
history_size: 10
allowed_origins: [a.example, "*.b.example"]
namespaces:
  user:
    subscribe: owner
    publish: server
  chat:
    history_size: 0
    presence: false
`)
	env := map[string]string{
		"SWITCHBOARD_HEARTBEAT_INTERVAL": "30s",
		"SWITCHBOARD_POND_TIMEOUT":       "ignored: not a key we read",
		"SWITCHBOARD_HISTORY_SIZE":       "20",
	}
	o, err := loadConfig("serve", []string{"--config", file, "--history-size", "30"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Listen != "127.0.0.1:1111" {
		t.Errorf("file value: listen = %q", c.Listen)
	}
	if c.Transport.HeartbeatInterval != 30*time.Second {
		t.Errorf("env beats file: heartbeat = %s", c.Transport.HeartbeatInterval)
	}
	if c.Transport.PongTimeout != 7*time.Second {
		t.Errorf("file value: pong timeout = %s", c.Transport.PongTimeout)
	}
	if c.Hub.History.Size != 30 {
		t.Errorf("flag beats env and file: history size = %d", c.Hub.History.Size)
	}
	if strings.Join(c.Transport.AllowedOrigins, ",") != "a.example,*.b.example" {
		t.Errorf("list from file: %v", c.Transport.AllowedOrigins)
	}
	u := c.Hub.Namespaces["user"]
	if u.Permissions.Subscribe != hub.PermOwner || u.Permissions.Publish != hub.PermServer {
		t.Errorf("user namespace = %+v", u)
	}
	ch := c.Hub.Namespaces["chat"]
	if ch.History == nil || ch.History.Size != 0 || !ch.NoPresence {
		t.Errorf("chat namespace = %+v", ch)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"unknown key", "heartbeat_intervall: 5s\n", nil, `unknown key "heartbeat_intervall"`},
		{"dash key", "heartbeat-interval: 5s\n", nil, `unknown key "heartbeat-interval"`},
		{"bad type", "max_connections: lots\n", nil, "max_connections"},
		{"bad duration", "pong_timeout: 10\n", nil, "pong_timeout"},
		{"unknown namespace setting", "namespaces:\n  chat:\n    histroy_size: 3\n", nil, "histroy_size"},
		{"not a mapping", "- a\n- b\n", nil, "top level must be a mapping"},
		{"nested value", "listen: {a: b}\n", nil, "listen must be a value or a list"},
		{"bad env", "", map[string]string{"SWITCHBOARD_MAX_CONNECTIONS": "many"}, "SWITCHBOARD_MAX_CONNECTIONS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{}
			if tt.file != "" {
				args = []string{"--config", writeFile(t, tt.file)}
			}
			_, err := loadConfig("serve", args, func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "listen: 127.0.0.1:0\njwt_secret: 0123456789abcdef0123456789abcdef-check\napi_key: k3y-k3y-k3y-k3y-k3y\n")
	var out, errb bytes.Buffer
	if code := configCmd([]string{"check", good}, &out, &errb); code != 0 {
		t.Fatalf("check of a good file exited %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "0123456789abcdef") || strings.Contains(out.String(), "k3y-k3y") {
		t.Errorf("secrets printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `jwt_secret: "********"`) {
		t.Errorf("secret not shown masked:\n%s", out.String())
	}
	// Semantic checks run too: a pong timeout above the interval.
	bad := writeFile(t, "heartbeat_interval: 10s\npong_timeout: 20s\n")
	out.Reset()
	errb.Reset()
	if code := configCmd([]string{"check", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "pong timeout") {
		t.Errorf("bad file: exit %d, stderr %q", code, errb.String())
	}
	if code := configCmd([]string{"check", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &errb); code != 2 {
		t.Errorf("missing file: exit %d", code)
	}
}
