//go:build linux

// Direct writes to the descriptor exist only on Linux (rawwrite_linux.go).

package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// BenchmarkSendFlush measures the transport's per-recipient path: queueing
// one shared frame on each of N connections (conn.Send) and the flush pool
// writing it to each socket, over Unix socket pairs drained by readers. Its
// allocs/op (one op = one frame to all N) must stay at zero: a
// change that allocates per recipient shows here. ns/recipient includes
// the write system call and the readers' wake-ups, so it is mostly the
// kernel's and the scheduler's.
func BenchmarkSendFlush(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			benchSendFlush(b, n, false)
		})
	}
}

// BenchmarkSSESendFlush is BenchmarkSendFlush for hijacked SSE streams
// (sseConn.Send, sseRaw.flushFast): the same pool, the frame's shared SSE
// event instead of its WebSocket frame.
func BenchmarkSSESendFlush(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			benchSendFlush(b, n, true)
		})
	}
}

func benchSendFlush(b *testing.B, n int, sse bool) {
	hb, err := hub.New(hub.Options{Engine: memory.New(memory.Options{}), NoJoinLeave: true, NoPresence: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{Hub: hb, QueueMaxMessages: 1 << 20, QueueMaxBytes: 1 << 30}
	if err := opts.fill(); err != nil {
		b.Fatal(err)
	}
	h := &WSHandler{opts: opts, hub: hb, meter: hb.Meter(), log: opts.Logger}
	h.flushers = newFlushPool(ctx, runtime.GOMAXPROCS(0), n)

	s := NewSSEHandler(h, SSEOptions{})
	var read atomic.Int64
	var wg sync.WaitGroup
	sinks := make([]hub.Sink, n)
	for i := range sinks {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		ours, theirs := fileConn(b, fds[0]), fileConn(b, fds[1])
		if socketFD(ours) < 0 {
			b.Fatal("no descriptor for direct writes")
		}
		if sse {
			c := &sseConn{s: s, wake: make(chan struct{}, 1)}
			c.out = &sseRaw{c: c, raw: ours, fd: socketFD(ours)}
			sinks[i] = c
		} else {
			c := &conn{t: h, raw: ours}
			c.initFD()
			sinks[i] = c
		}
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				k, err := theirs.Read(buf)
				read.Add(int64(k))
				if err != nil {
					return
				}
			}
		})
		defer func() { _ = theirs.Close(); _ = ours.Close() }()
	}
	f := protocol.NewFrame([]byte(`{"type":"message","room":"bench","id":"1-1","data":{"n":1},"ts":1}`))
	wire := int64(len(f.Wire(slotPlain, textFrame)))
	if sse {
		wire = int64(len(f.Wire(slotSSE, sseEvent)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var want int64
	for b.Loop() {
		// One event to every connection, as a fan-out does. At most 16
		// rounds in flight: queues stay as short as below saturation.
		for _, c := range sinks {
			if !c.Send(f) {
				b.Fatal("send refused")
			}
		}
		want += wire * int64(n)
		for read.Load() < want-16*wire*int64(n) {
			runtime.Gosched()
		}
	}
	for read.Load() < want {
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
	cancel()
	for _, c := range sinks {
		switch c := c.(type) {
		case *conn:
			_ = c.closeRaw()
		case *sseConn:
			c.out.(*sseRaw).closeRaw()
		}
	}
	wg.Wait()
}

func fileConn(b *testing.B, fd int) net.Conn {
	f := os.NewFile(uintptr(fd), "socketpair")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		b.Fatal(err)
	}
	return c
}
