package client

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// FuzzServerFrame feeds arbitrary frames, as from a hostile or broken
// server, to a client that has a subscribe, a publish, a history, a
// presence and an RPC request in flight. "$ID" in a frame becomes the id
// of one of them (chosen by kind), so that answers reach the reply
// parsers. The client must not panic, and every request must end (with a
// result or an error) once its context does.
func FuzzServerFrame(f *testing.F) {
	for _, s := range []struct {
		kind  uint8
		frame string
	}{
		{0, `{"type":"subscribed","id":"$ID","room":"chat:f","data":{"members":1,"position":"abc-4","recovered":true,"replayed":2}}`},
		{0, `{"type":"subscribed","id":"$ID","room":"chat:f","data":{"position":7}}`},
		{0, `{"type":"error","id":"$ID","data":{"code":"forbidden","message":"no","ref":"$ID"}}`},
		{0, `{"type":"message","id":"abc-5","room":"chat:f","user_id":"u","data":{"x":1},"ts":1}`},
		{0, `{"type":"message","id":"zz-18446744073709551615","room":"chat:f","data":null}`},
		{1, `{"type":"ack","id":"$ID","room":"chat:f","data":{"event_id":"abc-9","duplicate":true}}`},
		{1, `{"type":"ack","id":"$ID","data":"x"}`},
		{2, `{"type":"history_result","id":"$ID","room":"chat:f","data":{"events":[{"type":"message","id":"abc-1"}],"position":"abc-1","complete":true,"has_more":false}}`},
		{2, `{"type":"history_result","id":"$ID","data":{"events":[1,2]}}`},
		{3, `{"type":"presence_result","id":"$ID","data":{"clients":1,"users":1,"members":[{"user_id":"u","connection_id":"c"}]}}`},
		{4, `{"type":"rpc_result","id":"$ID","data":{"jsonrpc":"2.0","id":"$ID","result":{"a":1}}}`},
		{4, `{"type":"rpc_result","id":"$ID","data":{"jsonrpc":"2.0","error":{"code":-32601,"message":"m"}}}`},
		{4, `{"jsonrpc":"2.0","id":1,"result":2}`},
		{0, `{"type":"connection_established","data":{"user_id":"u","connection_id":"c","heartbeat_interval_ms":25000,"protocol_version":1}}`},
		{0, `{"type":"disconnect","data":{"code":4005,"reason":"r","reconnect":true}}`},
		{0, `{"type":"session_expiring","data":{"expires_at":1}}`},
		{0, `{"type":"pong","id":"hb-0"}`},
		{0, `{"type":"user_joined","room":"chat:f","user_id":"u","data":{"connection_id":"c"}}`},
		{0, `{"type":"notice","data":{}}`},
		{0, `[1]`}, {0, `{"type":5}`}, {0, ``}, {0, `{"type":"x","id":"$ID"}`},
	} {
		f.Add(s.kind, []byte(s.frame))
	}
	f.Fuzz(func(t *testing.T, kind uint8, frame []byte) {
		c := New("ws://127.0.0.1:1/ws", &Options{OnEvent: func(Event) {}, OnError: func(error) {}})
		cn := &wsConn{c: c, established: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
		c.mu.Lock()
		c.cur = cn
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		calls := []func(){
			func() { _, _ = c.Subscribe(ctx, "chat:f", func(Event) {}) },
			func() { _, _ = c.Publish(ctx, "chat:f", "", map[string]int{"n": 1}) },
			func() { _, _ = c.History(ctx, "chat:f", "", 10) },
			func() { _, _ = c.Presence(ctx, "chat:f", false) },
			func() { _, _ = c.RPC(ctx, "m", []int{1}) },
		}
		for _, call := range calls {
			wg.Add(1)
			go func() { defer wg.Done(); call() }()
		}
		var ids []string
		for i := 0; i < 1000; i++ {
			c.mu.Lock()
			n := len(c.queue)
			c.mu.Unlock()
			if n == len(calls) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		c.mu.Lock()
		for _, it := range c.queue {
			ids = append(ids, it.req.id)
		}
		c.mu.Unlock()
		c.takeBatch(cn, nil) // as the writer does: now they are sent on cn
		if len(ids) != len(calls) {
			t.Fatalf("%d requests queued, want %d", len(ids), len(calls))
		}
		// Requests are queued in the order the goroutines ran; the kind
		// picks one of them.
		id := ids[int(kind)%len(ids)]
		cn.onFrame(nil, bytes.ReplaceAll(frame, []byte("$ID"), []byte(id)))
		cancel()
		wg.Wait() // every call returns once its context ends
		c.mu.Lock()
		c.cur = nil // no socket to close
		c.mu.Unlock()
		_ = c.Close()
	})
}
