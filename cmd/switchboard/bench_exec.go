//go:build !bench

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// The load tool (internal/loadtest and the Go client it drives) is not
// linked into the server binary: it is the same command built with
// -tags bench (bench.go), installed as switchboard-bench beside this
// binary by `make build`. "switchboard bench ..." runs that build.

// benchBinary is the name of the bench build.
const benchBinary = "switchboard-bench"

// bench runs "switchboard bench ..." in the bench build.
func bench(args []string, stdout, stderr io.Writer) int {
	self, _ := os.Executable()
	exe, err := findBench(self, exec.LookPath)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard bench: %v\n", err)
		return 1
	}
	return runBench(exe, args, stdout, stderr)
}

// findBench looks for the bench build beside self, then on PATH.
func findBench(self string, lookPath func(string) (string, error)) (string, error) {
	if self != "" {
		p := filepath.Join(filepath.Dir(self), benchBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := lookPath(benchBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the load tool is a separate build, %s, found neither beside this binary nor on PATH: "+
		"run make build (bin/%s), or go build -tags bench -o %s ./cmd/switchboard", benchBinary, benchBinary, benchBinary)
}

// runBench runs exe's bench command with args and returns its exit status.
// SIGINT and SIGTERM are passed on rather than ending this process first,
// so the run stops its server and workers and reports before the shell
// gets its prompt back.
func runBench(exe string, args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command(exe, append([]string{"bench"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	err := cmd.Start()
	if err == nil {
		done := make(chan struct{})
		go func() {
			for {
				select {
				case s := <-sigs:
					_ = cmd.Process.Signal(s)
				case <-done:
					return
				}
			}
		}()
		err = cmd.Wait()
		close(done)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default: // it did not start, or a signal ended it
		fmt.Fprintf(stderr, "switchboard bench: %s: %v\n", exe, err)
		return 1
	}
}
