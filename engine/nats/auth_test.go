package nats

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
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
	caFile, certFile, keyFile := writeTestCA(t, dir)
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

// writeTestCA writes a CA and a server certificate for 127.0.0.1 signed
// by it into dir; it returns the CA, certificate and key file names.
func writeTestCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustNoErr(t, err, "ca key")
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	mustNoErr(t, err, "ca cert")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustNoErr(t, err, "key")
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &key.PublicKey, caKey)
	mustNoErr(t, err, "server cert")
	keyDER, err := x509.MarshalECPrivateKey(key)
	mustNoErr(t, err, "marshal key")
	write := func(name, typ string, der []byte) string {
		f := filepath.Join(dir, name)
		mustNoErr(t, os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600), "write %s", name)
		return f
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
