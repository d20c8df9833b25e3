package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
)

// Occupancy lives in two keys per room: P{R}:o, a zset of the nodes that
// have members in the room scored by expiry (Unix ms, Redis clock), and
// P{R}:og, the room's generation counter. A script decides each change, so
// of two nodes that join at once exactly one sees the count go 0 -> 1.
// Each node refreshes its entries with its presence (every PresenceTTL/3);
// a crashed node's entries expire and are swept by the next call.

var _ engine.Occupancy = (*Engine)(nil)

// generationTTL keeps a room's generation counter well beyond any
// occupied period's end, so a receiver pairing events never sees it reset
// while it remembers the old ones.
const generationTTL = 7 * 24 * time.Hour

// occupyScript adds a node. KEYS: nodes zset, generation.
// ARGV: node, TTL ms, generation TTL ms. Returns {changed 0/1, generation}.
var occupyScript = rueidis.NewLuaScript(nowMS + `
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local had = redis.call('zcard', KEYS[1])
local added = redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[2])
local gen
local changed = 0
if had == 0 and added == 1 then
  gen = redis.call('incr', KEYS[2])
  changed = 1
else
  gen = tonumber(redis.call('get', KEYS[2]) or '0')
end
redis.call('pexpire', KEYS[2], ARGV[3])
return {changed, gen}
`)

// vacateScript removes a node. KEYS: nodes zset, generation. ARGV: node.
// Returns {changed 0/1, generation}.
var vacateScript = rueidis.NewLuaScript(nowMS + `
local removed = redis.call('zrem', KEYS[1], ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local changed = 0
if removed == 1 and redis.call('zcard', KEYS[1]) == 0 then changed = 1 end
return {changed, tonumber(redis.call('get', KEYS[2]) or '0')}
`)

// refreshOccupancyScript pushes back a node's expiry without deciding
// anything. KEYS: nodes zset. ARGV: node, TTL ms.
var refreshOccupancyScript = rueidis.NewLuaScript(nowMS + `
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
`)

func (e *Engine) occupancyKeys(room string) []string {
	return []string{e.key(room, ":o"), e.key(room, ":og")}
}

// Occupy implements engine.Occupancy.
func (e *Engine) Occupy(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	e.occMu.Lock()
	e.occupied[room] = node
	e.occMu.Unlock()
	c, err := e.redis()
	if err != nil {
		return engine.OccupancyChange{}, err
	}
	n, err := occupyScript.Exec(ctx, c, e.occupancyKeys(room), []string{node, ms(e.opts.PresenceTTL), ms(generationTTL)}).AsIntSlice()
	if err != nil || len(n) != 2 {
		return engine.OccupancyChange{}, fmt.Errorf("redis: occupy %q: %w", room, err)
	}
	return engine.OccupancyChange{Changed: n[0] == 1, Generation: uint64(n[1])}, nil
}

// Vacate implements engine.Occupancy.
func (e *Engine) Vacate(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	e.occMu.Lock()
	delete(e.occupied, room)
	e.occMu.Unlock()
	c, err := e.redis()
	if err != nil {
		return engine.OccupancyChange{}, err
	}
	n, err := vacateScript.Exec(ctx, c, e.occupancyKeys(room), []string{node}).AsIntSlice()
	if err != nil || len(n) != 2 {
		return engine.OccupancyChange{}, fmt.Errorf("redis: vacate %q: %w", room, err)
	}
	return engine.OccupancyChange{Changed: n[0] == 1, Generation: uint64(n[1])}, nil
}

// refreshOccupancy re-adds this node to every room it occupies, with the
// presence refresh.
func (e *Engine) refreshOccupancy(ctx context.Context, c rueidis.Client) {
	e.occMu.Lock()
	execs := make([]rueidis.LuaExec, 0, len(e.occupied))
	for room, node := range e.occupied {
		execs = append(execs, rueidis.LuaExec{Keys: e.occupancyKeys(room)[:1], Args: []string{node, ms(e.opts.PresenceTTL)}})
	}
	e.occMu.Unlock()
	for i := 0; i < len(execs) && ctx.Err() == nil; i += refreshBatch {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		refreshOccupancyScript.ExecMulti(cctx, c, execs[i:min(i+refreshBatch, len(execs))]...)
		cancel()
	}
}
