package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/transport"
)

// shippedNginxConf is the file under test, relative to this package.
const shippedNginxConf = "../../deploy/nginx/cluster.conf"

// maxHeartbeat is the longest --heartbeat-interval the server accepts
// (transport.Options checks 5s..120s).
const maxHeartbeat = 120 * time.Second

func readShippedConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(shippedNginxConf)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nginxWrapper is the main configuration a test runs nginx with: in the
// foreground, one process, every file in dir, and the config under test
// included in http {} as it would be from /etc/nginx/conf.d.
func nginxWrapper(dir, include string) string {
	return fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, dir, include)
}

// nginxTest runs `nginx -t` on the wrapper including conf.
func nginxTest(t *testing.T, bin, dir, conf string) {
	t.Helper()
	wrapper := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(wrapper, []byte(nginxWrapper(dir, conf)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", wrapper, "-e", "stderr").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t with %s: %v\n%s", conf, err, out)
	}
}

var (
	upstreamBlock = regexp.MustCompile(`(?s)upstream switchboard_cluster \{(.*?)\n\}`)
	serverLine    = regexp.MustCompile(`(?m)^\s*server\s+\S+[^;\n]*;[ \t]*\n`)
)

// renderConf adapts the shipped configuration to a test: its upstream
// servers replaced by nodes, its listen lines by one loopback port, and,
// when readTimeout is set, the WebSocket location's proxy_read_timeout.
// It fails if the shipped file no longer has the parts it replaces.
func renderConf(t *testing.T, shipped string, nodes []*node, listen, readTimeout string) string {
	t.Helper()
	m := upstreamBlock.FindStringSubmatchIndex(shipped)
	if m == nil {
		t.Fatalf("%s has no `upstream switchboard_cluster { ... }` block", shippedNginxConf)
	}
	body := shipped[m[2]:m[3]]
	if len(serverLine.FindAllString(body, -1)) == 0 {
		t.Fatalf("%s: the upstream block has no server lines", shippedNginxConf)
	}
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=10s;\n", n.addr)
	}
	first := true
	body = serverLine.ReplaceAllStringFunc(body, func(string) string {
		if first {
			first = false
			return servers.String()
		}
		return ""
	})
	conf := shipped[:m[2]] + body + shipped[m[3]:]
	for _, l := range []string{"    listen 80;\n", "    listen [::]:80;\n"} {
		if !strings.Contains(conf, l) {
			t.Fatalf("%s has no %q line", shippedNginxConf, strings.TrimSpace(l))
		}
	}
	conf = strings.Replace(conf, "    listen 80;\n", "    listen "+listen+";\n", 1)
	conf = strings.Replace(conf, "    listen [::]:80;\n", "", 1)
	if readTimeout != "" {
		ws := locationBlock(t, conf, "= /ws")
		changed := regexp.MustCompile(`proxy_read_timeout\s+[^;]+;`).ReplaceAllString(ws, "proxy_read_timeout "+readTimeout+";")
		if changed == ws {
			t.Fatalf("%s: location = /ws has no proxy_read_timeout", shippedNginxConf)
		}
		conf = strings.Replace(conf, ws, changed, 1)
	}
	return conf
}

// locationBlock returns the text of `location <match> { ... }`.
func locationBlock(t *testing.T, conf, match string) string {
	t.Helper()
	start := strings.Index(conf, "location "+match+" {")
	if start < 0 {
		t.Fatalf("no `location %s` block", match)
	}
	depth := 0
	for i := start; i < len(conf); i++ {
		switch conf[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return conf[start : i+1]
			}
		}
	}
	t.Fatalf("`location %s` is not closed", match)
	return ""
}

