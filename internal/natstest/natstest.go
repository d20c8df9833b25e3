// Package natstest gives tests the shared NATS server (with JetStream) and
// removes what they left in it.
package natstest

import (
	"context"
	"os"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// URL returns the shared NATS the tests use: SWITCHBOARD_TEST_NATS,
// default nats://127.0.0.1:4222. Without it the test skips, except under
// CI, where a missing NATS is a failure (a skipped suite would pass
// silently).
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("SWITCHBOARD_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("NATS is not reachable at %s and CI is set, so the NATS engine cannot be tested: %v", url, err)
		}
		tb.Skipf("NATS is not reachable at %s (%v): start one with "+
			"`nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats` or set SWITCHBOARD_TEST_NATS", url, err)
	}
	nc.Close()
	return url
}

// DeleteStreams removes the named JetStream streams (a key-value bucket B
// is the stream KV_B), best effort.
func DeleteStreams(url string, names ...string) {
	nc, err := natsgo.Connect(url, natsgo.Timeout(2*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range names {
		_ = js.DeleteStream(ctx, s)
	}
}
