package redisstore

import "github.com/redis/go-redis/v9"

// Every script starts with ARGV[1] = the key prefix and shares the helpers
// in prelude. Keys a script reaches through stored ids (player claims, a
// match's tickets, a region's servers) are built in Lua from the prefix, in
// the layout of the key methods of Store; that suits one Redis server, or a
// cluster when the prefix carries a hash tag that puts every key in one
// slot. The server index lives only here: the set <prefix>regions of
// regions, and per region the set <prefix>region:<region> of server ids.
//
// Lua compares strings with strcoll, which follows the server's locale, so
// ids and time keys are compared byte by byte with less.
const prelude = `
local P = ARGV[1]
local function tkey(id) return P .. 't:' .. id end

local function terminal(st)
  return st == 'assigned' or st == 'cancelled' or st == 'expired' or st == 'failed'
end

local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- unpool takes a ticket out of its pool and the expiry index.
local function unpool(key, id)
  local f = redis.call('HMGET', key, 'pq', 'pm')
  if f[1] then
    local pk = P .. 'pool:{' .. f[1] .. '}'
    redis.call('ZREM', pk, f[2])
    redis.call('HDEL', pk .. ':e', f[2])
    redis.call('HDEL', key, 'pq', 'pm')
  end
  redis.call('ZREM', P .. 'expiry', id)
end

-- release frees the ticket's players, unless a claim has moved on to
-- another ticket.
local function release(key, id)
  local raw = redis.call('HGET', key, 'pids')
  if not raw then return end
  for _, pid in ipairs(cjson.decode(raw)) do
    local ck = P .. 'p:' .. pid
    if redis.call('GET', ck) == id then redis.call('DEL', ck) end
  end
end

-- bump raises the ticket's version and tells listeners.
local function bump(key, id, now)
  local v = redis.call('HINCRBY', key, 'version', 1)
  redis.call('HSET', key, 'updated_at', now)
  redis.call('PUBLISH', P .. 'changes', 't:' .. id .. ':' .. v)
end

-- finish moves a ticket to a terminal status and schedules its purge.
local function finish(key, id, status, now, retention)
  unpool(key, id)
  release(key, id)
  redis.call('HSET', key, 'status', status)
  bump(key, id, now)
  redis.call('PEXPIRE', key, retention)
end

local function expire(key, id, now, retention)
  if redis.call('HGET', key, 'status') ~= 'searching' then return false end
  finish(key, id, 'expired', now, retention)
  return true
end
`

func newScript(body string) *redis.Script { return redis.NewScript(prelude + body) }

// createScript: KEYS[1] ticket, KEYS[2..] player claims. ARGV[2] id,
// ARGV[3] expiry score, ARGV[4..] the ticket's field/value pairs.
var createScript = newScript(`
local id = ARGV[2]
local st = redis.call('HGET', KEYS[1], 'status')
if st then return {'exists', st} end
for i = 2, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= id then
    local ost = redis.call('HGET', tkey(owner), 'status')
    if ost and not terminal(ost) then return {'busy', i - 1, owner} end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
for i = 2, #KEYS do redis.call('SET', KEYS[i], id) end
redis.call('ZADD', P .. 'expiry', ARGV[3], id)
return {'ok'}
`)

// deleteScript: KEYS[1] ticket. ARGV[2] id.
var deleteScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', P .. 'expiry', ARGV[2])
  return {'ok'}
end
unpool(KEYS[1], ARGV[2])
release(KEYS[1], ARGV[2])
redis.call('DEL', KEYS[1])
return {'ok'}
`)

// cancelScript: KEYS[1] ticket. ARGV[2] id, ARGV[3] now, ARGV[4] retention
// in ms. Answers the ticket's fields after the change.
var cancelScript = newScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'notfound'} end
if st == 'searching' then
  finish(KEYS[1], ARGV[2], 'cancelled', ARGV[3], ARGV[4])
elseif st ~= 'cancelled' then
  return {'conflict', redis.call('HGETALL', KEYS[1])}
end
return {'ok', redis.call('HGETALL', KEYS[1])}
`)

// expireScript: KEYS[1] ticket. ARGV[2] id, ARGV[3] now, ARGV[4] retention.
var expireScript = newScript(`
if expire(KEYS[1], ARGV[2], ARGV[3], ARGV[4]) then return 1 end
return 0
`)

