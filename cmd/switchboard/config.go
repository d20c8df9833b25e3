package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
)

// The configuration has one definition: the serve flags. Each flag is also
// an environment variable (SWITCHBOARD_ + upper-case name, '-' as '_') and
// a key of the YAML file (the name with '-' as '_'). Sources apply in the
// order file < env < flags; docs/configuration.md is generated from the
// same definitions ("switchboard config docs") and checked by a test.

// secretKeys are masked when the effective configuration is printed.
var secretKeys = map[string]bool{"jwt-secret": true, "api-key": true, "redis-password": true, "nats-password": true, "nats-token": true, "webhook-secret": true}

// options is everything serve needs: server.Config and what maps to it
// after all sources are read.
type options struct {
	cfg server.Config
	// historySize is --history-size, which sets cfg.Hub.History.Size or
	// (-1) cfg.Hub.NoHistory; see setHistory.
	historySize int
	logLevel    string
	logFormat   string
	configFile  string
	fs          *flag.FlagSet
}

// loadConfig builds the configuration from args, the environment and the
// file named by --config (or SWITCHBOARD_CONFIG). Errors name the flag,
// variable or key at fault.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := serveFlags(o)
	fs.StringVar(&o.configFile, "config", "", "YAML configuration file (keys are these flags' names with '_' for '-'; see docs/configuration.md)")
	fs.SetOutput(stderr)
	fs.Init(name, flag.ContinueOnError)
	o.fs = fs
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	fs.VisitAll(func(f *flag.Flag) {
		if getenv(envName(f.Name)) != "" {
			set[f.Name] = true
		}
	})
	if o.configFile != "" {
		if err := applyFile(fs, &o.cfg, o.configFile, set); err != nil {
			return nil, err
		}
	}
	// 0 would quietly mean the hub's default: refuse it rather than guess.
	if o.cfg.Hub.JoinLeaveRate == 0 {
		return nil, errors.New("--join-leave-rate (join_leave_rate, SWITCHBOARD_JOIN_LEAVE_RATE) is 0: give announcements per second per room, or -1 for no limit")
	}
	if o.cfg.Hub.JoinLeaveWindow <= 0 {
		return nil, fmt.Errorf("--join-leave-window (join_leave_window, SWITCHBOARD_JOIN_LEAVE_WINDOW) is %s: give how long held announcements wait, like 1s", o.cfg.Hub.JoinLeaveWindow)
	}
	o.setHistory()
	return o, nil
}

// setHistory sets the hub's history policy from --history-size and
// --history-ttl (already in cfg.Hub.History.TTL): -1 turns history off,
// and 0 keeps hub.DefaultHistorySize events (with a TTL of 0, the hub's
// default TTL too), as it did when server.Config had these two settings.
func (o *options) setHistory() {
	h := &o.cfg.Hub
	switch {
	case o.historySize < 0:
		h.NoHistory, h.History = true, engine.HistoryPolicy{}
	case o.historySize == 0 && h.History.TTL == 0:
		h.History = engine.HistoryPolicy{} // the hub's defaults
	case o.historySize == 0:
		h.History.Size = hub.DefaultHistorySize
	default:
		h.History.Size = o.historySize
	}
}

func envName(flagName string) string {
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func keyName(flagName string) string { return strings.ReplaceAll(flagName, "-", "_") }

// applyFile sets, from the YAML file, every flag not already set by a flag
// or the environment, and reads the namespaces section.
func applyFile(fs *flag.FlagSet, cfg *server.Config, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: the top level must be a mapping of keys to values", path)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		if key == "namespaces" {
			ns, proxies, err := decodeNamespaces(val)
			if err != nil {
				return fmt.Errorf("config file %s: namespaces: %w", path, err)
			}
			cfg.Hub.Namespaces, cfg.NamespaceProxies = ns, proxies
			continue
		}
		name := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" || strings.Contains(key, "-") {
			return fmt.Errorf("config file %s, line %d: unknown key %q (see docs/configuration.md)", path, root.Content[i].Line, key)
		}
		var value string
		switch val.Kind {
		case yaml.ScalarNode:
			value = val.Value
		case yaml.SequenceNode:
			var items []string
			for _, it := range val.Content {
				if it.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file %s, line %d: %s: list items must be plain values", path, it.Line, key)
				}
				items = append(items, it.Value)
			}
			value = strings.Join(items, ",")
		default:
			return fmt.Errorf("config file %s, line %d: %s must be a value or a list", path, val.Line, key)
		}
		if set[name] {
			continue // a flag or the environment wins
		}
		if err := f.Value.Set(value); err != nil {
			return fmt.Errorf("config file %s, line %d: %s: %q: %w", path, val.Line, key, value, err)
		}
	}
	return nil
}

// namespaceConfig is one entry of the namespaces section.
type namespaceConfig struct {
	// HistorySize is the events kept per room; 0 turns history off.
	HistorySize *int `yaml:"history_size"`
	// HistoryTTL is how long events are kept ("5m").
	HistoryTTL string `yaml:"history_ttl"`
	// Presence and JoinLeave turn presence and join/leave events on or off.
	Presence  *bool `yaml:"presence"`
	JoinLeave *bool `yaml:"join_leave"`
	// Private rooms need a subscription token.
	Private bool `yaml:"private"`
	// Permissions: anyone, authenticated, token, owner or server.
	Subscribe       string `yaml:"subscribe"`
	Publish         string `yaml:"publish"`
	PresenceAllowed string `yaml:"presence_permission"`
	History         string `yaml:"history"`
	// SubscribeProxy and PublishProxy override --subscribe-proxy-url and
	// --publish-proxy-url for this namespace ("off": none).
	SubscribeProxy string `yaml:"subscribe_proxy"`
	PublishProxy   string `yaml:"publish_proxy"`
}

