package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/client"
)

const connectUsage = `usage: switchboard connect [flags] URL

Connects to a Switchboard server (URL like ws://localhost:8080/ws) with the Go
client and talks the protocol from stdin, like wscat. The connection is kept up:
after a drop the client reconnects and restores its subscriptions, replaying
missed events (see docs/clients.md).

Each line of stdin is one of:
  {"type":...}        raw JSON, sent as is (its replies are printed like events)
  /sub ROOM           subscribe to ROOM
  /unsub ROOM         unsubscribe
  /pub ROOM [DATA]    publish a "message"; DATA is sent as is when it is valid
                      JSON, else as a JSON string
  /history ROOM       print the room's recent events
  /presence ROOM      print who is in the room
  /quit               close with 1000 and exit

stdout gets one JSON line per incoming event, server error, and result of /pub
(ack), /history (history_result) and /presence (presence_result). Connection
state and local errors go to stderr. When stdin ends, the command prints what
arrives for --wait more, closes with 1000 and exits.

Exit status:
  0  normal end: stdin ended, /quit, SIGINT/SIGTERM, or the server closed with 1000
  1  the first connection failed (refused, timed out, handshake refused)
  2  bad usage
  3  the server closed with a code that says not to reconnect
     (1001, 1002, 1003, 1007, 1008, 1009, 4001, 4003, 4004, 4006)
  4  any other end, such as --max-attempts reconnect attempts failing

flags:
`

// connect runs `switchboard connect`.
func connect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), connectUsage)
		fs.PrintDefaults()
	}
	var opts client.Options
	fs.StringVar(&opts.Token, "token", "", "token sent as \"Authorization: Bearer TOKEN\"")
	fs.BoolVar(&opts.Compression, "compression", false, "offer permessage-deflate")
	fs.IntVar(&opts.MaxAttempts, "max-attempts", 0, "connection attempts in a row that may fail before giving up; 0: no limit")
	fs.DurationVar(&opts.PingInterval, "ping-interval", 0, "send application pings at this interval and reconnect after 2 unanswered; 0: off")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the first connection and on each command")
	wait := fs.Duration("wait", 500*time.Millisecond, "how long to keep printing after stdin ends")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "switchboard connect: want exactly one URL")
		fs.Usage()
		return 2
	}
	s := &session{out: stdout, errw: stderr, subs: map[string]*client.Subscription{}, timeout: *timeout}
	var c *client.Client
	opts.OnEvent = s.event
	opts.OnError = s.onError
	opts.OnState = func(st client.State, err error) {
		switch {
		case st == client.StateOpen:
			s.logf("connected: user %s, connection %s", c.UserID(), c.ConnectionID())
		case st == client.StateReconnecting && err != nil:
			s.logf("reconnecting: %v", err)
		case st == client.StateConnecting && err != nil:
			s.logf("connection attempt failed: %v", err)
		}
	}
	c = client.New(fs.Arg(0), &opts)
	s.c = c

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	err := c.Connect(cctx)
	cancel()
	if err != nil {
		<-c.Done() // the error has gone to stderr through OnError
		if ctx.Err() != nil {
			return 0
		}
		return 1
	}

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-c.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			s.logf("reading stdin: %v", err)
		}
	}()

loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				select { // let late events in, then close
				case <-time.After(*wait):
				case <-c.Done():
				case <-ctx.Done():
				}
				break loop
			}
			if s.command(ctx, line) {
				break loop
			}
		case <-c.Done():
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	_ = c.Close()
	<-c.Done()
	return exitStatus(c.Err())
}

// exitStatus maps why the client stopped to the documented exit status.
func exitStatus(err error) int {
	var ce *client.CloseError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce) && ce.Code == 1000:
		return 0
	case errors.As(err, &ce) && !ce.Code.Reconnect():
		return 3
	}
	return 4
}

// session is one connect run: the client and the output, which handlers
// (on the client's goroutine) and commands (on this one) share.
type session struct {
	c       *client.Client
	timeout time.Duration
	subs    map[string]*client.Subscription // commands only

	mu   sync.Mutex // guards out and errw
	out  io.Writer
	errw io.Writer
}

func (s *session) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.errw, "switchboard connect: "+format+"\n", args...)
}

// print writes v as one JSON line on stdout.
func (s *session) print(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.logf("cannot print %T: %v", v, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.out.Write(append(b, '\n'))
}

func (s *session) event(e client.Event) { s.print(e) }

// reply is how command results are printed: as the server's reply event.
type reply struct {
	Type string `json:"type"`
	Room string `json:"room,omitempty"`
	Data any    `json:"data"`
}

// onError prints the server's own `error` events (an unwrapped
// *ServerError) on stdout; everything else is a local report for stderr.
func (s *session) onError(err error) {
	if se, ok := err.(*client.ServerError); ok {
		s.print(reply{Type: "error", Data: map[string]string{"code": se.Code, "message": se.Message}})
		return
	}
	s.logf("%v", err)
}

// command runs one stdin line; it reports whether to quit.
func (s *session) command(ctx context.Context, line string) (quit bool) {
	line = strings.TrimSpace(line)
	if line == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if line[0] != '/' {
		if err := s.c.Send(ctx, json.RawMessage(line)); err != nil {
			s.logf("%v (commands start with /: /sub, /unsub, /pub, /history, /presence, /quit)", err)
		}
		return false
	}
	cmd, rest, _ := strings.Cut(line[1:], " ")
	rest = strings.TrimSpace(rest)
	room, arg, _ := strings.Cut(rest, " ")
	if cmd != "quit" && room == "" {
		s.logf("/%s needs a room", cmd)
		return false
	}
	switch cmd {
	case "quit":
		return true
	case "sub":
		if s.subs[room] != nil {
			s.logf("already subscribed to %s", room)
			return false
		}
		sub, err := s.c.Subscribe(ctx, room, s.event)
		if err != nil {
			s.logf("/sub %s: %v", room, err)
			return false
		}
		s.subs[room] = sub
		s.logf("subscribed to %s", room)
	case "unsub":
		sub := s.subs[room]
		if sub == nil {
			s.logf("/unsub %s: not subscribed with /sub", room)
			return false
		}
		delete(s.subs, room)
		if err := sub.Unsubscribe(ctx); err != nil {
			s.logf("/unsub %s: %v", room, err)
			return false
		}
		s.logf("unsubscribed from %s", room)
	case "pub":
		var data any
		switch arg = strings.TrimSpace(arg); {
		case arg == "":
		case json.Valid([]byte(arg)):
			data = json.RawMessage(arg)
		default:
			data = arg
		}
		ack, err := s.c.Publish(ctx, room, "message", data)
		if err != nil {
			s.logf("/pub %s: %v", room, err)
			return false
		}
		s.print(reply{Type: "ack", Room: room, Data: ack})
	case "history":
		page, err := s.c.History(ctx, room, "", 0)
		if err != nil {
			s.logf("/history %s: %v", room, err)
			return false
		}
		s.print(reply{Type: "history_result", Room: room, Data: page})
	case "presence":
		info, err := s.c.Presence(ctx, room, false)
		if err != nil {
			s.logf("/presence %s: %v", room, err)
			return false
		}
		s.print(reply{Type: "presence_result", Room: room, Data: info})
	default:
		s.logf("unknown command /%s (try /sub, /unsub, /pub, /history, /presence, /quit)", cmd)
	}
	return false
}
