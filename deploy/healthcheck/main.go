// Command healthcheck probes a Switchboard node's /healthz from inside its
// container: the runtime image (distroless) has no shell, curl or wget for
// a Docker HEALTHCHECK. It exits 0 when the node answers 200 within the
// timeout, 1 otherwise, printing why.
//
//	healthcheck                          # http://127.0.0.1:$PORT/healthz, PORT from SWITCHBOARD_LISTEN (default 8080)
//	healthcheck http://127.0.0.1:9000/readyz
//
// With SWITCHBOARD_TLS_CERT set the node serves TLS, and the probe uses
// https without verifying the certificate: it only asks the node on its own
// loopback address whether it is alive, and the certificate names the
// public host, not 127.0.0.1.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	url, err := target(os.Args[1:], os.Getenv)
	if err == nil {
		err = probe(url, 3*time.Second)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// target returns the URL to probe: the argument, or /healthz on the port
// of SWITCHBOARD_LISTEN.
func target(args []string, getenv func(string) string) (string, error) {
	switch len(args) {
	case 0:
	case 1:
		return args[0], nil
	default:
		return "", fmt.Errorf("usage: healthcheck [URL]")
	}
	port := "8080"
	if l := getenv("SWITCHBOARD_LISTEN"); l != "" {
		_, p, err := net.SplitHostPort(l)
		if err != nil || p == "" || p == "0" {
			return "", fmt.Errorf("SWITCHBOARD_LISTEN=%q has no port to probe", l)
		}
		port = p
	}
	scheme := "http"
	if getenv("SWITCHBOARD_TLS_CERT") != "" {
		scheme = "https"
	}
	return scheme + "://127.0.0.1:" + port + "/healthz", nil
}

func probe(url string, timeout time.Duration) error {
	c := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // loopback liveness only; see the package comment
			Proxy:           nil,                                   // never through HTTP_PROXY
		},
	}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, body)
	}
	return nil
}
