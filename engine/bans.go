package engine

import (
	"context"
	"time"
)

// BanStore is implemented by engines that keep user bans for the whole
// cluster (Redis, NATS with JetStream), so that a ban holds on every node,
// on nodes started after it, and across a node's restart. The hub stores a
// ban here before it tells the running nodes (PublishControl), and asks
// here when a user connects and its own nodes' copy has no ban. Engines
// without it (the memory engine: one node) keep bans in the hub only.
//
// An engine whose store is not available in its current mode (NATS
// without JetStream) returns an error wrapping errors.ErrUnsupported; the
// hub then keeps bans per node, as without a BanStore.
type BanStore interface {
	// SetBan bans user until the given time, replacing any earlier ban; a
	// zero or past until lifts the ban. After SetBan returns, BanUntil on
	// any node sees it. The entry must disappear by itself once until has
	// passed (or read as not banned).
	SetBan(ctx context.Context, user string, until time.Time) error
	// BanUntil returns when user's ban ends, or the zero time when the
	// user is not banned.
	BanUntil(ctx context.Context, user string) (time.Time, error)
}
