package nats

import (
	"context"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
	"github.com/switchboard-rt/switchboard/internal/testcert"
)

// runs reports whether an engine with opts connects and publishes.
func runs(t *testing.T, opts Options) error {
	t.Helper()
	opts.ConnectTimeout = 500 * time.Millisecond
	e := newTestEngine(t, opts)
	defer e.Close()
	if err := e.Run(context.Background(), enginetest.NewRecorder()); err != nil {
		return err
	}
	_, err := e.Publish(context.Background(), "r", &engine.Publication{Type: "m"}, engine.PublishOptions{})
	return err
}

func TestCredentials(t *testing.T) {
	userSrv := startPrivateNATS(t, []string{"--user", "sb", "--pass", "secret"}, natsgo.UserInfo("sb", "secret"))
	tokenSrv := startPrivateNATS(t, []string{"--auth", "tok3n"}, natsgo.Token("tok3n"))
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"user and password", Options{URL: userSrv.url(), User: "sb", Password: "secret"}, true},
		{"wrong password", Options{URL: userSrv.url(), User: "sb", Password: "nope"}, false},
		{"no credentials", Options{URL: userSrv.url()}, false},
		{"token", Options{URL: tokenSrv.url(), Token: "tok3n"}, true},
		{"wrong token", Options{URL: tokenSrv.url(), Token: "other"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runs(t, tt.opts)
			if tt.ok && err != nil {
				t.Errorf("engine failed: %v", err)
			}
			if !tt.ok && err == nil {
				t.Error("engine ran with bad credentials")
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testcert.WriteCA(t, dir)
	srv := startPrivateNATS(t, []string{"--tls", "--tlscert", certFile, "--tlskey", keyFile}, natsgo.RootCAs(caFile))
	if err := runs(t, Options{URL: srv.url(), TLS: true, TLSCAFile: caFile}); err != nil {
		t.Errorf("with the CA: %v", err)
	}
	// The test CA is not among the system roots: verification must fail.
	if err := runs(t, Options{URL: srv.url(), TLS: true}); err == nil {
		t.Error("connected without trusting the server's CA")
	}
	if err := runs(t, Options{URL: srv.url()}); err == nil {
		t.Error("connected to a TLS-only server without TLS")
	}
}
