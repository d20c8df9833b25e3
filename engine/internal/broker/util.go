package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
)

// Epochs makes epoch candidates unique to one engine: a random base and a
// counter. Epochs must never repeat for a room, or a client's position in
// a lost stream could be taken for one in the new. Use NewEpochs.
type Epochs struct {
	base string
	seq  atomic.Uint64
}

// NewEpochs returns a generator with a fresh random base.
func NewEpochs() *Epochs { return &Epochs{base: RandomBase36(10)} }

// Next returns an epoch no earlier call returned.
func (e *Epochs) Next() string { return e.base + strconv.FormatUint(e.seq.Add(1), 36) }

// RandomBase36 returns n random characters of [a-z0-9] (epochs must be in
// that alphabet, see protocol.ParseEventID).
func RandomBase36(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// SortPresence puts a presence list in the order every engine returns:
// by user id, then connection id.
func SortPresence(list []engine.ClientInfo) {
	slices.SortFunc(list, func(a, b engine.ClientInfo) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.ConnectionID, b.ConnectionID))
	})
}

// MinPresenceTTL is the shortest presence TTL a broker engine accepts: the
// refresh period (TTL/3) must leave a refresh round time to end.
const MinPresenceTTL = time.Second

// PresenceTTL applies the default to an unset presence TTL and checks the
// minimum; pkg names the engine in the error.
func PresenceTTL(pkg string, ttl, def time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = def
	}
	if ttl < MinPresenceTTL {
		return 0, fmt.Errorf("%s: PresenceTTL %s is below the minimum %s", pkg, ttl, MinPresenceTTL)
	}
	return ttl, nil
}

// SleepCtx sleeps d; false if ctx ended first.
func SleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
