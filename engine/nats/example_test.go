package nats_test

import (
	"context"
	"log"
	"time"

	"github.com/switchboard-rt/switchboard/engine/nats"
	"github.com/switchboard-rt/switchboard/hub"
)

// Every node of a cluster runs a hub on a NATS engine with the same NATS
// and Prefix; a client may then connect to any node.
func ExampleNew() {
	eng, err := nats.New(nats.Options{
		URL:         "nats://127.0.0.1:4222",
		Prefix:      "switchboard",
		PresenceTTL: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	h, err := hub.New(hub.Options{Engine: eng})
	if err != nil {
		log.Fatal(err)
	}
	// Run connects to NATS (waiting up to Options.ConnectTimeout) and
	// creates the JetStream streams if needed.
	if err := h.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
	// ... serve WebSocket connections with h (see package transport).
}
