// Package examples_test builds and runs every example against loopback:
// the Go programs (chat, sports) as processes, the Python scripts with
// Debian's /usr/bin/python3, publish.sh with bash and curl, and the Node
// client with node and the JS SDK. A missing tool skips its test, except on
// CI (CI set), where it fails: CI installs them (see each README).
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// python is Debian's interpreter, where python3-websockets installs; a
// python3 earlier on PATH (pyenv, a virtualenv) may lack the module.
const python = "/usr/bin/python3"

// wait bounds every wait: a deadlock guard, not a speed expectation.
const wait = 20 * time.Second

// require skips the test when a tool is missing, or fails it on CI.
func require(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: the tool must be installed)", msg)
	}
	t.Skip(msg)
}

// goTool finds the go command: on PATH, or where Debian's setup puts it
// (the Makefile adds /usr/local/go/bin to PATH for the same reason).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// build compiles ./examples/name into a temporary directory.
func build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// proc is a running example program.
type proc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	stderr *bytes.Buffer
	done   chan error
}

// start runs an example binary on a free loopback port and waits for its
// "listening on" line. The test stops it with stop (cleanup kills it).
func start(t *testing.T, bin string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		p.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			t.Fatalf("first line %q, want \"listening on http://...\"", line)
		}
		p.base = addr
	case err := <-p.done:
		p.done <- err
		t.Fatalf("%s exited before listening: %v\n%s", bin, err, p.stderr)
	case <-time.After(wait):
		t.Fatalf("%s did not start within %v\n%s", bin, wait, p.stderr)
	}
	return p
}

// stop sends SIGTERM and checks the program drained and exited cleanly.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(wait):
		t.Fatalf("no exit within %v of SIGTERM", wait)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// request sends a JSON request and decodes a JSON answer into out.
func request(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// ws is a test client.
type ws struct {
	t *testing.T
	c *websocket.Conn
}

type msg struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Room   string          `json:"room"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data"`
}

func dialWS(t *testing.T, url string) *ws {
	t.Helper()
	c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	w := &ws{t: t, c: c}
	w.expect("connection_established")
	return w
}

func (w *ws) send(v any) {
	w.t.Helper()
	if err := w.c.WriteJSON(v); err != nil {
		w.t.Fatal(err)
	}
}

// expect reads until a message of type typ, skipping join/leave notices
// and acks.
func (w *ws) expect(typ string) msg {
	w.t.Helper()
	for i := 0; i < 50; i++ {
		_ = w.c.SetReadDeadline(time.Now().Add(wait))
		var m msg
		if err := w.c.ReadJSON(&m); err != nil {
			w.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		switch m.Type {
		case "user_joined", "user_left", "ack":
			continue
		}
		w.t.Fatalf("waiting for %s, got %s %s", typ, m.Type, m.Data)
	}
	w.t.Fatalf("no %s in 50 messages", typ)
	return msg{}
}

// closeCode reads until the server closes and returns the close code.
func (w *ws) closeCode() int {
	w.t.Helper()
	for i := 0; i < 50; i++ {
		_ = w.c.SetReadDeadline(time.Now().Add(wait))
		if _, _, err := w.c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				w.t.Fatalf("want a close frame, got %v", err)
			}
			return ce.Code
		}
	}
	w.t.Fatal("not closed")
	return 0
}

