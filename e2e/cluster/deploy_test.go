package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The deployment files under test, relative to this package.
const (
	composeFile  = "../../deploy/docker-compose.yml"
	clusterKube  = "../../deploy/kubernetes/cluster.yaml"
	testAPIKey   = "e2e-cluster-api-key-0123456789abcdef"
	testRedisPwd = "e2e-cluster-redis-password-0123456789"
)

// serveFlags returns the names of `switchboard serve`'s flags, from its
// help text.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, _ := exec.Command(switchboardBinary(t), "serve", "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllSubmatch(out, -1) {
		flags[string(m[1])] = true
	}
	if !flags["engine"] || !flags["redis-addr"] {
		t.Fatalf("could not read the serve flags from `switchboard serve -h`:\n%s", out)
	}
	return flags
}

// checkEnvNames fails for a SWITCHBOARD_* variable that names no flag: a
// misspelt one is silently ignored by the server.
func checkEnvNames(t *testing.T, where string, env map[string]string, flags map[string]bool) {
	t.Helper()
	for k := range env {
		name, ok := strings.CutPrefix(k, "SWITCHBOARD_")
		if !ok {
			continue
		}
		if flag := strings.ReplaceAll(strings.ToLower(name), "_", "-"); !flags[flag] {
			t.Errorf("%s: %s names no serve flag (--%s)", where, k, flag)
		}
	}
}

// crossNodeCheck subscribes a client on every node but the first, publishes
// over a socket on the first, and checks everyone gets the event.
func crossNodeCheck(t *testing.T, nodes []*node, opts dialOptions) {
	t.Helper()
	const room = "deploy:check"
	var members []*wsConn
	for _, n := range nodes[1:] {
		m := mustDial(t, n.wsURL(), opts)
		m.subscribe(room, "")
		members = append(members, m)
	}
	pub := mustDial(t, nodes[0].wsURL(), opts)
	if a := pub.request("seq", room, seqData{N: 0}); a.Type != "ack" {
		t.Fatalf("publish on node %s answered %s %s", nodes[0].name, a.Type, a.Data)
	}
	for _, m := range members {
		checkSequence(t, "member on node "+m.node(), m.waitEvents(room, 1), 1)
	}
}

// composeDoc is the part of docker-compose.yml the test reads.
type composeDoc struct {
	Services map[string]struct {
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Networks    any               `yaml:"networks"` // a list, or a map with addresses
	} `yaml:"services"`
}

// ipv4 returns service's fixed address on network, if it has one.
func (d composeDoc) ipv4(service, network string) string {
	nets, _ := d.Services[service].Networks.(map[string]any)
	n, _ := nets[network].(map[string]any)
	ip, _ := n["ipv4_address"].(string)
	return ip
}

