package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
)

// Bans are one string key per user, Pban:USER = the ban's end in Unix ms,
// expiring with the ban (PXAT), so that Redis forgets it on its own. The
// key has no hash tag: every command touches one key.

var _ engine.BanStore = (*Engine)(nil)

func (e *Engine) banKey(user string) string { return e.opts.KeyPrefix + "ban:" + user }

// SetBan implements engine.BanStore.
func (e *Engine) SetBan(ctx context.Context, user string, until time.Time) error {
	c, err := e.redis()
	if err != nil {
		return err
	}
	key := e.banKey(user)
	var cmd rueidis.Completed
	if ms := until.UnixMilli(); until.IsZero() || !until.After(time.Now()) {
		cmd = c.B().Del().Key(key).Build()
	} else {
		cmd = c.B().Set().Key(key).Value(strconv.FormatInt(ms, 10)).Pxat(until).Build()
	}
	if err := c.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("redis: store ban: %w", err)
	}
	return nil
}

// BanUntil implements engine.BanStore.
func (e *Engine) BanUntil(ctx context.Context, user string) (time.Time, error) {
	c, err := e.redis()
	if err != nil {
		return time.Time{}, err
	}
	s, err := c.Do(ctx, c.B().Get().Key(e.banKey(user)).Build()).ToString()
	if errors.Is(err, rueidis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: read ban: %w", err)
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: ban entry %q: %w", s, err)
	}
	return time.UnixMilli(ms), nil
}