func errorCode(m msg) string {
	var e struct{ Code string }
	_ = json.Unmarshal(m.Data, &e)
	return e.Code
}

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// TestChatExample: examples/chat enforces its rules in hooks, clients chat,
// the backend posts and reads history, and SIGTERM drains with 1012.
func TestChatExample(t *testing.T) {
	t.Parallel()
	p := start(t, build(t, "chat"))
	ann, bob := dialWS(t, wsURL(p.base)), dialWS(t, wsURL(p.base))
	for _, c := range []*ws{ann, bob} {
		c.send(map[string]string{"type": "subscribe", "id": "s", "room": "chat:lobby"})
		c.expect("subscribed")
	}
	// Extra fields are dropped and text trimmed by the OnPublish hook.
	ann.send(map[string]any{"type": "message", "id": "m1", "room": "chat:lobby", "data": map[string]any{"text": "  hi bob ", "name": "ann", "admin": true}})
	if m := bob.expect("message"); string(m.Data) != `{"text":"hi bob","name":"ann"}` || m.UserID == "" {
		t.Errorf("bob got %s from %q", m.Data, m.UserID)
	}
	ann.expect("message") // her own, echoed
	for _, tt := range []struct {
		name string
		send map[string]any
		code string
	}{
		{"empty text", map[string]any{"type": "message", "id": "e1", "room": "chat:lobby", "data": map[string]string{"text": " "}}, "bad_request"},
		{"too long", map[string]any{"type": "message", "id": "e2", "room": "chat:lobby", "data": map[string]string{"text": strings.Repeat("x", 501)}}, "bad_request"},
		{"not an object", map[string]any{"type": "message", "id": "e3", "room": "chat:lobby", "data": "hello"}, "bad_request"},
		{"other event type", map[string]any{"type": "shout", "id": "e4", "room": "chat:lobby", "data": map[string]string{"text": "HI"}}, "forbidden"},
		{"other room", map[string]any{"type": "subscribe", "id": "e5", "room": "news:today"}, "forbidden"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ann.t = t
			ann.send(tt.send)
			if m := ann.expect("error"); errorCode(m) != tt.code {
				t.Errorf("error %s, want %s", m.Data, tt.code)
			}
		})
	}
	ann.t = t

	var res hub.PublishResult
	if st := request(t, "POST", p.base+"/rooms/lobby/messages", map[string]string{"text": "welcome, everyone"}, &res); st != 201 || res.EventID == "" || res.Recipients != 2 {
		t.Fatalf("POST /rooms/lobby/messages: %d %+v", st, res)
	}
	if m := bob.expect("message"); m.ID != res.EventID || m.UserID != "" || !strings.Contains(string(m.Data), `"name":"announcer"`) {
		t.Errorf("announcement %+v", m)
	}
	if st := request(t, "POST", p.base+"/rooms/lobby/messages", map[string]string{"text": ""}, nil); st != 400 {
		t.Errorf("empty announcement: %d, want 400", st)
	}
	var page hub.HistoryPage
	if st := request(t, "GET", p.base+"/rooms/lobby/messages", nil, &page); st != 200 || len(page.Events) != 2 {
		t.Errorf("GET /rooms/lobby/messages: %d, %d events, want 2", st, len(page.Events))
	}

	p.stop(t)
	if code := bob.closeCode(); code != 1012 {
		t.Errorf("close on SIGTERM %d, want 1012", code)
	}
}

