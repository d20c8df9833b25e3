package server_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestEmbeddedSDKIsFresh: the SDK bundle the binary embeds
// (server/web/switchboard.min.js) is what a build of clients/js produces
// now. When it is not, run `go generate ./server` and commit the file.
// Needs node and `npm ci` in clients/js; without them the test is skipped,
// except on CI, where it fails.
func TestEmbeddedSDKIsFresh(t *testing.T) {
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (CI is set: run `npm ci` in clients/js before the Go tests)", args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join("..", "clients", "js", "node_modules", "esbuild")); err != nil {
		missing("clients/js has no node_modules (npm ci): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, filepath.Join("web", "build-sdk.mjs"))
	cmd.Stderr = &stderr
	fresh, err := cmd.Output()
	if err != nil {
		t.Fatalf("building the SDK bundle: %v\n%s", err, stderr.Bytes())
	}
	embedded, err := os.ReadFile(filepath.Join("web", "switchboard.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) == 0 {
		t.Fatal("the SDK build produced nothing")
	}
	if !bytes.Equal(fresh, embedded) {
		t.Fatalf("server/web/switchboard.min.js (%d bytes) differs from a fresh build of clients/js (%d bytes): run `go generate ./server` and commit it", len(embedded), len(fresh))
	}
}