// expireDueScript: ARGV[2] now in unix ms (the index's score, rounded
// down), ARGV[3] now as a time key, ARGV[4] now, ARGV[5] retention,
// ARGV[6] limit, ARGV[7] how many index entries one call may look at.
//
// The index only narrows the search to the current millisecond; the exact
// expiry is the ticket's exp field. Entries of tickets that are no longer
// searching are dropped on the way; entries not yet due are skipped over.
var expireDueScript = newScript(`
local ek = P .. 'expiry'
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local done, kept, seen = {}, 0, 0
while #done < limit and seen < budget do
  local ids = redis.call('ZRANGEBYSCORE', ek, '-inf', ARGV[2], 'LIMIT', kept, 100)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if #done >= limit or seen >= budget then break end
    seen = seen + 1
    local key = tkey(id)
    local f = redis.call('HMGET', key, 'status', 'exp')
    if f[1] ~= 'searching' then
      redis.call('ZREM', ek, id)
    elseif not f[2] or not less(ARGV[3], f[2]) then
      expire(key, id, ARGV[4], ARGV[5])
      done[#done + 1] = id
    else
      kept = kept + 1
    end
  end
end
return done
`)

// addToPoolScript: KEYS[1] ticket, KEYS[2] pool, KEYS[3] pool entries.
// ARGV[2] queue, ARGV[3] member, ARGV[4] score, ARGV[5] entry JSON.
var addToPoolScript = newScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'searching' then return 0 end
local f = redis.call('HMGET', KEYS[1], 'pq', 'pm')
if f[1] and (f[1] ~= ARGV[2] or f[2] ~= ARGV[3]) then
  local pk = P .. 'pool:{' .. f[1] .. '}'
  redis.call('ZREM', pk, f[2])
  redis.call('HDEL', pk .. ':e', f[2])
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[1], 'pq', ARGV[2], 'pm', ARGV[3])
return 1
`)

// candidatesScript reads, without changing anything: KEYS[1] pool, KEYS[2]
// pool entries. ARGV[2] lowest score, ARGV[3] skill, ARGV[4] highest score,
// ARGV[5] "(" .. skill, ARGV[6] limit. It answers the entries of up to
// limit nearest members above skill (inclusive) and up to limit below it.
//
// Members are "<created key>:<ticket id>", so members of equal score sort
// oldest first. Upwards that is already the order wanted; downwards the scan
// runs the other way, so the members it takes at its last score are
// replaced by the oldest members of that score.
var candidatesScript = newScript(`
local limit = tonumber(ARGV[6])
local up = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[4], 'LIMIT', 0, limit)
local down = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[5], ARGV[2], 'WITHSCORES', 'LIMIT', 0, limit)
local members = up
local n = #down / 2
local last = down[#down]
local tail = 0
for i = 1, n do
  if down[2 * i] == last then
    tail = tail + 1
  else
    members[#members + 1] = down[2 * i - 1]
  end
end
if n == limit and tail > 0 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], last, last, 'LIMIT', 0, tail)) do
    members[#members + 1] = m
  end
else
  for i = n - tail + 1, n do members[#members + 1] = down[2 * i - 1] end
end
if #members == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(members))
`)

// claimScript: KEYS[1] match, KEYS[2..] tickets. ARGV[2] match id, ARGV[3]
// now, ARGV[4] match ref JSON, ARGV[5] match JSON, ARGV[6] allocation head,
// ARGV[7] region, ARGV[8] ticket ids JSON, ARGV[9..] ticket ids.
var claimScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok'} end
for i = 2, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'status')
  if st ~= 'searching' then return {'conflict', ARGV[7 + i], st or ''} end
end
for i = 2, #KEYS do
  local id = ARGV[7 + i]
  unpool(KEYS[i], id)
  redis.call('HSET', KEYS[i], 'status', 'matched', 'match', ARGV[4])
  bump(KEYS[i], id, ARGV[3])
end
redis.call('HSET', KEYS[1], 'match', ARGV[5], 'status', 'pending', 'region', ARGV[7],
  'tickets', ARGV[8], 'alloc_head', ARGV[6])
return {'ok'}
`)

// assignScript: KEYS[1] match. ARGV[2] match id, ARGV[3] now, ARGV[4] now
// as a time key, ARGV[5] now as JSON, ARGV[6] retention.
var assignScript = newScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'region', 'tickets', 'alloc_head', 'assignment')
if not f[1] then return {'notfound'} end
if f[1] == 'failed' then return {'failed'} end
if f[1] == 'assigned' then return {'ok', f[5]} end

