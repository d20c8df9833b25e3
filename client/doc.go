// Package client is the Go client of Switchboard: a WebSocket connection
// to a Switchboard server that stays connected and keeps its rooms.
//
// Start with New and Connect:
//
//	c := client.New("ws://localhost:8080/ws", nil)
//	if err := c.Connect(ctx); err != nil {
//		return err
//	}
//	defer c.Close()
//	sub, err := c.Subscribe(ctx, "chat:lobby", func(e client.Event) {
//		fmt.Println(e.Type, string(e.Data))
//	})
//	ack, err := c.Publish(ctx, "chat:lobby", "message", map[string]string{"text": "hi"})
//
// After Connect, the client reconnects by itself when the connection
// breaks or the server closes it with a code that asks for it (see the
// table in docs/clients.md), waiting with exponential backoff and full
// jitter between attempts. On every new connection it subscribes again to
// each room with the id of the last event it saw there, so the server
// replays what was missed: handlers see every event once and in order.
// When the server cannot replay (its history no longer reaches back, or
// it restarted without it), the handler gets an Event with
// RecoveryFailed set instead. Publishes whose ack was lost are sent again
// with the same id, which the server delivers once. Calls made while the
// client is reconnecting are queued (Options.QueueSize) and sent when it
// is open again.
//
// Every call that waits takes a context; ending it stops the wait.
// Callbacks run one at a time, in order, on a goroutine of the client, and
// may call the client's methods.
package client
