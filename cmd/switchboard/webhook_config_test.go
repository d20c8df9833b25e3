package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWebhookAndProxyConfig(t *testing.T) {
	file := writeFile(t, `
webhook_url: [http://127.0.0.1:9/a, https://hooks.example/b]
webhook_secret: [old-secret, new-secret]
webhook_publications: [chat, ""]
webhook_timeout: 2s
subscribe_proxy_url: http://127.0.0.1:9/sub
namespaces:
  game:
    subscribe_proxy: http://127.0.0.1:9/game-sub
    publish_proxy: "off"
`)
	env := map[string]string{"SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS": "3", "SWITCHBOARD_PROXY_TIMEOUT": "750ms"}
	o, err := loadConfig("serve", []string{"--config", file}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	w := o.cfg.Webhook
	if strings.Join(w.URLs, " ") != "http://127.0.0.1:9/a https://hooks.example/b" || strings.Join(w.Secrets, " ") != "old-secret new-secret" {
		t.Errorf("webhook URLs %v, secrets %v", w.URLs, w.Secrets)
	}
	if w.Timeout != 2*time.Second || w.MaxAttempts != 3 || o.cfg.ProxyTimeout != 750*time.Millisecond {
		t.Errorf("timeout %s, attempts %d, proxy timeout %s", w.Timeout, w.MaxAttempts, o.cfg.ProxyTimeout)
	}
	if strings.Join(w.PublicationNamespaces, ",") != "chat" { // the list flag drops empty items
		t.Errorf("publication namespaces %q", w.PublicationNamespaces)
	}
	if p := o.cfg.NamespaceProxies["game"]; p.Subscribe != "http://127.0.0.1:9/game-sub" || p.Publish != "off" {
		t.Errorf("game proxies = %+v", p)
	}
	var out bytes.Buffer
	printEffective(&out, o)
	if strings.Contains(out.String(), "new-secret") || !strings.Contains(out.String(), `webhook_secret: "********"`) {
		t.Errorf("webhook secret not masked:\n%s", out.String())
	}
}

// Bad webhook or proxy settings stop "config check" (and serve) with a
// message that names the problem.
func TestWebhookConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ file, want string }{
		"missing secret":  {"webhook_url: http://127.0.0.1:9/a\n", "secret is required"},
		"secret, no URL":  {"webhook_secret: s\n", "no URL"},
		"bad URL":         {"webhook_url: 127.0.0.1:9/a\nwebhook_secret: s\n", "not an http(s) URL"},
		"unknown event":   {"webhook_url: http://127.0.0.1:9/a\nwebhook_secret: s\nwebhook_events: [user.joined]\n", `unknown event type "user.joined"`},
		"bad proxy URL":   {"publish_proxy_url: ftp://x/y\n", "publish proxy URL"},
		"bad ns proxy":    {"namespaces:\n  game:\n    subscribe_proxy: nope\n", `namespace "game"`},
		"unknown ns  key": {"namespaces:\n  game:\n    subscribe_proxy_url: http://x/y\n", "subscribe_proxy_url"},
	} {
		var out, errb bytes.Buffer
		if code := configCmd([]string{"check", writeFile(t, tc.file)}, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want 2 and %q", name, code, errb.String(), tc.want)
		}
	}
}