// TestComposeFile: deploy/docker-compose.yml's node settings name real
// flags and, given to three real nodes (with this machine's Redis and
// ports), make a working cluster with the nodes' names; its nginx command
// turns deploy/nginx/cluster.conf into a valid configuration for the
// containers; its Redis keeps an append-only file. Where Docker's compose
// is installed, `docker compose config` must accept the file too.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc composeDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	flags := serveFlags(t)
	addr := sharedRedis(t)
	prefix := keyPrefix(t, addr)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("switchboard-%d", i)
		svc, ok := doc.Services[name]
		if !ok {
			t.Fatalf("%s: no service %s", composeFile, name)
		}
		checkEnvNames(t, composeFile+": "+name, svc.Environment, flags)
		if svc.Environment["SWITCHBOARD_ENGINE"] != "redis" || svc.Environment["SWITCHBOARD_NODE_ID"] != name {
			t.Errorf("%s: engine %q, node id %q; want redis and %s", name, svc.Environment["SWITCHBOARD_ENGINE"], svc.Environment["SWITCHBOARD_NODE_ID"], name)
		}
		var env []string
		for k, v := range svc.Environment {
			switch k {
			case "SWITCHBOARD_REDIS_ADDR":
				v = addr // the compose network's "redis" is not here
			case "SWITCHBOARD_API_KEY":
				v = testAPIKey // compose fills it from the environment
			}
			env = append(env, k+"="+v)
		}
		env = append(env, "SWITCHBOARD_REDIS_KEY_PREFIX="+prefix)
		nodes = append(nodes, launchNode(t, name, nodeConfig{
			exact: []string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--no-demo"}, env: env}))
	}
	for _, n := range nodes {
		n.waitReady(startTimeout)
	}
	crossNodeCheck(t, nodes, dialOptions{})
	for _, n := range nodes {
		c := mustDial(t, n.wsURL(), dialOptions{})
		if c.node() != n.name {
			t.Errorf("a node started as %s calls itself %q", n.name, c.node())
		}
	}

	redis := fmt.Sprint(doc.Services["redis"].Command)
	if !strings.Contains(redis, "--appendonly yes") {
		t.Errorf("redis command %s: want --appendonly yes (histories must survive a Redis restart)", redis)
	}

	// The nginx service rewrites the shipped config with sed: run the same
	// expressions here and check the result.
	cmd := fmt.Sprint(doc.Services["nginx"].Command)
	var sedArgs []string
	for _, m := range regexp.MustCompile(`-e '([^']*)'`).FindAllStringSubmatch(cmd, -1) {
		sedArgs = append(sedArgs, "-e", m[1])
	}
	if len(sedArgs) == 0 || !strings.Contains(cmd, "/etc/switchboard/cluster.conf") {
		t.Fatalf("nginx command %q: want sed -e '...' over /etc/switchboard/cluster.conf", cmd)
	}
	sed := needTool(t, "sed")
	out, err := exec.Command(sed, append(sedArgs, shippedNginxConf)...).Output()
	if err != nil {
		t.Fatalf("sed %v: %v", sedArgs, err)
	}
	var want []string
	for i := 1; i <= 3; i++ {
		ip := doc.ipv4(fmt.Sprintf("switchboard-%d", i), "switchboard")
		if ip == "" {
			t.Fatalf("switchboard-%d has no fixed ipv4_address", i)
		}
		want = append(want, "server "+ip+":8080 ")
	}
	for _, w := range want {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("the rewritten nginx config lacks %q:\n%s", w, out)
		}
	}
	if bytes.Contains(out, []byte("127.0.0.1:808")) {
		t.Errorf("the rewritten nginx config still names 127.0.0.1 nodes")
	}
	proxyIP := doc.ipv4("nginx", "switchboard")
	if tp := doc.Services["switchboard-1"].Environment["SWITCHBOARD_TRUSTED_PROXIES"]; tp != proxyIP+"/32" {
		t.Errorf("nodes trust %q as proxy, but nginx is at %s", tp, proxyIP)
	}
	if bin, err := exec.LookPath("nginx"); err == nil || fileExists("/usr/sbin/nginx") {
		if err != nil {
			bin = "/usr/sbin/nginx"
		}
		dir := t.TempDir()
		inc := filepath.Join(dir, "compose.conf")
		if err := os.WriteFile(inc, out, 0o644); err != nil {
			t.Fatal(err)
		}
		nginxTest(t, bin, dir, inc)
	}

	composeConfig(t)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// composeConfig runs `docker compose config` (or docker-compose) on the
// file when one of them is installed; neither is required.
func composeConfig(t *testing.T) {
	t.Helper()
	var cmd *exec.Cmd
	if docker, err := exec.LookPath("docker"); err == nil && exec.Command(docker, "compose", "version").Run() == nil {
		cmd = exec.Command(docker, "compose", "-f", composeFile, "config", "-q")
	} else if dc, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command(dc, "-f", composeFile, "config", "-q")
	} else {
		t.Log("neither `docker compose` nor docker-compose is installed: the file's schema was not checked")
		return
	}
	cmd.Env = append(cleanEnv(), "SWITCHBOARD_API_KEY="+testAPIKey)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// kubeDoc is the part of a Kubernetes object the test reads.
type kubeDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas     int `yaml:"replicas"`
		MinAvailable int `yaml:"minAvailable"`
		Template     struct {
			Spec struct {
				Containers []kubeContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kubeContainer struct {
	Name string   `yaml:"name"`
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Key string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	LivenessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"livenessProbe"`
}

// secretValue is what the test puts where the manifest reads a Secret.
func secretValue(t *testing.T, key string) string {
	t.Helper()
	switch key {
	case "api-key":
		return testAPIKey
	case "redis-password":
		return testRedisPwd
	}
	t.Fatalf("the manifest reads secret key %q, which its instructions do not create", key)
	return ""
}

// TestKubernetesCluster: deploy/kubernetes/cluster.yaml runs several
// replicas, and its Redis and Deployment settings work: a redis-server
// with the StatefulSet's arguments (password included) and three nodes
// with the Deployment's arguments and environment (Secrets and the pod
// name filled in) make a working cluster whose probe paths answer 200.
func TestKubernetesCluster(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(clusterKube)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]kubeDoc{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d kubeDoc
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", clusterKube, err)
		}
		objs[d.Kind+"/"+d.Metadata.Name] = d
	}
	for _, k := range []string{"StatefulSet/switchboard-redis", "Service/switchboard-redis", "Deployment/switchboard",
		"Service/switchboard", "Ingress/switchboard", "PodDisruptionBudget/switchboard"} {
		if _, ok := objs[k]; !ok {
			t.Errorf("%s: no %s", clusterKube, k)
		}
	}
	dep := objs["Deployment/switchboard"]
	if dep.Spec.Replicas < 2 {
		t.Errorf("Deployment replicas %d: a cluster needs 2 or more", dep.Spec.Replicas)
	}
	if pdb := objs["PodDisruptionBudget/switchboard"]; pdb.Spec.MinAvailable >= dep.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %d blocks every eviction of %d replicas", pdb.Spec.MinAvailable, dep.Spec.Replicas)
	}
	rs := objs["StatefulSet/switchboard-redis"].Spec.Template.Spec.Containers
	ds := dep.Spec.Template.Spec.Containers
	if len(rs) != 1 || len(ds) != 1 {
		t.Fatalf("want one container in the StatefulSet and the Deployment, have %d and %d", len(rs), len(ds))
	}

	// Redis as the StatefulSet runs it.
	redisArgs := slices.Clone(rs[0].Args)
	if len(redisArgs) == 0 || redisArgs[0] != "redis-server" {
		t.Fatalf("redis args %v: want redis-server first", redisArgs)
	}
	redisArgs = redisArgs[1:]
	for i, a := range redisArgs {
		if a == "$(REDIS_PASSWORD)" {
			redisArgs[i] = testRedisPwd
		}
	}
	if !strings.Contains(strings.Join(redisArgs, " "), "--appendonly yes") {
		t.Errorf("redis args %v: want --appendonly yes", redisArgs)
	}
	r := startRedisWith(t, &redisServer{args: redisArgs})

	// The nodes as the Deployment runs them.
	c := ds[0]
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("switchboard args %v: want serve first", c.Args)
	}
	flags := serveFlags(t)
	env := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v = secretValue(t, e.ValueFrom.SecretKeyRef.Key)
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = "POD"
		case e.ValueFrom != nil:
			t.Fatalf("env %s: a valueFrom the test does not know", e.Name)
		}
		env[e.Name] = v
	}
	checkEnvNames(t, clusterKube, env, flags)
	var args []string
	seen := map[string]bool{}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if a != "serve" && !flags[name] {
			t.Errorf("arg %s names no serve flag", a)
		}
		seen[name] = true
		switch name {
		case "listen":
			a = "--listen=127.0.0.1:0"
		case "redis-addr":
			a = "--redis-addr=" + r.addr()
		}
		args = append(args, a)
	}
	for _, want := range []string{"engine", "redis-addr", "log-format"} {
		if !seen[want] {
			t.Errorf("switchboard args %v lack --%s", c.Args, want)
		}
	}
	var nodes []*node
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("switchboard-7d9f-%d", i)
		var e []string
		for k, v := range env {
			if v == "POD" {
				v = name
			}
			e = append(e, k+"="+v)
		}
		nodes = append(nodes, launchNode(t, name, nodeConfig{exact: args, env: e}))
	}
	for _, n := range nodes {
		n.waitReady(startTimeout)
		for _, p := range []string{c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path} {
			resp, err := http.Get(n.url(p))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("probe path %s answered %d", p, resp.StatusCode)
			}
		}
	}
	crossNodeCheck(t, nodes, dialOptions{})
	for _, n := range nodes {
		if c := mustDial(t, n.wsURL(), dialOptions{}); c.node() != n.name {
			t.Errorf("a node started as pod %s calls itself %q", n.name, c.node())
		}
	}
}
