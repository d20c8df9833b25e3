//go:build !linux

// The portable write path, for systems other than Linux: no direct writes
// to the descriptor (rawwrite_linux.go), so a pool round writes nothing
// and hands the queue to the connection's blocking flush, which writes
// through the net.Conn, as it does for TLS on Linux.

package transport

import "net"

// socketFD gives no descriptor for direct writes.
func socketFD(net.Conn) int { return -1 }

// writev is never called without a descriptor.
func writev(int, [][]byte) int { return -1 }

// tryWritev writes nothing: the blocking flush writes everything.
func (c *conn) tryWritev([][]byte) int { return 0 }
