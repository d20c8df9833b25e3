//go:build !bench && unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBenchPassesSignalsOn: a SIGTERM to switchboard bench reaches the
// bench build, which ends the run its own way, instead of ending the
// command under it.
func TestBenchPassesSignalsOn(t *testing.T) {
	exe := filepath.Join(t.TempDir(), benchBinary)
	script := "#!/bin/sh\ntrap 'kill $!; echo got TERM; exit 5' TERM\necho ready\nsleep 20 >/dev/null 2>&1 &\nwait\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- runBench(exe, nil, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the script never started; stderr %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 5 || !strings.Contains(stdout.String(), "got TERM") {
			t.Errorf("exit %d, stdout %q: the signal did not reach the bench build", c, stdout.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the bench build did not end after SIGTERM")
	}
}
