// The direct write path, Linux only: the flush writes to the socket's
// descriptor with raw write(2)/writev(2) calls, guarded against a close
// (conn.sockMu). Other systems use rawwrite_other.go, where every write
// goes through the net.Conn.

package transport

import (
	"net"
	"syscall"
	"unsafe"
)

// socketFD returns raw's descriptor for direct writes, or -1. Only a
// plain non-blocking socket qualifies: a blocking one would stall a pool
// worker.
func socketFD(raw net.Conn) int {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(d uintptr) {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, d, syscall.F_GETFL, 0)
		if errno == 0 && flags&syscall.O_NONBLOCK != 0 {
			fd = int(d)
		}
	})
	return fd
}

// tryWritev makes one non-blocking writev of bufs and returns the bytes
// written: 0 when the socket is full, broken or closed, or is not a plain
// socket, which leaves it all to the blocking write.
//
// It writes to the descriptor itself rather than through the net.Conn's
// RawConn: that path's lock and poller bookkeeping, the scheduler's
// system-call hand-off (see writev) and the pool's select measured about 9%
// of the server's CPU in fan-out (docs/benchmarks.md), and a non-blocking
// write never needs the poller.
func (c *conn) tryWritev(bufs [][]byte) int {
	c.sockMu.RLock()
	n := 0
	if c.fd >= 0 && !c.wclosed {
		n = max(writev(c.fd, bufs), 0)
		if n > 0 {
			c.tail = unwritten(bufs, n)
		}
	}
	c.sockMu.RUnlock()
	return n
}

// maxIovec is the most buffers one writev takes (the kernel's UIO_MAXIOV).
const maxIovec = 1024

// writev writes bufs to the non-blocking socket fd with one system call
// and returns the bytes written, or -1 (EAGAIN, or an error that the
// blocking write after it reports). The call is a raw one (no hand-off of
// the scheduler's P): a write to a non-blocking socket never waits, it
// only copies into the socket buffer.
func writev(fd int, bufs [][]byte) int {
	// On the stack up to 64 frames per call (1 KiB); more, which only an
	// overloaded node queues, allocates.
	var iov [64]syscall.Iovec
	v := iov[:0]
	for _, b := range bufs {
		if len(v) == maxIovec {
			break
		}
		if len(b) > 0 {
			v = append(v, syscall.Iovec{Base: &b[0]})
			v[len(v)-1].SetLen(len(b))
		}
	}
	if len(v) == 0 {
		return 0
	}
	if len(v) == 1 {
		// The common case at low rates. write(2) measured about 2% less
		// server CPU per delivery than a one-buffer writev(2) (1,000
		// subscribers x 100/s, two alternating pairs of runs).
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(v[0].Base)), uintptr(v[0].Len))
		if errno != 0 {
			return -1
		}
		return int(n)
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
	if errno != 0 {
		return -1
	}
	return int(n)
}
