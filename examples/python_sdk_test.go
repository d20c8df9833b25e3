package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/testport"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// pythonEnv is the environment the Python examples read: a node's API and
// its key; bytecode stays out of the checkout.
func pythonEnv(n string, key string) []string {
	return []string{"SWITCHBOARD_URL=http://" + n, "SWITCHBOARD_API_KEY=" + key, "PYTHONDONTWRITEBYTECODE=1"}
}

// keyedNode runs a node with an API key and a client subscribed to room.
func keyedNode(t *testing.T, key, room string) (*wstest.Node, *wstest.Conn) {
	t.Helper()
	n := node(t, server.Config{APIKey: key})
	c := n.MustDial(t, "", nil)
	c.Expect("connection_established")
	c.Send(map[string]string{"type": "subscribe", "id": "s", "room": room})
	c.Expect("subscribed")
	return n, c
}

// TestFastAPIExample: examples/fastapi's own tests (FastAPI's TestClient,
// Debian's python3-fastapi and python3-httpx) against a node with an API
// key: the seeds' endpoints publish through the SDK, bad rooms are 400,
// an unreachable node 502, and signed webhooks are verified.
func TestFastAPIExample(t *testing.T) {
	t.Parallel()
	havePython(t, "fastapi")
	havePython(t, "httpx")
	const key = "fastapi-example-test-key-0123"
	n := node(t, server.Config{APIKey: key})
	// Run inside examples/fastapi: from examples/, that directory would
	// shadow the fastapi package.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "-v", "test_app")
	cmd.Dir = "fastapi"
	cmd.Env = append(cmd.Environ(), pythonEnv(n.Addr, key)...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("unittest: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestDjangoExample: manage.py publish (Debian's python3-django) publishes
// through the SDK to a node with an API key; the same --key again is a
// duplicate and is stored once; an API error fails the command with the
// API's code. Then the project's own tests (the webhook view).
func TestDjangoExample(t *testing.T) {
	t.Parallel()
	havePython(t, "django")
	const key = "django-example-test-key-01234"
	n, c := keyedNode(t, key, "match:42")

	env := pythonEnv(n.Addr, key)
	manage := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, append([]string{"manage.py"}, args...)...)
		cmd.Dir = "django"
		cmd.Env = append(cmd.Environ(), env...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	out, err := manage("publish", "match:42", `{"text":"GOAL!","minute":23}`, "--type", "commentary", "--key", "m42-goal-1")
	if err != nil || !strings.Contains(out, "match:42: published as ") || !strings.Contains(out, "(1 recipients)") {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	m := c.Expect("commentary")
	if string(m.Data) != `{"text":"GOAL!","minute":23}` || !strings.Contains(out, m.ID) {
		t.Errorf("the client got %s %s; the command said %s", m.ID, m.Data, out)
	}
	out, err = manage("publish", "match:42", `{"text":"GOAL!","minute":23}`, "--type", "commentary", "--key", "m42-goal-1")
	if err != nil || !strings.Contains(out, "already published as "+m.ID) {
		t.Errorf("publish again: %v\n%s", err, out)
	}
	if out, err = manage("publish", "match:42", "Half time"); err != nil {
		t.Errorf("publish a string: %v\n%s", err, out)
	}
	if m := c.Expect("message"); string(m.Data) != `"Half time"` {
		t.Errorf("string data %s", m.Data)
	}
	page, err := n.Srv.Hub.History(context.Background(), "match:42", hub.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 {
		t.Errorf("history has %d events, want 2 (the duplicate is not stored)", len(page.Events))
	}
	var first struct{ Type string }
	if len(page.Events) > 0 {
		_ = json.Unmarshal(page.Events[0], &first)
	}
	if first.Type != "commentary" {
		t.Errorf("first stored event %q", first.Type)
	}
	out, err = manage("publish", "bad:", "x")
	if err == nil || !strings.Contains(out, "CommandError: 400 invalid_room") {
		t.Errorf("a bad room: %v\n%s", err, out)
	}
	env = pythonEnv(n.Addr, "wrong-key-0123456789abcdef")
	if out, err = manage("publish", "match:42", "x"); err == nil || !strings.Contains(out, "403 forbidden") {
		t.Errorf("a wrong key: %v\n%s", err, out)
	}

	out = run(t, []string{"PYTHONDONTWRITEBYTECODE=1"}, python, "django/manage.py", "test", "-v", "2", "matches")
	t.Logf("%s", out)
}

// TestFastAPIUnderUvicorn: the app served by Debian's uvicorn, as its
// README runs it: POST /broadcast/{room} reaches a client in the room.
func TestFastAPIUnderUvicorn(t *testing.T) {
	t.Parallel()
	havePython(t, "fastapi")
	havePython(t, "uvicorn")
	const key = "uvicorn-example-test-key-0123"
	n, c := keyedNode(t, key, "chat:uvicorn")

	port := strconv.Itoa(testport.Free(t))
	cmd := exec.Command(python, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", port)
	cmd.Dir = "fastapi"
	cmd.Env = append(cmd.Environ(), pythonEnv(n.Addr, key)...)
	var logs lockedWriter
	logs.w = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(wait):
			t.Errorf("uvicorn did not exit within %v of SIGTERM", wait)
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://127.0.0.1:" + port
	var res struct {
		Status     string `json:"status"`
		EventID    string `json:"event_id"`
		Recipients int    `json:"recipients"`
	}
	deadline := time.Now().Add(wait)
	for {
		resp, err := (&http.Client{Timeout: wait}).Post(base+"/broadcast/chat:uvicorn", "application/json", strings.NewReader(`{"text":"from uvicorn"}`))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST /broadcast: %d %v", resp.StatusCode, err)
			}
			break
		}
		if time.Now().After(deadline) {
			logs.mu.Lock()
			t.Fatalf("uvicorn did not answer within %v: %v\n%s", wait, err, logs.w)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res.Status != "sent" || res.Recipients != 1 {
		t.Errorf("answer %+v", res)
	}
	if m := c.Expect("broadcast"); m.ID != res.EventID || string(m.Data) != `{"text":"from uvicorn"}` {
		t.Errorf("the client got %s %s, want %s", m.ID, m.Data, res.EventID)
	}
}
