package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// ServerSpec describes a server the tool starts for a run.
type ServerSpec struct {
	// Args is the command line after the binary, without --listen, for
	// example {"serve", "--log-level", "warn", "--no-join-leave"}.
	Args []string
	// Env is added to the server's environment (GOGC=..., for example).
	Env []string
	// ProfileSignal sends the server SIGUSR1 at the measuring point (after
	// the publishing, or the holding of idle connections); the profiling
	// server ("switchboard bench server") writes its heap profile then.
	ProfileSignal bool
}

type runningServer struct {
	cmd  *exec.Cmd
	pid  int
	addr string
	url  string
	done chan struct{}
}

// startServer starts the server on a free loopback port and waits until
// /readyz answers.
func startServer(ctx context.Context, exe string, spec ServerSpec, log io.Writer) (*runningServer, error) {
	var lastErr error
	for range 3 { // the free port may be taken between Close and the server's Listen
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := tryServer(ctx, exe, spec, addr, log)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

func tryServer(ctx context.Context, exe string, spec ServerSpec, addr string, log io.Writer) (*runningServer, error) {
	args := append(append([]string{}, spec.Args...), "--listen", addr)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start server: %w", err)
	}
	s := &runningServer{cmd: cmd, pid: cmd.Process.Pid, addr: addr, url: "ws://" + addr + "/ws", done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("bench: server %v exited at start: %v", args, cmd.ProcessState)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return s, nil
		}
	}
	s.stop()
	return nil, fmt.Errorf("bench: server on %s not ready within 10 s", addr)
}

func (s *runningServer) signal(sig syscall.Signal) { _ = s.cmd.Process.Signal(sig) }

// stop drains the server with SIGTERM and kills it if it takes longer
// than its drain timeout allows.
func (s *runningServer) stop() {
	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