// directive returns the arguments of the directive name in block, or ""
// when it is absent or commented out.
func directive(block, name string) string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s+([^;]*);`)
	m := re.FindStringSubmatch(block)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// nginxDuration parses an nginx time value ("3600s", "1h", "90", "500ms").
func nginxDuration(v string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			if k, err := strconv.Atoi(n); err == nil {
				return time.Duration(k) * u.unit, nil
			}
		}
	}
	k, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("not an nginx time: %q", v)
	}
	return time.Duration(k) * time.Second, nil
}

// TestNginxConfShipped: the shipped cluster configuration passes
// `nginx -t` as it is, and its WebSocket location has what long-lived
// WebSockets need. The timeout must outlast the longest heartbeat the
// server can be set to, plus the pong timeout: otherwise nginx closes
// idle connections that the server still considers alive.
func TestNginxConfShipped(t *testing.T) {
	t.Parallel()
	bin := needTool(t, "nginx", "/usr/sbin/nginx")
	abs, err := filepath.Abs(shippedNginxConf)
	if err != nil {
		t.Fatal(err)
	}
	nginxTest(t, bin, t.TempDir(), abs)

	ws := locationBlock(t, readShippedConf(t), "= /ws")
	wantDirectives(t, "location = /ws", ws, [][2]string{
		{"proxy_http_version", "1.1"},
		{"proxy_set_header Upgrade", "$http_upgrade"},
		{"proxy_set_header Connection", "$connection_upgrade"},
		{"proxy_set_header X-Forwarded-For", "$proxy_add_x_forwarded_for"},
		{"proxy_buffering", "off"},
	})
	for _, name := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		v, err := nginxDuration(directive(ws, name))
		if err != nil {
			t.Errorf("location = /ws: %s: %v", name, err)
			continue
		}
		if floor := maxHeartbeat + transport.DefaultPongTimeout; v <= floor {
			t.Errorf("location = /ws: %s %s does not outlast the longest heartbeat plus pong timeout (%s)", name, v, floor)
		}
		t.Logf("%s %s; default heartbeat %s", name, v, transport.DefaultHeartbeatInterval)
	}
	// The emulation's stream is unbuffered and long; its POSTs fit.
	wantDirectives(t, "location /emulation/", locationBlock(t, readShippedConf(t), "/emulation/"), [][2]string{
		{"proxy_http_version", "1.1"},
		{"proxy_buffering", "off"},
		{"proxy_read_timeout", "3600s"},
		{"client_max_body_size", "5m"},
	})
}

// wantDirectives checks the values of directives (name, value) in block.
func wantDirectives(t *testing.T, where, block string, want [][2]string) {
	t.Helper()
	for _, d := range want {
		if got := directive(block, d[0]); got != d[1] {
			t.Errorf("%s: %s is %q, want %q", where, d[0], got, d[1])
		}
	}
}

// nginxProc is a running nginx.
type nginxProc struct {
	addr string
	log  *logFile
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *nginxProc) wsURL() string { return "ws://" + p.addr + "/ws" }

// startNginx runs nginx in the foreground with conf (rendered from the
// shipped file) on addr until the test ends.
func startNginx(t *testing.T, conf, addr string) *nginxProc {
	t.Helper()
	bin := needTool(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	inc := filepath.Join(dir, "cluster.conf")
	if err := os.WriteFile(inc, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxTest(t, bin, dir, inc)
	p := &nginxProc{addr: addr, log: newLogFile(t, "nginx"), done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	if err := pollUntil(startTimeout, 20*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("nginx did not listen on %s; its log:\n%s", addr, p.log.tail(4000))
	}
	return p
}

// TestNginxAcrossNodes: clients connected through nginx are spread over
// the nodes and exchange messages across them; when a node dies, its
// clients (the Go client package, given only nginx's address) reconnect
// through nginx to the survivors and recover every event in order.
func TestNginxAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "--trusted-proxies", "127.0.0.1/32")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	px := startNginx(t, renderConf(t, readShippedConf(t), nodes, listen, ""), listen)

	const room = "nginx:room"
	// Raw clients first: where does nginx send them?
	perNode := map[string]int{}
	var raw []*wsConn
	for range 6 {
		c := mustDial(t, px.wsURL(), dialOptions{})
		c.subscribe(room, "")
		perNode[c.node()]++
		raw = append(raw, c)
	}
	if len(perNode) != 3 {
		t.Errorf("6 clients through nginx landed on %v; want every node used", perNode)
	}
	for i := range 20 {
		raw[i%len(raw)].request("seq", room, seqData{N: i})
	}
	for _, c := range raw {
		checkSequence(t, "client on node "+c.node()+" via nginx", c.waitEvents(room, 20), 20)
	}

	// Clients of the Go client package, which knows only nginx's URL.
	const stream = "nginx:stream"
	type got struct {
		mu     sync.Mutex
		events []client.Event
	}
	var clients []*client.Client
	var gots []*got
	for range 6 {
		g := &got{}
		c := client.New(px.wsURL(), &client.Options{InitialDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		if err := c.Connect(ctx); err != nil {
			cancel()
			t.Fatalf("client: %v", err)
		}
		if _, err := c.Subscribe(ctx, stream, func(e client.Event) {
			g.mu.Lock()
			g.events = append(g.events, e)
			g.mu.Unlock()
		}); err != nil {
			cancel()
			t.Fatalf("subscribe: %v", err)
		}
		cancel()
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
		gots = append(gots, g)
	}
	// Which of them are on the node that will die?
	var roomInfo struct {
		Connections []struct {
			ConnectionID string `json:"connection_id"`
		} `json:"connections"`
	}
	victim := nodes[2]
	mustAPI(t, victim, http.MethodGet, "/api/rooms/"+stream, nil, &roomInfo)
	onVictim := map[string]bool{}
	for _, c := range roomInfo.Connections {
		onVictim[c.ConnectionID] = true
	}
	moved, wasOnVictim := 0, make([]bool, len(clients))
	for i, c := range clients {
		if onVictim[c.ConnectionID()] {
			moved++
			wasOnVictim[i] = true
		}
	}
	if moved == 0 {
		t.Fatalf("no client landed on node %s", victim.name)
	}

	const total, killAt = 300, 100
	ctx := context.Background()
	for i := range total {
		if i == killAt {
			victim.kill()
		}
		if _, status, b, err := broadcast(ctx, nodes[i%2], stream, "seq", seqData{N: i}, fmt.Sprintf("nginx-%d", i)); err != nil || status != http.StatusOK {
			t.Fatalf("publish %d: HTTP %d %s (%v)", i, status, b, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := pollUntil(30*time.Second, 50*time.Millisecond, func() bool {
		for _, g := range gots {
			g.mu.Lock()
			n := 0
			for _, e := range g.events {
				if e.ID != "" {
					n++
				}
			}
			g.mu.Unlock()
			if n < total {
				return false
			}
		}
		return true
	}); err != nil {
		for i, g := range gots {
			g.mu.Lock()
			t.Logf("client %d: %d events", i, len(g.events))
			g.mu.Unlock()
		}
		t.Fatalf("not every client got all %d events within 30 s", total)
	}
	for i, g := range gots {
		g.mu.Lock()
		evs := make([]msg, 0, len(g.events))
		failed := false
		for _, e := range g.events {
			if e.RecoveryFailed {
				failed = true
				continue
			}
			if m := (msg{Type: e.Type, ID: e.ID, Room: e.Room, Data: e.Data}); m.isRoomEvent(stream) {
				evs = append(evs, m) // not the user_joined/user_left notices
			}
		}
		g.mu.Unlock()
		if failed {
			t.Errorf("client %d was told its recovery failed", i)
		}
		checkSequence(t, fmt.Sprintf("Go client %d (on the killed node: %v)", i, wasOnVictim[i]), evs, total)
	}
	t.Logf("%d of %d Go clients moved from node %s to the survivors through nginx", moved, len(clients), victim.name)
}

// TestNginxForwardsClientAddress: behind nginx, a node with
// --trusted-proxies sees each client's own address (X-Forwarded-For):
// the per-IP handshake limit stops a second handshake from one client but
// not the first from another. Without the header every client would share
// nginx's address, and the second client would be refused too.
func TestNginxForwardsClientAddress(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 1, "--trusted-proxies", "127.0.0.1/32", "--handshake-rate", "0.001", "--handshake-burst", "1")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	px := startNginx(t, renderConf(t, readShippedConf(t), nodes, listen, ""), listen)

	mustDial(t, px.wsURL(), dialOptions{localIP: "127.0.0.2"})
	_, resp, err := dialWS(t, px.wsURL(), dialOptions{localIP: "127.0.0.2"})
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Errorf("second handshake from 127.0.0.2: HTTP %d (%v), want 429", status, err)
	}
	mustDial(t, px.wsURL(), dialOptions{localIP: "127.0.0.3"})
}

// TestNginxHeartbeat: the server's pings keep a proxied connection open
// past nginx's proxy_read_timeout, and nginx cuts an idle connection when
// the timeout is shorter than the heartbeat (which is why the shipped
// value must exceed it). Heartbeat 5 s; timeouts 10 s and 3 s.
func TestNginxHeartbeat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		readTimeout string
		idle        time.Duration
		wantOpen    bool
	}{
		{"timeout above heartbeat", "10s", 13 * time.Second, true},
		{"timeout below heartbeat", "3s", 9 * time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := startCluster(t, 1, "--heartbeat-interval", "5s", "--pong-timeout", "4s")
			listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
			px := startNginx(t, renderConf(t, readShippedConf(t), nodes, listen, tc.readTimeout), listen)
			c := mustDial(t, px.wsURL(), dialOptions{})
			start := time.Now()
			code, closed := c.waitClosed(tc.idle)
			if !tc.wantOpen {
				if !closed {
					t.Fatalf("proxy_read_timeout %s with a 5 s heartbeat: the connection stayed open for %s", tc.readTimeout, tc.idle)
				}
				t.Logf("nginx closed the idle connection after %s (close code %d: none sent)", time.Since(start).Round(100*time.Millisecond), code)
				return
			}
			if closed {
				t.Fatalf("closed after %s idle (code %d) although the heartbeat (5 s) is shorter than proxy_read_timeout %s", time.Since(start).Round(100*time.Millisecond), code, tc.readTimeout)
			}
			if m := c.request("ping", "", nil); m.Type != "pong" {
				t.Errorf("after %s idle: ping answered %s", tc.idle, m.Type)
			}
		})
	}
}
