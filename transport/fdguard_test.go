//go:build linux

// Direct writes to the descriptor exist only on Linux (rawwrite_linux.go).

package transport

import (
	"syscall"
	"testing"
	"time"
)

// TestDirectWriteAfterClose: once a connection is closed, a flush must not
// write to its old descriptor number, which the kernel hands to the next
// socket opened. The test puts another socket on exactly that number and
// checks that a late write reaches nothing.
func TestDirectWriteAfterClose(t *testing.T) {
	raw, peer := tcpPair(t)
	c := &conn{raw: raw}
	c.initFD()
	if c.fd < 0 {
		t.Fatal("a plain TCP connection got no descriptor for direct writes")
	}
	if n := c.tryWritev([][]byte{[]byte("live")}); n != 4 {
		t.Fatalf("direct write on the open connection wrote %d bytes, want 4", n)
	}
	old := c.fd
	if err := c.closeRaw(); err != nil {
		t.Fatal(err)
	}

	// Another socket now takes the old number.
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// near goes on the old number (usually one of the pair already has it:
	// the lowest free number); far is the end the test reads.
	near, far := pair[0], pair[1]
	if far == old {
		near, far = far, near
	}
	defer syscall.Close(far)
	if near != old {
		if err := syscall.Dup3(near, old, 0); err != nil {
			t.Fatal(err)
		}
		syscall.Close(near)
	}
	defer syscall.Close(old)

	if n := c.tryWritev([][]byte{[]byte("late")}); n != 0 {
		t.Errorf("write after close wrote %d bytes", n)
	}
	buf := make([]byte, 16)
	if n, err := syscall.Read(far, buf); n > 0 {
		t.Errorf("the socket that reused the number got %q from the closed connection", buf[:n])
	} else if err != syscall.EAGAIN {
		t.Errorf("read: %d, %v (want EAGAIN: nothing sent)", n, err)
	}
	// The peer got what was written while open, then the end.
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 8)
	n, _ := peer.Read(got)
	if string(got[:n]) != "live" {
		t.Errorf("peer read %q, want \"live\"", got[:n])
	}
}