// TestSportsExample: the seeds' sports API on Switchboard: matches are
// created, scored and commented over HTTP, and every change reaches the
// match room; match_data over RPC gives the state and the id of its last
// event.
func TestSportsExample(t *testing.T) {
	t.Parallel()
	p := start(t, build(t, "sports"))
	var m struct {
		ID          int    `json:"id"`
		HomeTeam    string `json:"home_team"`
		Status      string `json:"status"`
		Score       struct{ Home, Away int }
		Commentary  []struct{ Text string }
		LastEventID string `json:"last_event_id"`
	}
	if st := request(t, "POST", p.base+"/matches", map[string]any{"id": 1, "home_team": "Rovers", "away_team": "United"}, &m); st != 201 || m.Status != "scheduled" || m.LastEventID == "" {
		t.Fatalf("POST /matches: %d %+v", st, m)
	}
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"duplicate match", "POST", "/matches", map[string]any{"id": 1, "home_team": "A", "away_team": "B"}, 409},
		{"match without teams", "POST", "/matches", map[string]any{"id": 2}, 400},
		{"unknown field", "POST", "/matches", map[string]any{"id": 3, "home_team": "A", "away_team": "B", "venue": "x"}, 400},
		{"bad status", "POST", "/matches", map[string]any{"id": 4, "home_team": "A", "away_team": "B", "status": "abandoned"}, 400},
		{"score of a missing match", "PUT", "/matches/99/score", map[string]int{"home": 1, "away": 0}, 404},
		{"negative score", "PUT", "/matches/1/score", map[string]int{"home": -1, "away": 0}, 400},
		{"score without away", "PUT", "/matches/1/score", map[string]int{"home": 1}, 400},
		{"empty commentary", "POST", "/matches/1/commentary", map[string]any{"minute": 1, "text": ""}, 400},
		{"match id not a number", "GET", "/matches/abc", nil, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if st := request(t, tt.method, p.base+tt.path, tt.body, nil); st != tt.status {
				t.Errorf("status %d, want %d", st, tt.status)
			}
		})
	}

	fan := dialWS(t, wsURL(p.base))
	fan.send(map[string]string{"type": "subscribe", "id": "s0", "room": "match:99"})
	if e := fan.expect("error"); errorCode(e) != "room_not_found" {
		t.Errorf("subscribe to a missing match: %s", e.Data)
	}
	fan.send(map[string]string{"type": "subscribe", "id": "s1", "room": "match:1"})
	fan.expect("subscribed")
	fan.send(map[string]any{"type": "rpc", "id": "r1", "data": map[string]any{"method": "match_data", "params": map[string]int{"id": 1}}})
	var rpc struct {
		Result struct {
			HomeTeam    string `json:"home_team"`
			LastEventID string `json:"last_event_id"`
		}
	}
	if r := fan.expect("rpc_result"); json.Unmarshal(r.Data, &rpc) != nil || rpc.Result.HomeTeam != "Rovers" || rpc.Result.LastEventID != m.LastEventID {
		t.Errorf("match_data %s, want Rovers at %s", r.Data, m.LastEventID)
	}

	if st := request(t, "PUT", p.base+"/matches/1/score", map[string]int{"home": 1, "away": 0, "minute": 23}, &m); st != 200 || m.Score.Home != 1 || m.Status != "live" {
		t.Fatalf("PUT score: %d %+v", st, m)
	}
	if ev := fan.expect("score_update"); ev.ID != m.LastEventID || !strings.Contains(string(ev.Data), `"score":{"home":1,"away":0}`) {
		t.Errorf("score_update %s %s, want id %s", ev.ID, ev.Data, m.LastEventID)
	}
	if st := request(t, "POST", p.base+"/matches/1/commentary", map[string]any{"minute": 23, "text": "GOAL!"}, &m); st != 201 || len(m.Commentary) != 1 {
		t.Fatalf("POST commentary: %d %+v", st, m)
	}
	if ev := fan.expect("commentary"); ev.ID != m.LastEventID || !strings.Contains(string(ev.Data), `"text":"GOAL!"`) {
		t.Errorf("commentary %s %s", ev.ID, ev.Data)
	}
	// Only the backend writes to match rooms.
	fan.send(map[string]any{"type": "score_update", "id": "x", "room": "match:1", "data": map[string]int{"home": 9}})
	if e := fan.expect("error"); errorCode(e) != "forbidden" {
		t.Errorf("client publish: %s", e.Data)
	}
	if st := request(t, "GET", p.base+"/matches/1", nil, &m); st != 200 || m.Score.Home != 1 || len(m.Commentary) != 1 {
		t.Errorf("GET /matches/1: %d %+v", st, m)
	}
	p.stop(t)
}

// node runs an in-process Switchboard node for the client examples.
func node(t *testing.T, cfg server.Config) *wstest.Node {
	cfg.NoDemo, cfg.NoAdmin = true, true
	return wstest.Start(t, cfg)
}

// run runs a command with a deadline and returns its stdout; stderr goes
// into failures.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func havePython(t *testing.T, module string) {
	t.Helper()
	_, err := os.Stat(python)
	require(t, err == nil, "%s not found (apt-get install -y python3)", python)
	if module != "" {
		err = exec.Command(python, "-c", "import "+module).Run()
		require(t, err == nil, "%s cannot import %s (apt-get install -y python3-%s)", python, module, module)
	}
}

