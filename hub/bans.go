package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
)

// Bans across the cluster. Each node keeps the bans it was told of (the
// "ban" control command) in Hub.bans; that copy is what closes a banned
// user's open connections. With an engine.BanStore the ban is also stored
// in the engine with its expiry, and a user whom this node's copy does not
// know as banned is looked up there at connect: so a ban also holds on a
// node started after it, or restarted since. The lookup costs one engine
// read per authenticated connection whose user is not banned here.
//
// If the store cannot be read (the broker is down) the connection is let
// in and the failure counted as an engine error: refusing everyone while
// the broker is away would take the whole service down with it, and a ban
// already known to this node still holds.

// banStore returns the engine's ban store, or nil.
func (h *Hub) banStore() engine.BanStore {
	bs, _ := h.eng.(engine.BanStore)
	return bs
}

// storeBan writes a ban (untilMillis 0: a lift) to the engine's store.
func (h *Hub) storeBan(ctx context.Context, user string, untilMillis int64) error {
	bs := h.banStore()
	if bs == nil {
		return nil
	}
	var until time.Time
	if untilMillis != 0 {
		until = time.UnixMilli(untilMillis)
	}
	if err := bs.SetBan(ctx, user, until); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return nil // per-node bans only, as the engine says
		}
		h.stats.engineErrors.Add(1)
		return fmt.Errorf("hub: ban: %w", err)
	}
	return nil
}

// storedBan reports whether the engine's store has user banned, and then
// remembers the ban on this node.
func (h *Hub) storedBan(user string) bool {
	bs := h.banStore()
	if bs == nil {
		return false
	}
	ctx, cancel := h.engineContext()
	defer cancel()
	until, err := bs.BanUntil(ctx, user)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			h.stats.engineErrors.Add(1)
			h.log.Warn("hub: cannot read the ban store; letting the user in", "user", user, "err", err)
		}
		return false
	}
	if until.IsZero() || !until.After(time.Now()) {
		return false
	}
	h.bansMu.Lock()
	h.bans[user] = until
	h.bansMu.Unlock()
	return true
}
