package redis

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
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/enginetest"
)

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
		mustNoErr(t, writeFile(f, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))), "write %s", name)
		return f
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// TestTLS connects over TLS to a Redis that only speaks TLS, trusting the
// test CA; without the CA the certificate is refused. (The Redis of
// Debian and the official images is built with TLS.)
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCA(t, dir)
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