// TestPythonBackend: publish.py publishes with urllib, its repeated
// idempotency key is answered as a duplicate and delivered once, and it
// sends the API key when one is set.
func TestPythonBackend(t *testing.T) {
	t.Parallel()
	havePython(t, "")
	const key = "python-backend-test-key-0123"
	n, c := keyedNode(t, key, "match:7")

	out := run(t, []string{"SWITCHBOARD_API_KEY=" + key}, python, "python-backend/publish.py", "--url", "http://"+n.Addr, "--room", "match:7")
	var first, again struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(line, "score_update again "):
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "score_update again ")), &again)
		case strings.HasPrefix(line, "score_update "):
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "score_update ")), &first)
		}
	}
	if first.EventID == "" || again.EventID != first.EventID || first.Duplicate || !again.Duplicate {
		t.Fatalf("idempotent publish: first %+v, again %+v\n%s", first, again, out)
	}
	// Delivered once: the score update, then the batch's two commentaries.
	if m := c.Expect("score_update"); m.ID != first.EventID {
		t.Errorf("score_update %s, want %s", m.ID, first.EventID)
	}
	c.Expect("commentary")
	c.Expect("commentary")
	if !strings.Contains(out, `"connections": 1`) {
		t.Errorf("stats line missing: %s", out)
	}

	// Without the key the API refuses, and the script says so.
	cmd := exec.Command(python, "python-backend/publish.py", "--url", "http://"+n.Addr)
	cmd.Env = append(os.Environ(), "SWITCHBOARD_API_KEY=")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "401 unauthorized") {
		t.Errorf("without the key: %v %s", err, b)
	}
}