func decodeNamespaces(n *yaml.Node) (map[string]hub.Namespace, map[string]server.NamespaceProxy, error) {
	if n.Kind != yaml.MappingNode {
		return nil, nil, errors.New("must be a mapping of namespace names to settings")
	}
	out := map[string]hub.Namespace{}
	proxies := map[string]server.NamespaceProxy{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := n.Content[i].Value
		var nc namespaceConfig
		// Decode strictly so a misspelt setting is an error, not ignored.
		b, err := yaml.Marshal(n.Content[i+1])
		if err != nil {
			return nil, nil, err
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&nc); err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%q (line %d): %w", name, n.Content[i].Line, err)
		}
		ns := hub.Namespace{Private: nc.Private, Permissions: hub.Permissions{
			Subscribe: hub.Permission(nc.Subscribe), Publish: hub.Permission(nc.Publish),
			Presence: hub.Permission(nc.PresenceAllowed), History: hub.Permission(nc.History),
		}}
		if nc.HistorySize != nil || nc.HistoryTTL != "" {
			p := engine.HistoryPolicy{Size: hub.DefaultHistorySize, TTL: hub.DefaultHistoryTTL}
			if nc.HistorySize != nil {
				p.Size = *nc.HistorySize
			}
			if nc.HistoryTTL != "" {
				d, err := time.ParseDuration(nc.HistoryTTL)
				if err != nil {
					return nil, nil, fmt.Errorf("%q: history_ttl: %w", name, err)
				}
				p.TTL = d
			}
			ns.History = &p
		}
		if nc.Presence != nil && !*nc.Presence {
			ns.NoPresence = true
		}
		if nc.JoinLeave != nil && !*nc.JoinLeave {
			ns.NoJoinLeave = true
		}
		out[name] = ns
		if nc.SubscribeProxy != "" || nc.PublishProxy != "" {
			proxies[name] = server.NamespaceProxy{Subscribe: nc.SubscribeProxy, Publish: nc.PublishProxy}
		}
	}
	return out, proxies, nil
}

// configCmd runs "switchboard config check FILE" and "config docs".
func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: switchboard config check FILE | switchboard config docs")
		return 2
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: switchboard config check FILE")
			return 2
		}
		o, err := loadConfig("config check", []string{"--config", args[1]}, os.Getenv, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "switchboard config check: %v\n", err)
			return 2
		}
		// Build the node (without serving) so semantic checks run too.
		ctx, cancel := context.WithCancel(context.Background())
		_, err = server.New(ctx, o.cfg)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "switchboard config check: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "# %s is valid; effective configuration (file < env < flags, secrets masked):\n", args[1])
		printEffective(stdout, o)
		return 0
	case "docs":
		fs := serveFlags(&options{})
		fs.String("config", "", "YAML configuration file (keys are these flags' names with '_' for '-'; see docs/configuration.md)")
		writeConfigDocs(stdout, fs)
		return 0
	}
	fmt.Fprintf(stderr, "switchboard config: unknown subcommand %q\n", args[0])
	return 2
}

func printEffective(w io.Writer, o *options) {
	o.fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		v := f.Value.String()
		if secretKeys[f.Name] && v != "" {
			v = "********"
		}
		fmt.Fprintf(w, "%s: %q\n", keyName(f.Name), v)
	})
	if len(o.cfg.Hub.Namespaces) > 0 {
		names := make([]string, 0, len(o.cfg.Hub.Namespaces))
		for n := range o.cfg.Hub.Namespaces {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "namespaces: [%s]\n", strings.Join(names, ", "))
	}
}

// writeConfigDocs renders docs/configuration.md's table from the flags.
func writeConfigDocs(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, configDocHeader)
	fmt.Fprintln(w, "| File key | Environment | Flag | Default | Meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "(empty)"
		}
		key := keyName(f.Name)
		if f.Name == "config" {
			key = "—"
		}
		fmt.Fprintf(w, "| `%s` | `%s` | `--%s` | `%s` | %s |\n", key, envName(f.Name), f.Name, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
	fmt.Fprint(w, configDocNamespaces)
}

const configDocHeader = `# Configuration

<!-- Generated by "switchboard config docs"; a test checks this file is up to date. -->

Every setting can come from three places, applied in this order (later wins):
the YAML file named by ` + "`--config`" + ` (or ` + "`SWITCHBOARD_CONFIG`" + `), environment variables, and
command-line flags. A key, variable or flag that does not exist, or a value of
the wrong type, stops the server at start with a message that names it.
` + "`switchboard config check FILE`" + ` validates a file and prints the effective
configuration with secrets masked.

`

const configDocNamespaces = `
## Namespaces

Per-namespace room settings live in the file only, under ` + "`namespaces`" + `, keyed by
the room-name prefix before ':' (` + "`\"\"`" + ` for rooms without one):

` + "```yaml" + `
namespaces:
  chat:
    history_size: 50        # events kept per room; 0 turns history off
    history_ttl: 10m
    presence: true
    join_leave: true
  user:
    subscribe: owner        # anyone | authenticated | token | owner | server
    publish: server
  private:
    private: true           # subscribe needs a subscription token
  news:
    publish: server
    presence_permission: authenticated
    history: authenticated
  game:
    subscribe_proxy: http://127.0.0.1:8000/switchboard/subscribe   # overrides --subscribe-proxy-url
    publish_proxy: "off"    # no publish proxy here, whatever --publish-proxy-url says
` + "```" + `

Unknown settings under a namespace are errors. Permissions are explained in
[security.md](security.md); the subscribe and publish proxies in [api.md](api.md), webhooks in
[webhooks.md](webhooks.md).
`
