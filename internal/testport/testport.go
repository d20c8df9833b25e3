// Package testport finds loopback ports for tests that start programs
// which cannot listen on port 0 and report the port (nginx, redis-server,
// nats-server).
package testport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Ports are picked below Linux's ephemeral range (32768-60999 by
// default): a port from that range that was free a moment ago can be
// taken as the source port of any outgoing connection (other tests make
// thousands) before the program binds it.
const (
	low  = 20000
	high = 32000
)

// Free returns a loopback port in [20000, 32000) that was free a moment
// ago.
func Free(tb testing.TB) int {
	tb.Helper()
	for range 200 {
		p := low + rand.IntN(high-low)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	tb.Fatalf("no free loopback port in %d-%d", low, high-1)
	return 0
}
