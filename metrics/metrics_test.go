package metrics_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

func scrape(t *testing.T, n *wstest.Node, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.Addr+"/metrics", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// value returns the sample line of metric (with labels) from an exposition.
func value(body, metric string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, metric+" ") {
			return strings.TrimPrefix(line, metric+" ")
		}
	}
	return ""
}

func TestMetricsFollowTraffic(t *testing.T) {
	n := wstest.Start(t, server.Config{})
	a := n.MustDial(t, "", nil)
	a.Expect("connection_established")
	b := n.MustDial(t, "", nil)
	b.Expect("connection_established")
	for _, c := range []*wstest.Conn{a, b} {
		c.Send(map[string]any{"type": "subscribe", "id": "s", "room": "chat:m"})
		c.Expect("subscribed")
	}
	a.Send(map[string]any{"type": "message", "id": "m1", "room": "chat:m", "data": "x"})
	b.Expect("message")
	a.Expect("message") // its own event
	a.Expect("ack")
	a.Send(map[string]any{"type": "nope"}) // an error event
	a.Expect("error")

	status, body := scrape(t, n, "")
	if status != http.StatusOK {
		t.Fatalf("scrape from loopback: %d %s", status, body)
	}
	checks := map[string]string{
		"switchboard_connections":                            "2",
		"switchboard_rooms":                                  "1",
		"switchboard_publications_total":                     "1",
		"switchboard_handshakes_total{status=\"101\"}":       "2",
		"switchboard_fanout_duration_seconds_count":          "3", // two user_joined notices and the message
		"switchboard_client_errors_total":                    "1",
		"switchboard_recoveries_total{result=\"recovered\"}": "0",
	}
	for m, want := range checks {
		if got := value(body, m); got != want {
			t.Errorf("%s = %q, want %q", m, got, want)
		}
	}
	for _, m := range []string{"go_goroutines", "process_resident_memory_bytes", "switchboard_messages_out_total", "switchboard_bytes_out_total"} {
		if value(body, m) == "" {
			t.Errorf("%s missing", m)
		}
	}
	if strings.Contains(body, "chat:m") {
		t.Error("a room name appears in the metrics: labels must not carry rooms")
	}

	a.WS.Close()
	// The close is counted once the server has processed it.
	for i := 0; i < 200; i++ {
		if _, body = scrape(t, n, ""); value(body, "switchboard_connections") == "1" {
			break
		}
	}
	if got := value(body, "switchboard_connections"); got != "1" {
		t.Errorf("after a close: connections = %s", got)
	}
}

func TestMetricsNeedTheKey(t *testing.T) {
	n := wstest.Start(t, server.Config{APIKey: "metrics-key-metrics-key"})
	if status, _ := scrape(t, n, ""); status != http.StatusUnauthorized {
		t.Errorf("no key: %d", status)
	}
	if status, _ := scrape(t, n, "wrong-key-wrong-key"); status != http.StatusForbidden {
		t.Errorf("wrong key: %d", status)
	}
	if status, _ := scrape(t, n, "metrics-key-metrics-key"); status != http.StatusOK {
		t.Errorf("right key: %d", status)
	}
}
