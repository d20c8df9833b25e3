package python_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/webhook"
)

// receiverLine is one line of testdata/webhook_receiver.py: its port, or
// one request it answered.
type receiverLine struct {
	Port   int              `json:"port"`
	Status int              `json:"status"`
	Batch  string           `json:"batch"`
	Error  string           `json:"error"`
	Events []map[string]any `json:"events"`
}

// receiver is a running webhook_receiver.py.
type receiver struct {
	url   string
	mu    sync.Mutex
	lines []receiverLine
}

func (r *receiver) snapshot() []receiverLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receiverLine(nil), r.lines...)
}

// startReceiver runs the Python receiver verifying with secret and
// returns once it listens.
func startReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join("testdata", "webhook_receiver.py"), secret)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONPATH="+abs)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			var l receiverLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("receiver printed %q: %v", sc.Bytes(), err)
				continue
			}
			if l.Port != 0 {
				port <- l.Port
				continue
			}
			r.mu.Lock()
			r.lines = append(r.lines, l)
			r.mu.Unlock()
		}
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case p := <-port:
		r.url = fmt.Sprintf("http://127.0.0.1:%d/hooks", p)
	case <-exited:
		t.Fatal("the receiver exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver did not listen within 30 s")
	}
	return r
}

// waitFor polls cond every 50 ms for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestWebhooksVerifiedInPython: a node sends its webhooks to two
// receivers in Python that verify them with switchboard.webhook: one
// with the node's secret accepts every batch and parses the events of a
// connection that opens, subscribes, publishes and closes; one with a
// wrong secret answers 401 to every attempt, and the node retries.
func TestWebhooksVerifiedInPython(t *testing.T) {
	requirePython(t)
	const secret = "whsec_python_receiver_0123456789"
	good := startReceiver(t, secret)
	bad := startReceiver(t, "whsec_not_the_node_secret_98765")
	n := wstest.Start(t, server.Config{
		NoDemo:  true,
		NoAdmin: true,
		Webhook: webhook.Options{
			URLs:                  []string{good.url, bad.url},
			Secrets:               []string{secret},
			PublicationNamespaces: []string{"*"},
			MaxDelay:              20 * time.Millisecond,
			MaxAttempts:           3,
			BackoffMin:            50 * time.Millisecond,
			BackoffMax:            200 * time.Millisecond,
		},
	})

	c := n.MustDial(t, "", nil)
	var hello struct {
		ConnectionID string `json:"connection_id"`
		UserID       string `json:"user_id"`
	}
	if err := json.Unmarshal(c.Expect("connection_established").Data, &hello); err != nil {
		t.Fatal(err)
	}
	c.Send(map[string]any{"type": "subscribe", "id": "s1", "room": "chat:hooks"})
	c.Expect("subscribed")
	c.Send(map[string]any{"type": "message", "id": "p1", "room": "chat:hooks", "exclude_self": true, "data": map[string]any{"text": "hi"}})
	var ack struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(c.Expect("ack").Data, &ack); err != nil {
		t.Fatal(err)
	}
	if err := c.WS.Close(); err != nil {
		t.Fatal(err)
	}

	// The good receiver: every event, each batch verified.
	byType := map[string]map[string]any{}
	waitFor(t, "connection.closed at the good receiver", func() bool {
		for _, l := range good.snapshot() {
			for _, ev := range l.Events {
				if ev["type"] == "connection.closed" {
					return true
				}
			}
		}
		return false
	})
	ids := map[string]bool{}
	for _, l := range good.snapshot() {
		if l.Status != 200 || l.Batch == "" {
			t.Errorf("good receiver answered %d (%s) to batch %q", l.Status, l.Error, l.Batch)
		}
		for _, ev := range l.Events {
			id, _ := ev["id"].(string)
			if id == "" || ids[id] {
				t.Errorf("event id %q empty or repeated: %v", id, ev)
			}
			ids[id] = true
			typ, _ := ev["type"].(string)
			byType[typ] = ev
		}
	}
	classes := map[string]string{
		"connection.opened": "ConnectionOpened", "member.added": "MemberAdded", "room.occupied": "RoomOccupied",
		"publication": "Publication", "member.removed": "MemberRemoved", "room.vacated": "RoomVacated",
		"connection.closed": "ConnectionClosed",
	}
	for typ, class := range classes {
		ev, ok := byType[typ]
		if !ok {
			t.Errorf("no %s event; got %v", typ, byType)
			continue
		}
		if ev["class"] != class {
			t.Errorf("%s parsed as %v, want %s", typ, ev["class"], class)
		}
	}
	if len(byType) != len(classes) {
		t.Errorf("event types %v, want exactly %d", byType, len(classes))
	}
	if ev := byType["connection.opened"]; ev != nil && (ev["client"] != hello.ConnectionID || ev["user"] != hello.UserID) {
		t.Errorf("connection.opened %v, want client %s user %s", ev, hello.ConnectionID, hello.UserID)
	}
	if ev := byType["member.added"]; ev != nil && (ev["room"] != "chat:hooks" || ev["client"] != hello.ConnectionID) {
		t.Errorf("member.added %v", ev)
	}
	if ev := byType["publication"]; ev != nil {
		if ev["event_id"] != ack.EventID || ev["event_type"] != "message" || ev["room"] != "chat:hooks" || ev["client"] != hello.ConnectionID {
			t.Errorf("publication %v, want event_id %s", ev, ack.EventID)
		}
		if d, _ := ev["data"].(map[string]any); d["text"] != "hi" {
			t.Errorf("publication data %v", ev["data"])
		}
	}
	occ, vac := byType["room.occupied"], byType["room.vacated"]
	if occ != nil && vac != nil {
		if g, _ := occ["generation"].(float64); g < 1 || vac["generation"] != occ["generation"] {
			t.Errorf("generations occupied %v vacated %v", occ["generation"], vac["generation"])
		}
	}
	if ev := byType["connection.closed"]; ev != nil {
		if code, _ := ev["code"].(float64); code == 0 {
			t.Errorf("connection.closed without a code: %v", ev)
		}
	}

	// The wrong secret: refused every time, and the node tried again.
	waitFor(t, "a retried batch at the wrong-secret receiver", func() bool {
		seen := map[string]int{}
		for _, l := range bad.snapshot() {
			seen[l.Batch]++
			if seen[l.Batch] >= 2 {
				return true
			}
		}
		return false
	})
	for _, l := range bad.snapshot() {
		if l.Status != 401 || l.Error != "SignatureMismatch" || len(l.Events) != 0 {
			t.Errorf("wrong-secret receiver: %+v, want 401 SignatureMismatch", l)
		}
	}
}
