package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/server"
)

// exampleServer runs a Switchboard node on loopback for the examples and
// returns its WebSocket URL and a function that stops it.
func exampleServer() (string, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{NoDemo: true})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return "ws://" + ln.Addr().String() + "/ws", func() { cancel(); <-done }
}

// Connect, subscribe to a room, publish to it and receive the event.
func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := client.New(url, nil)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	got := make(chan client.Event, 1)
	_, err := c.Subscribe(ctx, "chat:lobby", func(e client.Event) {
		if e.Type == "message" {
			got <- e
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	ack, err := c.Publish(ctx, "chat:lobby", "message", map[string]string{"text": "hello"})
	if err != nil {
		log.Fatal(err)
	}
	e := <-got
	fmt.Println(e.Type, e.Room, string(e.Data), e.ID == ack.EventID)
	// Output: message chat:lobby {"text":"hello"} true
}

// A subscription handler sees every event once and in order, across
// reconnects; it learns of a gap it cannot be spared from RecoveryFailed.
func ExampleClient_Subscribe() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := client.New(url, &client.Options{
		OnState: func(s client.State, err error) {
			if s == client.StateReconnecting {
				log.Printf("reconnecting: %v", err)
			}
		},
	})
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	done := make(chan struct{})
	n := 0
	sub, err := c.Subscribe(ctx, "scores", func(e client.Event) {
		switch {
		case e.RecoveryFailed:
			// Events were missed for good: reload the state, e.g. with History.
		case e.Type == "goal":
			var v struct{ Team string }
			_ = json.Unmarshal(e.Data, &v)
			fmt.Println("goal for", v.Team)
			if n++; n == 2 {
				close(done)
			}
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, team := range []string{"red", "blue"} {
		if _, err := c.Publish(ctx, "scores", "goal", map[string]string{"team": team}); err != nil {
			log.Fatal(err)
		}
	}
	<-done
	if err := sub.Unsubscribe(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// goal for red
	// goal for blue
}

// History pages forward through what a room keeps (the last 100 events
// by default), from an event id.
func ExampleClient_History() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := client.New(url, nil)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var first client.Ack
	for i := 1; i <= 5; i++ {
		ack, err := c.Publish(ctx, "log", "", i)
		if err != nil {
			log.Fatal(err)
		}
		if i == 1 {
			first = ack
		}
	}
	since := first.EventID // the events after the first one
	for {
		page, err := c.History(ctx, "log", since, 2)
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range page.Events {
			fmt.Print(string(e.Data), " ")
		}
		if !page.HasMore {
			break
		}
		since = page.Events[len(page.Events)-1].ID
	}
	fmt.Println()
	// Output: 2 3 4 5
}

// Presence tells who is in a room, on every node.
func ExampleClient_Presence() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := client.New(url, nil)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Subscribe(ctx, "chat:lobby", func(client.Event) {}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Presence(ctx, "chat:lobby", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Clients, p.Users, p.Members[0].ConnectionID == c.ConnectionID())
	// Output: 1 1 true
}
