package cluster_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/natstest"
)

// clusterEngine makes the configuration of a test's nodes on one engine.
type clusterEngine struct {
	name string
	cfg  func(t *testing.T) nodeConfig
}

// clusterEngines are Redis (the shared server, a fresh key prefix) and
// NATS (the shared server, a fresh prefix), each with the extra flags args:
// for tests that run one body per engine.
func clusterEngines(args ...string) []clusterEngine {
	return []clusterEngine{
		{"redis", func(t *testing.T) nodeConfig {
			addr := sharedRedis(t)
			return nodeConfig{redis: addr, prefix: keyPrefix(t, addr), args: args}
		}},
		{"nats", func(t *testing.T) nodeConfig {
			u := natstest.URL(t)
			return nodeConfig{args: append([]string{"--engine", "nats", "--nats-url", u, "--nats-prefix", natsPrefix(t, u)}, args...)}
		}},
	}
}

// startPair starts nodes n1 and n2 with cfg, side by side.
func startPair(t *testing.T, cfg nodeConfig) (*node, *node) {
	t.Helper()
	n1 := launchNode(t, "n1", cfg)
	n2 := launchNode(t, "n2", cfg)
	n1.waitReady(startTimeout)
	n2.waitReady(startTimeout)
	return n1, n2
}

// emuClient is an emulated session (docs/protocol.md section 13): an
// NDJSON stream from one node, whose envelopes it records.
type emuClient struct {
	t       *testing.T
	resp    *http.Response
	ch      chan msg
	session string
	node    string // the node holding the session
}

// openEmulation opens a stream from addr (a node, or a proxy).
func openEmulation(t *testing.T, addr string) *emuClient {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/emulation/stream?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: GET /emulation/stream: %s %s", addr, resp.Status, b)
	}
	c := &emuClient{t: t, resp: resp, ch: make(chan msg, 1024)}
	go func() {
		defer close(c.ch)
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			if line = bytes.TrimSpace(line); len(line) == 0 {
				continue // heartbeat
			}
			var m msg
			if json.Unmarshal(line, &m) == nil {
				c.ch <- m
			}
		}
	}()
	ce := c.expect("connection_established", "")
	var d struct {
		Session   string `json:"session"`
		Transport string `json:"transport"`
		Node      string `json:"node"`
	}
	_ = json.Unmarshal(ce.Data, &d)
	if d.Session == "" || d.Transport != "http_stream" || d.Node == "" {
		t.Fatalf("connection_established %s", ce.Data)
	}
	c.session, c.node = d.Session, d.Node
	return c
}

// expect returns the next envelope of type typ (and id, if not empty),
// passing over join/leave notices and room events.
func (c *emuClient) expect(typ, id string) msg {
	c.t.Helper()
	timeout := time.After(waitTimeout)
	for range 1000 {
		select {
		case m, ok := <-c.ch:
			if !ok {
				c.t.Fatalf("stream ended waiting for %s", typ)
			}
			if m.Type == "user_joined" || m.Type == "user_left" || (m.isRoomEvent(m.Room) && typ != m.Type) {
				continue // room events arrive from the engine, in their own time
			}
			if m.Type != typ || (id != "" && m.ID != id) {
				c.t.Fatalf("got %s %s %s, want %s %s", m.Type, m.ID, m.Data, typ, id)
			}
			return m
		case <-timeout:
			c.t.Fatalf("no %s within %s", typ, waitTimeout)
		}
	}
	c.t.Fatalf("no %s in 1000 envelopes", typ)
	return msg{}
}

