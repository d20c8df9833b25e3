package redis

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/internal/testcert"
)

// TestTLS connects over TLS to a Redis that only speaks TLS, trusting the
// test CA; without the CA the certificate is refused. (The Redis of
// Debian and the official images is built with TLS.)
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testcert.WriteCA(t, dir)
	r := newPrivateRedis(t)
	r.args = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")}
	r.start()

	e := newTestEngine(t, Options{Addr: r.addr(), KeyPrefix: "tls:", TLS: true, TLSCAFile: caFile})
	rec := enginetest.NewRecorder()
	startEngine(t, e, rec)
	ctx := context.Background()
	mustNoErr(t, e.Subscribe(ctx, "room"), "subscribe")
	_, err := e.Publish(ctx, "room", &engine.Publication{Type: "m"}, engine.PublishOptions{History: engine.HistoryPolicy{Size: 10}})
	mustNoErr(t, err, "publish")
	waitFor(t, 5*time.Second, "the event over TLS", func() bool { return rec.Count("room") == 1 })

	untrusted, err := New(Options{Addr: r.addr(), TLS: true, ConnectTimeout: 500 * time.Millisecond})
	mustNoErr(t, err, "new")
	defer untrusted.Close()
	if err := untrusted.Run(ctx, enginetest.NewRecorder()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Run without the CA = %v, want a certificate error", err)
	}
}