// TestPythonClient: client.py (Debian's python3-websockets) subscribes,
// says something, prints room events as JSON lines and exits after
// --max-events.
func TestPythonClient(t *testing.T) {
	t.Parallel()
	havePython(t, "websockets")
	n := node(t, server.Config{})
	done := make(chan string, 1)
	go func() {
		done <- runNoFatal(python, "python-client/client.py", "--url", "ws://"+n.Addr+"/ws", "--room", "match:3", "--say", "hello from python", "--max-events", "3", "--max-attempts", "3")
	}()
	waitMembers(t, n, "match:3", 1)
	for i := 1; i <= 2; i++ {
		if _, err := n.Srv.Hub.Publish(context.Background(), "match:3", "score_update", json.RawMessage(fmt.Sprintf(`{"home":%d,"away":0}`, i)), hub.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := waitOutput(t, done)
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m msg
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		types = append(types, m.Type)
	}
	// Its own message and the two updates; the order of the message
	// against the updates depends on when it was sent.
	if len(types) != 3 || !strings.Contains(out, `"text": "hello from python"`) || strings.Count(out, "score_update") != 2 {
		t.Errorf("client.py printed:\n%s", out)
	}
}

// TestNodeClient: index.mjs (the JS SDK on Node with ws) subscribes, says
// something and prints what it receives.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	nodeBin, err := exec.LookPath("node")
	require(t, err == nil, "node is not installed")
	_, err = os.Stat("node-client/node_modules/ws")
	require(t, err == nil, "examples/node-client has no node_modules: run npm ci there")
	_, err = os.Stat("../clients/js/dist/index.js")
	require(t, err == nil, "the JS SDK is not built: run npm ci && npm run build in clients/js")
	n := node(t, server.Config{})
	done := make(chan string, 1)
	go func() {
		done <- runNoFatal(nodeBin, "node-client/index.mjs", "--url", "ws://"+n.Addr+"/ws", "--room", "chat:node", "--say", "hello from node", "--max-events", "2")
	}()
	waitMembers(t, n, "chat:node", 1)
	if _, err := n.Srv.Hub.Publish(context.Background(), "chat:node", "message", json.RawMessage(`{"text":"hello from the backend"}`), hub.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	out := waitOutput(t, done)
	if !strings.Contains(out, `"text":"hello from node"`) || !strings.Contains(out, `"text":"hello from the backend"`) {
		t.Errorf("index.mjs printed:\n%s", out)
	}
}

// TestSportsPublishScript: publish.sh puts the demo's sample match into a
// room through the HTTP API with curl, event for event what the demo
// page's button publishes; it finds the node from --listen or
// SWITCHBOARD_LISTEN as the serve command reads them; running it again
// with the same RUN publishes nothing twice.
func TestSportsPublishScript(t *testing.T) {
	t.Parallel()
	_, err := exec.LookPath("curl")
	require(t, err == nil, "curl is not installed (apt-get install -y curl)")
	_, err = exec.LookPath("bash")
	require(t, err == nil, "bash is not installed")
	n := node(t, server.Config{})
	_, port, _ := strings.Cut(n.Addr, ":")
	env := []string{"SWITCHBOARD_URL=", "SWITCHBOARD_LISTEN=", "DELAY=0", "RUN=test", "SWITCHBOARD_API_KEY="}
	out := run(t, env, "bash", "sports/publish.sh", "--listen", ":"+port, "demo-match:2")
	const events = 16 // the 9 steps of server/demo.go demoScript
	if strings.Count(out, `"event_id"`) != events {
		t.Fatalf("publish.sh printed:\n%s", out)
	}
	again := run(t, append(env, "SWITCHBOARD_LISTEN=0.0.0.0:"+port), "bash", "sports/publish.sh", "demo-match:2")
	if strings.Count(again, `"duplicate":true`) != events {
		t.Errorf("the second run with the same RUN should be all duplicates:\n%s", again)
	}
	script := roomEvents(t, n, "demo-match:2")

	// The button plays the same match on a node with the demo.
	d := wstest.Start(t, server.Config{NoAdmin: true})
	for i := 0; i < 9; i++ {
		resp, err := http.Post("http://"+d.Addr+"/demo/matches/2/next", "application/json", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("press %d: %v %v", i, err, resp)
		}
		resp.Body.Close()
	}
	button := roomEvents(t, d, "demo-match:2")
	if len(script) != events || strings.Join(script, "\n") != strings.Join(button, "\n") {
		t.Errorf("publish.sh and the demo button publish different matches:\n%s\n--- button:\n%s", strings.Join(script, "\n"), strings.Join(button, "\n"))
	}
	// An API error fails the script.
	bad := exec.Command("bash", "sports/publish.sh", "--url", "http://"+n.Addr, "bad-room:")
	bad.Env = append(os.Environ(), env...)
	if b, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(b), "invalid_room") {
		t.Errorf("a bad room: %v %s", err, b)
	}
}

// roomEvents returns the type and data of each event in room's history.
func roomEvents(t *testing.T, n *wstest.Node, room string) []string {
	t.Helper()
	page, err := n.Srv.Hub.History(context.Background(), room, hub.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, raw := range page.Events {
		var e struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		d, _ := json.Marshal(e.Data) // sorted keys: the order each side wrote them does not matter
		out = append(out, e.Type+" "+string(d))
	}
	return out
}

// runNoFatal runs a command (for goroutines, which must not call Fatal)
// and returns its stdout, or an "ERROR:" line with everything it printed.
func runNoFatal(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Sprintf("ERROR: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func waitOutput(t *testing.T, done chan string) string {
	t.Helper()
	select {
	case out := <-done:
		if strings.HasPrefix(out, "ERROR: ") {
			t.Fatal(out)
		}
		return out
	case <-time.After(3 * time.Minute):
		t.Fatal("the client did not finish")
	}
	return ""
}

// waitMembers waits until room has n members on the node.
func waitMembers(t *testing.T, n *wstest.Node, room string, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for n.Srv.Hub.RoomSize(room) < want {
		if time.Now().After(deadline) {
			t.Fatalf("room %s did not reach %d member(s)", room, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