local regions
if f[2] == '' then
  regions = redis.call('SMEMBERS', P .. 'regions')
else
  regions = {f[2]}
end
local best, bestFree
for _, r in ipairs(regions) do
  local rk = P .. 'region:' .. r
  local ids = redis.call('SMEMBERS', rk)
  if #ids == 0 then redis.call('SREM', P .. 'regions', r) end
  for _, id in ipairs(ids) do
    local s = redis.call('HMGET', P .. 's:' .. id, 'exp', 'draining', 'capacity', 'allocated', 'region')
    if not s[1] or s[5] ~= r then
      -- The record was purged or moved to another region.
      redis.call('SREM', rk, id)
    elseif less(ARGV[4], s[1]) and s[2] ~= '1' then
      local free = tonumber(s[3]) - tonumber(s[4])
      if free > 0 and (not best or free > bestFree or (free == bestFree and less(id, best))) then
        best, bestFree = id, free
      end
    end
  end
end
if not best then return {'nocapacity'} end

local sk = P .. 's:' .. best
redis.call('HINCRBY', sk, 'allocated', 1)
local v = redis.call('HINCRBY', sk, 'version', 1)
local ak = P .. 'a:' .. best
redis.call('HSET', ak, ARGV[2], f[4] .. ',"allocated_at":' .. ARGV[5] .. '}')
-- The allocations live as long as the server record.
local ttl = redis.call('PTTL', sk)
if ttl > 0 then redis.call('PEXPIRE', ak, ttl) end
local asg = redis.call('HGET', sk, 'assignment')
for _, id in ipairs(cjson.decode(f[3])) do
  local key = tkey(id)
  if redis.call('HGET', key, 'status') == 'matched' then
    release(key, id)
    redis.call('HSET', key, 'status', 'assigned', 'assignment', asg)
    bump(key, id, ARGV[3])
    redis.call('PEXPIRE', key, ARGV[6])
  end
end
redis.call('HSET', KEYS[1], 'status', 'assigned', 'server_id', best, 'assignment', asg)
redis.call('PUBLISH', P .. 'changes', 's:' .. best .. ':' .. v)
return {'ok', asg}
`)

// failScript: KEYS[1] match. ARGV[2] match id, ARGV[3] reason, ARGV[4] now,
// ARGV[5] retention.
var failScript = newScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'tickets')
if not f[1] then return {'notfound'} end
if f[1] == 'assigned' then return {'assigned'} end
if f[1] == 'failed' then return {'ok'} end
for _, id in ipairs(cjson.decode(f[2])) do
  local key = tkey(id)
  if redis.call('HGET', key, 'status') == 'matched' then
    redis.call('HSET', key, 'reason', ARGV[3])
    finish(key, id, 'failed', ARGV[4], ARGV[5])
  end
end
redis.call('HSET', KEYS[1], 'status', 'failed')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'ok'}
`)

// endScript: KEYS[1] server, KEYS[2] its allocations, KEYS[3] match.
// ARGV[2] server id, ARGV[3] match id, ARGV[4] retention.
var endScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HDEL', KEYS[2], ARGV[3]) == 0 then
  return {'notfound'}
end
redis.call('HINCRBY', KEYS[1], 'allocated', -1)
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PUBLISH', P .. 'changes', 's:' .. ARGV[2] .. ':' .. v)
return {'ok'}
`)

// registerScript: KEYS[1] server, KEYS[2] its allocations. ARGV[2] id,
// ARGV[3] region, ARGV[4] time to live in ms, ARGV[5..] field/value pairs.
// New servers start at version 0, with nothing allocated, undrained.
var registerScript = newScript(`
local old = redis.call('HGET', KEYS[1], 'region')
if old and old ~= ARGV[3] then
  redis.call('SREM', P .. 'region:' .. old, ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSETNX', KEYS[1], 'allocated', 0)
redis.call('HSETNX', KEYS[1], 'version', 0)
redis.call('HSETNX', KEYS[1], 'draining', 0)
redis.call('SADD', P .. 'region:' .. ARGV[3], ARGV[2])
redis.call('SADD', P .. 'regions', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return redis.call('HGETALL', KEYS[1])
`)

// drainScript: KEYS[1] server.
var drainScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'draining', 1)
return redis.call('HGETALL', KEYS[1])
`)
