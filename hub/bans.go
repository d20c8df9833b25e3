package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
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

// Ban bans user on every node until d has passed: their connections are
// closed with 4004 and new ones are refused. d <= 0 lifts the ban. With an
// engine that is an engine.BanStore the ban is stored there first, so it
// also holds on nodes started later and across restarts (bans.go).
func (h *Hub) Ban(ctx context.Context, user string, d time.Duration) error {
	if user == "" {
		return protocol.Errorf(protocol.ErrBadRequest, "", "user id is empty")
	}
	until := int64(0)
	if d > 0 {
		until = time.Now().Add(d).UnixMilli()
	}
	if err := h.storeBan(ctx, user, until); err != nil {
		return err
	}
	return h.sendControl(ctx, &control{Op: "ban", User: user, Until: until})
}

// Banned reports whether user is banned now: by this node's copy of the
// bans, else by the engine's ban store, if it has one.
func (h *Hub) Banned(user string) bool {
	h.bansMu.Lock()
	until, ok := h.bans[user]
	if ok && time.Now().After(until) {
		delete(h.bans, user)
		ok = false
	}
	h.bansMu.Unlock()
	return ok || h.storedBan(user)
}

func (h *Hub) applyBan(user string, untilMillis int64) {
	h.bansMu.Lock()
	if untilMillis == 0 {
		delete(h.bans, user)
	} else {
		h.bans[user] = time.UnixMilli(untilMillis)
	}
	h.bansMu.Unlock()
	if untilMillis != 0 {
		for _, c := range h.userClients(user) {
			c.sink.Close(protocol.NewDisconnect(protocol.CloseBanned, "user is banned"))
		}
	}
}
