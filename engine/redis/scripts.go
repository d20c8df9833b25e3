package redis

import "github.com/redis/rueidis"

// Key layout for room R under KeyPrefix P. Every key of a room carries the
// hash tag {R}, so one script can touch them all in Redis Cluster:
//
//	P{R}:m      hash   e = epoch, o = last offset (the stream position)
//	P{R}:h      stream history, entry id "OFFSET-0", field d = payload
//	            (trimmed approximately; reads are bounded by offset)
//	P{R}:i:KEY  string idempotency key -> "EPOCH OFFSET"
//	P{R}:p      hash   connection id -> presence entry (JSON)
//	P{R}:pz     zset   connection id scored by expiry (Unix ms, Redis clock)
//	P{R}:pu     hash   user id -> number of its connections in the room
//	P{R}        channel for the room's publications
//	Pcontrol    channel for node-to-node commands
//
// Room names cannot contain '{' or '}' (protocol.ValidateRoom), so the tag
// is exactly the room name.

// nowMS is Lua that sets now to Redis's clock in Unix milliseconds; every
// script uses Redis's clock so that nodes with skewed clocks agree on TTLs.
const nowMS = `
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// publishScript appends one event to a room and publishes it, atomically:
// an acknowledged event is in the stream (when history is on) and was
// published in offset order, because scripts run one at a time.
//
// KEYS: meta, history, [idempotency key]
// ARGV: channel, body, epoch candidate, history size, history TTL ms (0 =
// none), meta TTL ms, idempotency TTL ms, publish command.
// Returns {1, "EPOCH OFFSET"} for a duplicate, else {0, epoch, offset, ms}.
var publishScript = rueidis.NewLuaScript(nowMS + `
if KEYS[3] then
  local dup = redis.call('get', KEYS[3])
  if dup then return {1, dup} end
end
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  -- The stream was lost (or never existed): a new epoch, and no history
  -- left over from an old one whose ids would clash with the new offsets.
  epoch = ARGV[3]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch)
end
local off = string.format('%d', redis.call('hincrby', KEYS[1], 'o', 1))
local ms = string.format('%d', now)
local payload = 'S' .. off .. ' ' .. ms .. ' ' .. epoch .. ' ' .. ARGV[2]
local size = tonumber(ARGV[4])
if size > 0 then
  -- Approximate trimming drops whole stream nodes only, about five times
  -- cheaper than exact; the stream may keep up to one node (100 entries by
  -- default) beyond size. History never returns those: it bounds reads by
  -- offset (top - size), so what counts as evicted is exact.
  redis.call('xadd', KEYS[2], 'MAXLEN', '~', size, off .. '-0', 'd', payload)
  local httl = tonumber(ARGV[5])
  if httl <= 0 then httl = ARGV[6] end
  redis.call('pexpire', KEYS[2], httl)
else
  redis.call('del', KEYS[2])
end
redis.call('pexpire', KEYS[1], ARGV[6])
if KEYS[3] then
  redis.call('set', KEYS[3], epoch .. ' ' .. off, 'PX', ARGV[7])
end
redis.call(ARGV[8], ARGV[1], payload)
return {0, epoch, off, ms}
`)

// historyScript reads a room's stream. It creates the epoch when the room
// has none, so a subscriber told "epoch E, offset 0" can recover from there.
//
// KEYS: meta, history
// ARGV: epoch candidate, since offset, since epoch ("" with offset 0 = the
// zero position: newest events), limit (0 = none), TTL ms (0 = none), size
// (-1 = no bound), meta TTL ms.
// Returns {epoch, top offset, complete 0/1, payload...}, oldest first.
var historyScript = rueidis.NewLuaScript(nowMS + `
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 'o', 0)
end
redis.call('pexpire', KEYS[1], ARGV[7])
local top = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local sinceOff = tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local size = tonumber(ARGV[6])
local low = 1
if size >= 0 then low = top - size + 1 end
local cutoff = 0
if ttl > 0 then cutoff = now - ttl end
local out = {epoch, string.format('%d', top), 0}
local function offsetOf(id) return tonumber(string.match(id, '^(%d+)')) end
local function timeOf(p) return tonumber(string.match(p, '^S%d+ (%d+) ')) end

if ARGV[3] == '' and sinceOff == 0 then
  out[3] = 1
  if size == 0 then return out end
  local entries
  if limit > 0 then
    entries = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', limit)
  else
    entries = redis.call('xrevrange', KEYS[2], '+', '-')
  end
  for i = #entries, 1, -1 do
    local e = entries[i]
    local p = e[2][2]
    if offsetOf(e[1]) >= low and timeOf(p) >= cutoff then out[#out + 1] = p end
  end
  return out
end

if ARGV[3] ~= epoch or sinceOff > top then return out end
if sinceOff == top then
  out[3] = 1
  return out
end
local first = sinceOff + 1
if size == 0 or first < low then return out end
local entries
if limit > 0 then
  entries = redis.call('xrange', KEYS[2], string.format('%d', first) .. '-0', '+', 'COUNT', limit)
else
  entries = redis.call('xrange', KEYS[2], string.format('%d', first) .. '-0', '+')
end
if #entries == 0 or offsetOf(entries[1][1]) ~= first or timeOf(entries[1][2][2]) < cutoff then
  return out
end
out[3] = 1
for i = 1, #entries do out[#out + 1] = entries[i][2][2] end
return out
`)

// presenceClean is shared Lua for the presence scripts: it drops entries
// whose owner stopped refreshing them (a crashed node), keeping the
// per-user counts right.
//
// KEYS: entries hash, expiry zset, user counts hash
const presenceClean = nowMS + `
local function decUser(u)
  if redis.call('hincrby', KEYS[3], u, -1) <= 0 then redis.call('hdel', KEYS[3], u) end
end
local gone = redis.call('zrangebyscore', KEYS[2], '-inf', now)
if #gone > 0 then
  for _, c in ipairs(gone) do
    local v = redis.call('hget', KEYS[1], c)
    if v then
      redis.call('hdel', KEYS[1], c)
      decUser(cjson.decode(v).user_id)
    end
  end
  redis.call('zremrangebyscore', KEYS[2], '-inf', now)
end
`

// presenceAddScript records or refreshes one connection.
// ARGV: connection id, user id, entry JSON (an object, without exp), TTL ms.
var presenceAddScript = rueidis.NewLuaScript(presenceClean + `
local ttl = tonumber(ARGV[4])
local exp = now + ttl
local old = redis.call('hget', KEYS[1], ARGV[1])
if old then decUser(cjson.decode(old).user_id) end
local entry = string.sub(ARGV[3], 1, -2) .. ',"exp":' .. string.format('%d', exp) .. '}'
redis.call('hset', KEYS[1], ARGV[1], entry)
redis.call('zadd', KEYS[2], exp, ARGV[1])
redis.call('hincrby', KEYS[3], ARGV[2], 1)
for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl) end
return 1
`)

// presenceRemoveScript removes one connection. ARGV: connection id.
var presenceRemoveScript = rueidis.NewLuaScript(presenceClean + `
local old = redis.call('hget', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
decUser(cjson.decode(old).user_id)
return 1
`)

// presenceListScript returns every live entry.
var presenceListScript = rueidis.NewLuaScript(presenceClean + `
return redis.call('hvals', KEYS[1])
`)

// presenceStatsScript returns {connections, users} in O(1) plus the
// entries that expired since the last call.
var presenceStatsScript = rueidis.NewLuaScript(presenceClean + `
return {redis.call('hlen', KEYS[1]), redis.call('hlen', KEYS[3])}
`)
