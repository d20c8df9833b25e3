//go:build !bench

package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func noPath(string) (string, error) { return "", errors.New("not found") }

// TestBenchFindsItsBuild: the bench build is looked for beside the server
// binary, then on PATH; without it the command says how to build it.
func TestBenchFindsItsBuild(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "switchboard")
	if _, err := findBench(self, noPath); err == nil || !strings.Contains(err.Error(), "go build -tags bench") {
		t.Fatalf("without a bench build: err %v, want one that says how to build it", err)
	}
	onPath := func(name string) (string, error) { return "/opt/bin/" + name, nil }
	if p, err := findBench(self, onPath); err != nil || p != "/opt/bin/switchboard-bench" {
		t.Errorf("on PATH: %q %v", p, err)
	}
	beside := filepath.Join(dir, benchBinary)
	if err := os.WriteFile(beside, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, _ := findBench(self, noPath); p != "" {
		t.Errorf("a file that is not executable was taken: %q", p)
	}
	if err := os.Chmod(beside, 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := findBench(self, onPath); err != nil || p != beside {
		t.Errorf("beside the binary: %q %v, want %q (before PATH)", p, err, beside)
	}
}

// TestBenchRunsItsBuild: the arguments reach the bench build's bench
// command, its output and exit status come back.
func TestBenchRunsItsBuild(t *testing.T) {
	exe := filepath.Join(t.TempDir(), benchBinary)
	script := "#!/bin/sh\necho \"args: $*\"\necho oops >&2\nexit 3\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runBench(exe, []string{"suite", "--scale", "0.1"}, &stdout, &stderr); code != 3 {
		t.Errorf("exit %d, want the bench build's 3", code)
	}
	if stdout.String() != "args: bench suite --scale 0.1\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := runBench(filepath.Join(t.TempDir(), "missing"), nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "switchboard bench:") {
		t.Errorf("missing binary: exit %d, stderr %q", code, stderr.String())
	}
}
