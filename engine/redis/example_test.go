package redis_test

import (
	"context"
	"log"
	"time"

	"github.com/switchboard-rt/switchboard/engine/redis"
	"github.com/switchboard-rt/switchboard/hub"
)

// Every node of a cluster runs a hub on a Redis engine with the same
// Redis and KeyPrefix; a client may then connect to any node.
func ExampleNew() {
	eng, err := redis.New(redis.Options{
		Addr:        "127.0.0.1:6379",
		KeyPrefix:   "switchboard:",
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
	// Run connects to Redis (waiting up to Options.ConnectTimeout).
	if err := h.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
	// ... serve WebSocket connections with h (see package transport).
}
