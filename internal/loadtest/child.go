package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// A child is a worker, floor writer or floor reader: a re-executed copy of
// the switchboard binary ("switchboard bench <role> ..."), or, when no
// binary is given (tests), the same role run on a goroutine. Either way it
// takes JSON commands, one per line, on its input and answers with JSON
// events, one per line, on its output, so the coordinator does not care
// which it is.
type child struct {
	name   string
	pid    int
	in     io.WriteCloser
	events chan json.RawMessage
	done   chan struct{} // closed when the child has ended
	errMu  sync.Mutex
	err    error
	cmd    *exec.Cmd // nil in process
	cancel context.CancelFunc
}

// Roles a child can run.
const (
	roleWorker      = "worker"
	roleFloorWriter = "floor-writer"
	roleFloorReader = "floor-reader"
)

// startChild starts role with args: as a process of exe when exe is set,
// else on a goroutine. log receives the child's diagnostics.
func startChild(ctx context.Context, exe, name, role string, args []string, log io.Writer) (*child, error) {
	ch := &child{name: name, events: make(chan json.RawMessage, 16), done: make(chan struct{})}
	var out io.ReadCloser
	if exe != "" {
		cmd := exec.Command(exe, append([]string{"bench", role}, args...)...)
		cmd.SysProcAttr = dieWithParent()
		cmd.Stderr = log
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		o, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		ch.cmd, ch.in, out, ch.pid = cmd, in, o, cmd.Process.Pid
	} else {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		cctx, cancel := context.WithCancel(ctx)
		ch.in, out, ch.pid, ch.cancel = inW, outR, os.Getpid(), cancel
		go func() {
			err := RunRole(cctx, role, args, inR, outW)
			_ = outW.CloseWithError(err)
			_ = inR.Close()
		}()
	}
	go ch.readEvents(out)
	return ch, nil
}

func (ch *child) readEvents(out io.ReadCloser) {
	defer close(ch.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		b := append(json.RawMessage(nil), sc.Bytes()...)
		ch.events <- b
	}
	ch.setErr(sc.Err())
	if ch.cmd != nil {
		ch.setErr(ch.cmd.Wait())
	}
	close(ch.events)
}

func (ch *child) setErr(err error) {
	if err == nil {
		return
	}
	ch.errMu.Lock()
	if ch.err == nil {
		ch.err = err
	}
	ch.errMu.Unlock()
}

func (ch *child) exitErr() error {
	ch.errMu.Lock()
	defer ch.errMu.Unlock()
	return ch.err
}

// send writes one command.
func (ch *child) send(cmd any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	if _, err := ch.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s: send command: %w", ch.name, err)
	}
	return nil
}

// expect waits for the next event, which must be of type want, and
// decodes it into v. A child that reports an "error" event, ends, or stays
// silent past the timeout is an error.
func (ch *child) expect(ctx context.Context, want string, timeout time.Duration, v any) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b, ok := <-ch.events:
		if !ok {
			if err := ch.exitErr(); err != nil {
				return fmt.Errorf("%s ended before %q: %w", ch.name, want, err)
			}
			return fmt.Errorf("%s ended before %q", ch.name, want)
		}
		var head struct {
			Event string `json:"event"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return fmt.Errorf("%s: bad event %q: %w", ch.name, b, err)
		}
		if head.Event == "error" {
			return fmt.Errorf("%s: %s", ch.name, head.Error)
		}
		if head.Event != want {
			return fmt.Errorf("%s: got event %q, want %q", ch.name, head.Event, want)
		}
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s: bad %q event: %w", ch.name, want, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%s: no %q within %s", ch.name, want, timeout)
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for %q: %w", ch.name, want, ctx.Err())
	}
}

// stop asks the child to quit (closing its input), waits up to grace and
// then kills it.
func (ch *child) stop(grace time.Duration) {
	_ = ch.send(map[string]string{"cmd": "quit"})
	_ = ch.in.Close()
	go func() { // the child may block writing events nobody reads any more
		for range ch.events {
		}
	}()
	select {
	case <-ch.done:
	case <-time.After(grace):
		if ch.cmd != nil {
			_ = ch.cmd.Process.Kill()
		}
		if ch.cancel != nil {
			ch.cancel()
		}
		select {
		case <-ch.done:
		case <-time.After(5 * time.Second):
		}
	}
	if ch.cancel != nil {
		ch.cancel()
	}
}

// emitter writes a child's events; safe for concurrent use.
type emitter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *emitter) emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.w.Write(append(b, '\n'))
	return err
}

// RunRole runs one child role ("worker", "floor-writer", "floor-reader")
// with its flags, reading commands from in and writing events to out. It
// is what "switchboard bench <role>" calls; the role ends when ctx ends,
// when in reaches EOF (the coordinator is gone) or on a quit command.
func RunRole(ctx context.Context, role string, args []string, in io.Reader, out io.Writer) error {
	em := &emitter{w: out}
	var err error
	switch role {
	case roleWorker:
		err = runWorker(ctx, args, in, em)
	case roleFloorWriter:
		err = runFloorWriter(ctx, args, in, em)
	case roleFloorReader:
		err = runFloorReader(ctx, args, in, em)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		_ = em.emit(map[string]string{"event": "error", "error": err.Error()})
	}
	return err
}

// commands reads the coordinator's JSON commands into a channel, closed
// at EOF. It stops delivering when ctx ends.
func commands(ctx context.Context, in io.Reader) <-chan map[string]json.RawMessage {
	ch := make(chan map[string]json.RawMessage)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 4096), 16<<20)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// cmdName returns a command's "cmd" field.
// nextCommand waits for the coordinator's next command: nil (with the
// context's error, if that ended the wait) when it said quit or is gone.
func nextCommand(ctx context.Context, cmds <-chan map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case m := <-cmds:
		if m == nil || cmdName(m) == "quit" {
			return nil, nil
		}
		return m, nil
	}
}

func cmdName(m map[string]json.RawMessage) string {
	var s string
	_ = json.Unmarshal(m["cmd"], &s)
	return s
}
