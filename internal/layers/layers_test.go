package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchboard-rt/switchboard/"

// pkg is one package of the module as go list sees it (test files aside).
type pkg struct {
	imports []string // direct imports
	deps    []string // everything it links, transitively
}

// listPackages runs go list over the module.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	// go test puts its own GOROOT/bin first on the test's PATH.
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports ","}}|{{join .Deps ","}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 3 {
			t.Fatalf("go list line %q", line)
		}
		pkgs[strings.TrimPrefix(f[0], module)] = pkg{imports: split(f[1]), deps: split(f[2])}
	}
	return pkgs
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		out = append(out, strings.TrimPrefix(p, module))
	}
	return out
}

// TestImportRules: dependencies point from the edges to the core. Each rule
// names a package and what it must not link (deps) or import directly.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	rules := []struct {
		pkg    string
		direct bool // only direct imports count
		banned []string
		why    string
	}{
		{"protocol", false, []string{"hub", "engine", "transport", "api", "server", "net/http"}, "the protocol is the core"},
		{"engine", false, []string{"hub", "engine/memory", "engine/redis", "engine/nats", "transport", "api", "server", "net/http"}, "engines know nothing of connections"},
		{"engine/memory", false, []string{"hub", "transport", "api", "server", "net/http"}, "engines know nothing of connections"},
		{"engine/redis", false, []string{"hub", "transport", "api", "server", "net/http"}, "engines know nothing of connections"},
		{"engine/nats", false, []string{"hub", "transport", "api", "server"}, "engines know nothing of connections"},
		{"engine/internal/broker", false, []string{"hub", "transport", "api", "server", "engine/redis", "engine/nats"}, "the brokers' shared gap-fill sits below them"},
		{"hub", false, []string{"net/http", "engine/memory", "engine/redis", "engine/nats", "transport", "api", "server"}, "the hub knows nothing of HTTP and gets its engine from its Options"},
		{"transport", false, []string{"engine/memory", "engine/redis", "engine/nats", "api", "server"}, "the transport talks to the hub only"},
		{"api", true, []string{"engine", "engine/memory", "engine/redis", "engine/nats", "transport"}, "the API reaches the engine only through the hub"},
		{"api", false, []string{"transport", "server", "engine/memory", "engine/redis", "engine/nats"}, "the API is a plug-in around the hub"},
		{"client", false, []string{"hub", "engine", "transport", "api", "server"}, "the Go SDK shares only the protocol with the server"},
		{"cmd/switchboard", false, []string{"internal/loadtest"}, "the server binary does not link the load tool (it is the -tags bench build)"},
	}
	for _, r := range rules {
		p, ok := pkgs[r.pkg]
		if !ok {
			t.Errorf("package %s not found by go list", r.pkg)
			continue
		}
		list := p.deps
		if r.direct {
			list = p.imports
		}
		for _, d := range list {
			for _, b := range r.banned {
				if d == b {
					t.Errorf("%s links %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
	// Test helpers stay out of every binary and library.
	for name, p := range pkgs {
		for _, d := range p.deps {
			if (d == "internal/hubtest" || d == "engine/enginetest" || d == "internal/wstest") && !strings.HasPrefix(name, "internal/") && !strings.HasPrefix(name, "engine/enginetest") {
				t.Errorf("%s links the test helper %s", name, d)
			}
		}
	}
}