// postFrames POSTs frames for session to addr (a node, or a proxy); it
// returns the status and body.
func postFrames(t *testing.T, addr, session string, frames ...any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"session": session, "frames": frames})
	resp, err := http.Post("http://"+addr+"/emulation/send", "text/plain", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST to %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestEmulationAcrossNodes runs two real nodes per engine: a session
// streams from n1 while every frame is POSTed to n2, which routes it over
// the engine to n1. Answers (subscribed, ack, pong) come down the stream
// in order, the publish reaches a member on n2, and once n1 is gone a POST
// to n2 answers 404 within the session timeout instead of hanging.
func TestEmulationAcrossNodes(t *testing.T) {
	for _, eng := range clusterEngines() {
		t.Run(eng.name, func(t *testing.T) {
			cfg := eng.cfg(t)
			n1, n2 := startPair(t, cfg)
			const room = "emu:cross"
			member := mustDial(t, n2.wsURL(), dialOptions{})
			member.subscribe(room, "")

			s := openEmulation(t, n1.addr)
			if s.node != n1.name {
				t.Fatalf("session on %s, want n1", s.node)
			}
			send := func(frames ...any) {
				t.Helper()
				if status, body := postFrames(t, n2.addr, s.session, frames...); status != http.StatusNoContent {
					t.Fatalf("POST to n2: %d %s", status, body)
				}
			}
			send(map[string]any{"type": "subscribe", "id": "s1", "room": room})
			s.expect("subscribed", "s1")
			const k = 20
			frames := make([]any, 0, k+1)
			for i := range k {
				frames = append(frames, map[string]any{"type": "seq", "id": fmt.Sprintf("p%02d", i), "room": room, "data": seqData{N: i}})
			}
			frames = append(frames, map[string]any{"type": "ping", "id": "ping"})
			send(frames...)
			// Each publish: its own event and its ack, the acks in order.
			acks := 0
			for acks < k {
				select {
				case m := <-s.ch:
					switch {
					case m.Type == "ack":
						if want := fmt.Sprintf("p%02d", acks); m.ID != want {
							t.Fatalf("ack %s, want %s", m.ID, want)
						}
						acks++
					case m.isRoomEvent(room), m.Type == "user_joined":
					default:
						t.Fatalf("unexpected %s %s %s", m.Type, m.ID, m.Data)
					}
				case <-time.After(waitTimeout):
					t.Fatalf("%d of %d acks", acks, k)
				}
			}
			for {
				m := <-s.ch
				if m.Type == "pong" && m.ID == "ping" {
					break
				}
				if !m.isRoomEvent(room) {
					t.Fatalf("before the pong: %s %s", m.Type, m.Data)
				}
			}
			evs := member.waitEvents(room, k)
			checkSequence(t, "member on n2", evs[:k], k)

			// A POST near the body limit (64 frames of 60 KB, 3.8 MB) is
			// more than a broker message may carry (NATS: 1 MiB): it is
			// routed in parts, in order.
			big := make([]any, 64)
			pad := strings.Repeat("x", 60000)
			for i := range big {
				big[i] = map[string]any{"type": "ping", "id": fmt.Sprintf("big%02d", i), "data": pad}
			}
			send(big...)
			for i := range big {
				s.expect("pong", fmt.Sprintf("big%02d", i))
			}

			// A wrong secret is refused through n2 as on n1.
			if status, _ := postFrames(t, n2.addr, s.session[:17]+"AAAAAAAAAAAAAAAAAAAAAAAA", map[string]any{"type": "ping"}); status != http.StatusNotFound {
				t.Errorf("wrong secret through n2: %d", status)
			}
			// The session's node is gone: 404 from n2 after the session
			// timeout (3 s), not a hang.
			n1.kill()
			start := time.Now()
			if status, body := postFrames(t, n2.addr, s.session, map[string]any{"type": "ping"}); status != http.StatusNotFound {
				t.Errorf("n1 gone: %d %s, want 404", status, body)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("n1 gone: answered after %s", d)
			}
		})
	}
}

// TestNginxEmulation: emulated sessions through the shipped cluster
// nginx file in front of three nodes: the stream stays on one node while
// nginx spreads the POSTs (least_conn sends them to the other nodes), and
// every frame is answered on the stream, in order.
func TestNginxEmulation(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "--trusted-proxies", "127.0.0.1/32")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	startNginx(t, renderConf(t, readShippedConf(t), nodes, listen, ""), listen)
	s := openEmulation(t, listen)
	for i := range 10 {
		id := fmt.Sprintf("ping%d", i)
		if status, body := postFrames(t, listen, s.session, map[string]any{"type": "ping", "id": id}); status != http.StatusNoContent {
			t.Fatalf("POST %d through nginx: %d %s", i, status, body)
		}
		s.expect("pong", id)
	}
}
