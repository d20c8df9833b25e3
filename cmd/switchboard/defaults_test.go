package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
)

// zeroMeans are the flags whose default is a zero value that the server
// turns into something computed at start, as their help text says.
var zeroMeans = map[string]string{
	"max-connections": "0: open-file limit minus a reserve",
	"node-id":         "(default: random)",
}

// TestFlagDefaultsAreApplied checks, for every serve flag, that the default
// the flag states (and so docs/configuration.md and `config check`) is the
// value the node actually runs with: a flag whose default is 0 while the
// server quietly uses something else fails here.
func TestFlagDefaultsAreApplied(t *testing.T) {
	o, err := loadConfig("serve", nil, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Bind a second flag set to a copy of the effective configuration: its
	// values then print what the server will use.
	var eff options
	fs := serveFlags(&eff)
	eff.cfg = srv.Config()
	eff.logLevel, eff.logFormat = o.logLevel, o.logFormat
	eff.historySize = eff.cfg.Hub.History.Size
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if hint, ok := zeroMeans[f.Name]; ok {
			if !strings.Contains(f.Usage, hint) {
				t.Errorf("--%s: the help text should say what its default means (%q): %q", f.Name, hint, f.Usage)
			}
			return
		}
		if got := f.Value.String(); got != f.DefValue {
			t.Errorf("--%s: documented default %q, but the server runs with %q", f.Name, f.DefValue, got)
		}
	})
	if n < 60 {
		t.Fatalf("visited only %d flags", n)
	}
	// The defaults that docs/protocol.md and docs/api.md promise.
	want := engine.HistoryPolicy{Size: hub.DefaultHistorySize, TTL: hub.DefaultHistoryTTL}
	if got := srv.Hub.DefaultHistory(); got != want {
		t.Errorf("history policy applied with no flags = %+v, want %+v", got, want)
	}
	for name, def := range map[string]string{"history-size": "100", "history-ttl": "5m0s", "drain-timeout": "10s"} {
		if got := fs.Lookup(name).DefValue; got != def {
			t.Errorf("--%s default %q, the docs promise %q", name, got, def)
		}
	}
}

// TestConfigCheckPrintsRealDefaults runs `config check` on an empty file:
// it must print the defaults the node applies, not zeros.
func TestConfigCheckPrintsRealDefaults(t *testing.T) {
	var out, errb bytes.Buffer
	if code := configCmd([]string{"check", writeFile(t, "")}, &out, &errb); code != 0 {
		t.Fatalf("config check exited %d: %s", code, errb.String())
	}
	for _, line := range []string{`history_ttl: "5m0s"`, `history_size: "100"`, `drain_timeout: "10s"`} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("config check output lacks %s:\n%s", line, out.String())
		}
	}
}
