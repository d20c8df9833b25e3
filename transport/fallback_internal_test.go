package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestFlushWithoutDescriptor: a connection without a descriptor for direct
// writes (TLS; every connection outside Linux, see rawwrite_other.go) gets
// every frame, in order, through the blocking write to its net.Conn.
func TestFlushWithoutDescriptor(t *testing.T) {
	h := poolHandler(t)

	raw, peer := tcpPair(t)
	// Hiding the socket's SyscallConn leaves only the net.Conn, as TLS does.
	c := &conn{t: h, raw: struct{ net.Conn }{raw}}
	defer c.closeRaw()
	c.initFD()
	if c.fd != -1 {
		t.Fatalf("a connection without a socket got descriptor %d", c.fd)
	}

	const frames = 200
	var want bytes.Buffer
	for i := range frames {
		f := protocol.NewFrame(fmt.Appendf(nil, `{"type":"message","room":"r","id":"%d","data":"%s"}`, i, bytes.Repeat([]byte("x"), 500)))
		want.Write(f.Wire(slotPlain, textFrame))
		if !c.Send(f) {
			t.Fatalf("send %d refused", i)
		}
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("read %d frames: %v", frames, err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("the frames arrived changed or out of order")
	}
	if n := c.bytesOut.Load(); n != uint64(want.Len()) {
		t.Errorf("bytes out %d, want %d", n, want.Len())
	}
}

// poolHandler is a WSHandler with a hub on the memory engine and a flush
// pool of two workers, stopped when the test ends: enough to drive a conn
// built by hand.
func poolHandler(t *testing.T) *WSHandler {
	t.Helper()
	hb, err := hub.New(hub.Options{Engine: memory.New(memory.Options{}), NoJoinLeave: true, NoPresence: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := Options{Hub: hb}
	if err := opts.fill(); err != nil {
		t.Fatal(err)
	}
	h := &WSHandler{opts: opts, hub: hb, meter: hb.Meter(), log: opts.Logger}
	h.flushers = newFlushPool(ctx, 2, 1)
	return h
}

// tcpPair is a loopback TCP connection: the accepted end and the dialled
// end (the peer), both closed when the test ends.
func tcpPair(t *testing.T) (raw, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	raw = <-accepted
	if raw == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { raw.Close() })
	return raw, peer
}
