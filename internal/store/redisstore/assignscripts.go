package redisstore

// The scripts of AssignMatches (assign.go): the steps of allocateScript and
// settleScript, for many matches in one run. They keep to one slot each,
// as every script does (scripts.go).

// placeManyScript is step 1 of AssignMatches, on the registry slot: it
// places each match once, in the order given. KEYS[1] the index of
// regions, then the index of each region searched, then each indexed
// server's record and allocations, then each match's placement record.
// ARGV[2] now as a time key, ARGV[3] now as JSON, ARGV[4] retention,
// ARGV[5] '1' if a match takes any region, ARGV[6] the index the caller
// read, as JSON {"all": [the index of regions], "regions": [...],
// "servers": [[ids of region 1], ...], "any": [numbers in regions of
// those in all]}, then for each match its id, allocation head and the
// number in regions of its region (0: any region).
//
// The index must still be what the caller read, or the caller reads it
// again ('retry'), before anything changes. Then each server is read once
// (dropping stale index entries as allocateScript does), and each match
// is answered its placement made before, or placed by the documented rule
// against the free slots the matches before it left. Answers 'ok', then
// for each match: 'ok', the assignment and the server, or 'nocapacity'
// and two empty strings.
var placeManyScript = newScript(`
local idx = cjson.decode(ARGV[6])
local nregions = #idx.regions
if ARGV[5] == '1' and not same(KEYS[1], idx.all) then return {'retry'} end
for i = 1, nregions do
  if not same(KEYS[1 + i], idx.servers[i]) then return {'retry'} end
end

-- The servers that qualify now, by region; free counts down as the batch
-- takes their slots.
local byRegion = {}
local k = 2 + nregions
for i, r in ipairs(idx.regions) do
  local rk = KEYS[1 + i]
  local list = {}
  byRegion[i] = list
  if #idx.servers[i] == 0 then redis.call('SREM', KEYS[1], r) end
  for _, id in ipairs(idx.servers[i]) do
    local sk, ak = KEYS[k], KEYS[k + 1]
    k = k + 2
    local s = redis.call('HMGET', sk, 'exp', 'draining', 'capacity', 'allocated', 'region')
    if not s[1] or s[5] ~= r then
      redis.call('SREM', rk, id)
    elseif less(ARGV[2], s[1]) and s[2] ~= '1' then
      list[#list + 1] = {id = id, key = sk, allocs = ak, free = tonumber(s[3]) - tonumber(s[4])}
    end
  end
end
local anyRegion = {}
for _, i in ipairs(idx.any) do anyRegion[#anyRegion + 1] = byRegion[i] end

local function pick(lists)
  local best
  for _, list in ipairs(lists) do
    for _, c in ipairs(list) do
      if c.free > 0 and (not best or c.free > best.free or (c.free == best.free and less(c.id, best.id))) then
        best = c
      end
    end
  end
  return best
end

local out = {'ok'}
local function answer(word, asg, server)
  out[#out + 1] = word
  out[#out + 1] = asg
  out[#out + 1] = server
end
for m = 0, (#ARGV - 6) / 3 - 1 do
  local id, head, region = ARGV[7 + 3 * m], ARGV[8 + 3 * m], tonumber(ARGV[9 + 3 * m])
  local pk = KEYS[k + m]
  local placed = redis.call('HMGET', pk, 'server', 'assignment')
  if placed[1] then
    answer('ok', placed[2], placed[1])
  else
    local lists = anyRegion
    if region > 0 then lists = {byRegion[region]} end
    local best = pick(lists)
    if not best then
      answer('nocapacity', '', '')
    else
      best.free = best.free - 1
      redis.call('HINCRBY', best.key, 'allocated', 1)
      redis.call('HSET', best.allocs, id, head .. ',"allocated_at":' .. ARGV[3] .. '}')
      -- The allocations live as long as the server record.
      local ttl = redis.call('PTTL', best.key)
      if ttl > 0 then redis.call('PEXPIRE', best.allocs, ttl) end
      local asg = redis.call('HGET', best.key, 'assignment')
      redis.call('HSET', pk, 'server', best.id, 'assignment', asg)
      redis.call('PEXPIRE', pk, ARGV[4])
      serverChanged(best.key, best.id)
      answer('ok', asg, best.id)
    end
  end
end
return out
`)

// settleManyScript is step 2 of AssignMatches, on one queue's slot: it
// settles each match as settleScript does. KEYS[1] the queue's release
// log, KEYS[2] its matches waiting, then for each match its key followed
// by its tickets' keys. ARGV[2] now, ARGV[3] retention, then for each
// match its id, assignment JSON, server id, the number of its tickets and
// their ids. Answers, for each match, the list settleScript answers.
var settleManyScript = newScript(`
local function settle(mk, tks, tids, id, asg, server)
  local f = redis.call('HMGET', mk, 'status', 'assignment')
  if not f[1] then return {'notfound'} end
  if f[1] == 'failed' then return {'failed'} end
  if f[1] == 'pending' then
    for j, tk in ipairs(tks) do
      if redis.call('HGET', tk, 'status') == 'matched' then
        redis.call('HSET', tk, 'assignment', asg)
        finish(tk, tids[j], 'assigned', ARGV[2], ARGV[3], KEYS[1])
      end
    end
    redis.call('ZREM', KEYS[2], id)
    redis.call('HSET', mk, 'status', 'assigned', 'server_id', server, 'assignment', asg)
    redis.call('PEXPIRE', mk, ARGV[3])
  else
    asg = f[2]
  end
  local r = {'ok', asg}
  for j, tk in ipairs(tks) do
    local t = redis.call('HMGET', tk, 'status', 'pids')
    if t[1] == 'assigned' then
      r[#r + 1] = tids[j]
      r[#r + 1] = t[2]
    end
  end
  return r
end

local out = {}
local k, a = 3, 4
while a <= #ARGV do
  local n = tonumber(ARGV[a + 3])
  local tks, tids = {}, {}
  for j = 1, n do
    tks[j] = KEYS[k + j]
    tids[j] = ARGV[a + 3 + j]
  end
  out[#out + 1] = settle(KEYS[k], tks, tids, ARGV[a], ARGV[a + 1], ARGV[a + 2])
  k = k + 1 + n
  a = a + 4 + n
end
return out
`)
