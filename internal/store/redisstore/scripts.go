package redisstore

import "github.com/redis/go-redis/v9"

// Every script touches keys of one hash slot only, and only keys it is
// given in KEYS: a cluster client routes a script by its keys, and Redis
// Cluster refuses a script that reaches into another slot. The scripts do
// not know the key prefix, so they cannot build a key name; where a script
// needs keys found through stored data (a match's tickets, a region's
// servers), the caller reads them first and passes them, and the script
// checks what it relies on.
//
// ARGV[1] of every script is the change channel, which takes no slot:
// classic PUBLISH reaches every node of a cluster. Server changes go to it;
// ticket changes go to CHANNEL:<listener>, the channel of each front that
// watches the ticket (Options.Listener).
//
// Lua compares strings with strcoll, which follows the server's locale, so
// ids and time keys are compared byte by byte with less.
const prelude = `
local CHANNEL = ARGV[1]

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

-- unpool takes a ticket out of its queue's pool, expiry index and set of
-- unannounced tickets: the first four keys of every script that calls it
-- (Store.poolKeys).
local function unpool(key, id)
  local m = redis.call('HGET', key, 'pm')
  if m then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    redis.call('HDEL', key, 'pm')
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end

-- stateOf lays out the ticket hash at key for its change notification:
-- each field a ticket answer shows as "<name> <length> <value>", run
-- together (decodeTicketState reads it back). The fields only the store
-- reads (pids, exp, pm, w, acc) stay out.
local function stateOf(key)
  local h = redis.call('HGETALL', key)
  local out = {}
  for i = 1, #h, 2 do
    local f = h[i]
    if f ~= 'pids' and f ~= 'exp' and f ~= 'pm' and f ~= 'w' and f ~= 'acc' then
      local v = h[i + 1]
      out[#out + 1] = f .. ' ' .. #v .. ' ' .. v
    end
  end
  return table.concat(out)
end

-- bump raises the ticket's version and tells the listeners that watch the
-- ticket (field w: the ids of the fronts that hold its polls, see
-- watchScript) of its new state, "t:<id>:<version> <state>", each on its
-- own channel: a change reaches the fronts that wait for it, not every
-- process, and a ticket nobody polls changes without a message. Every
-- field change of the script comes before it.
local function bump(key, id, now)
  local v = redis.call('HINCRBY', key, 'version', 1)
  redis.call('HSET', key, 'updated_at', now)
  local w = redis.call('HGET', key, 'w')
  if w then
    local msg = 't:' .. id .. ':' .. v .. ' ' .. stateOf(key)
    for l in string.gmatch(w, '%S+') do
      redis.call('PUBLISH', CHANNEL .. ':' .. l, msg)
    end
  end
end

-- owed notes in the queue's release log rel that the players of ticket id
-- are to be released; the caller forgets the note once it has released
-- them, and ReleaseStale finishes the notes of callers that died first.
local function owed(rel, id, pids)
  if pids and pids ~= '' then redis.call('SADD', rel, id .. ' ' .. pids) end
end

-- finish moves a ticket to a terminal status and schedules its purge. Its
-- players are released by the caller afterwards, on their own slots.
local function finish(key, id, status, now, retention, rel)
  redis.call('HSET', key, 'status', status)
  bump(key, id, now)
  redis.call('PEXPIRE', key, retention)
  owed(rel, id, redis.call('HGET', key, 'pids'))
end

-- same reports whether set key holds exactly the members of want: a
-- placement checks that the server index it was handed is still current.
local function same(key, want)
  local cur = redis.call('SMEMBERS', key)
  if #cur ~= #want then return false end
  local set = {}
  for _, v in ipairs(cur) do set[v] = true end
  for _, v in ipairs(want) do
    if not set[v] then return false end
  end
  return true
end

-- serverChanged raises a server's version and tells listeners.
local function serverChanged(key, id)
  local v = redis.call('HINCRBY', key, 'version', 1)
  redis.call('PUBLISH', CHANNEL, 's:' .. id .. ':' .. v)
end
`

func newScript(body string) *redis.Script { return redis.NewScript(prelude + body) }

// Queue slot: tickets, pool, matches, expiry index, unannounced tickets,
// release log and idempotency keys of one queue. The scripts that change a
// searching ticket take the five keys of Store.poolKeys first.

// watchScript answers the fields of ticket KEYS[1], as HGETALL does, and
// adds listener ARGV[2] to those its changes are sent to (bump), keeping
// the ARGV[3] most recent: a front that died stays listed until newer ones
// push it out, and a message to it costs Redis a PUBLISH nobody hears.
// Nothing is written for an unknown ticket, or for a listener already
// last in the list.
var watchScript = newScript(`
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
local me, keep = ARGV[2], tonumber(ARGV[3])
local w = redis.call('HGET', KEYS[1], 'w')
local list = {}
if w then
  for l in string.gmatch(w, '%S+') do
    if l ~= me then list[#list + 1] = l end
  end
end
list[#list + 1] = me
while #list > keep do table.remove(list, 1) end
local nw = table.concat(list, ' ')
if nw ~= w then redis.call('HSET', KEYS[1], 'w', nw) end
return h
`)

// createScript writes a new ticket, the first step of CreateTicket.
// KEYS[1] ticket, KEYS[2] expiry index, KEYS[3] unannounced tickets,
// KEYS[4] the idempotency key, if any. ARGV[2] id, ARGV[3] expiry score,
// ARGV[4] creation time in ms, ARGV[5] the key's value ("<id>
// <fingerprint>"), ARGV[6] its time to live in ms, ARGV[7] the ticket id
// the key may be taken from (found deleted by the caller) or ”,
// ARGV[8..] the ticket's field/value pairs.
//
// A key held by another ticket answers 'replay', that ticket's id and its
// fingerprint; the caller reads that ticket.
var createScript = newScript(`
if KEYS[4] then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sp = string.find(prev, ' ', 1, true) or (#prev + 1)
    local owner = string.sub(prev, 1, sp - 1)
    if owner ~= ARGV[7] then return {'replay', owner, string.sub(prev, sp + 1)} end
  end
end
local st = redis.call('HGET', KEYS[1], 'status')
if st then return {'exists', st} end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
return {'ok'}
`)

// deleteScript: KEYS[1..5] pool keys, KEYS[6] ticket. ARGV[2] id. Deletes
// the ticket only while it is searching, which a claim, running atomically
// like this, would have changed. Answers 'ok' and the ticket's player ids,
// if it existed, for the caller to release; or 'conflict' and the status
// that kept it.
var deleteScript = newScript(`
local f = redis.call('HMGET', KEYS[6], 'status', 'pids')
if f[1] and f[1] ~= 'searching' then return {'conflict', f[1]} end
unpool(KEYS[6], ARGV[2])
redis.call('DEL', KEYS[6])
owed(KEYS[5], ARGV[2], f[2])
return {'ok', f[2] or ''}
`)

// cancelScript: KEYS[1..5] pool keys, KEYS[6] ticket. ARGV[2] id, ARGV[3]
// now, ARGV[4] retention in ms. Answers the ticket's fields after the
// change.
var cancelScript = newScript(`
local st = redis.call('HGET', KEYS[6], 'status')
if not st then return {'notfound'} end
if st == 'searching' then
  unpool(KEYS[6], ARGV[2])
  finish(KEYS[6], ARGV[2], 'cancelled', ARGV[3], ARGV[4], KEYS[5])
elseif st ~= 'cancelled' then
  return {'conflict', redis.call('HGETALL', KEYS[6])}
end
return {'ok', redis.call('HGETALL', KEYS[6])}
`)

// expireScript: KEYS[1..5] pool keys, KEYS[6] ticket. ARGV[2] id, ARGV[3]
// now, ARGV[4] retention. Answers whether it expired the ticket, and the
// player ids of a ticket that is terminal now.
var expireScript = newScript(`
local f = redis.call('HMGET', KEYS[6], 'status', 'pids')
if f[1] == 'searching' then
  unpool(KEYS[6], ARGV[2])
  finish(KEYS[6], ARGV[2], 'expired', ARGV[3], ARGV[4], KEYS[5])
  return {1, f[2]}
end
if f[1] and terminal(f[1]) then return {0, f[2]} end
return {0, ''}
`)

// expireDueScript expires the due tickets among those given, which the
// caller read from the expiry index. KEYS[1..5] pool keys, KEYS[6..]
// tickets. ARGV[2] now as a time key, ARGV[3] now, ARGV[4] retention,
// ARGV[5] limit, ARGV[6..] the ids of KEYS[6..].
//
// The index only narrows the search to the millisecond; the exact expiry
// is the ticket's exp field. Entries of tickets that are no longer
// searching (or no longer exist) are dropped. Answers how many entries it
// kept as not yet due, how many it looked at, then each expired id with
// its player ids.
var expireDueScript = newScript(`
local limit = tonumber(ARGV[5])
local out, kept, seen, n = {}, 0, 0, 0
for i = 6, #KEYS do
  if n >= limit then break end
  seen = seen + 1
  local key, id = KEYS[i], ARGV[i]
  local f = redis.call('HMGET', key, 'status', 'exp', 'pids')
  if f[1] ~= 'searching' then
    redis.call('ZREM', KEYS[3], id)
  elseif not f[2] or not less(ARGV[2], f[2]) then
    unpool(key, id)
    finish(key, id, 'expired', ARGV[3], ARGV[4], KEYS[5])
    out[#out + 1] = id
    out[#out + 1] = f[3] or ''
    n = n + 1
  else
    kept = kept + 1
  end
end
local reply = {kept, seen}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
`)

// addToPoolScript: KEYS[1] pool, KEYS[2] pool entries, KEYS[3] ticket,
// KEYS[4] unannounced tickets. ARGV[2] member, ARGV[3] score, ARGV[4] entry
// JSON, ARGV[5] ticket id.
var addToPoolScript = newScript(`
if redis.call('HGET', KEYS[3], 'status') ~= 'searching' then return 0 end
redis.call('ZREM', KEYS[4], ARGV[5])
local old = redis.call('HGET', KEYS[3], 'pm')
if old and old ~= ARGV[2] then
  redis.call('ZREM', KEYS[1], old)
  redis.call('HDEL', KEYS[2], old)
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[3], 'pm', ARGV[2])
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

// claimScript: KEYS[1..5] pool keys, KEYS[6] match, KEYS[7] matches
// waiting, KEYS[8] matches accepting, KEYS[9..] tickets. ARGV[2] now,
// ARGV[3] match ref JSON, ARGV[4] match JSON, ARGV[5] allocation head,
// ARGV[6] region, ARGV[7] ticket ids JSON, ARGV[8] match id, ARGV[9]
// assignment deadline in ms, ARGV[10] the tickets' acceptance JSON (empty
// for a match that asks for none), ARGV[11] the acceptance deadline in ms,
// ARGV[12] it as JSON, ARGV[13] now in ms, ARGV[14..] the ids of
// KEYS[9..].
//
// A match that asks for acceptance is 'accepting' and indexed by its
// deadline in KEYS[8] (answerScript, dissolveScript); any other is
// 'pending' and waits for a server, indexed in KEYS[7].
var claimScript = newScript(`
if redis.call('EXISTS', KEYS[6]) == 1 then return {'ok'} end
for i = 9, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'status')
  if st ~= 'searching' then return {'conflict', ARGV[i + 5], st or ''} end
end
local asking = ARGV[10] ~= ''
if asking then
  redis.call('ZADD', KEYS[8], ARGV[11], ARGV[8])
else
  redis.call('ZADD', KEYS[7], ARGV[9], ARGV[8])
end
for i = 9, #KEYS do
  local id = ARGV[i + 5]
  unpool(KEYS[i], id)
  if asking then
    redis.call('HSET', KEYS[i], 'status', 'pending_acceptance', 'match', ARGV[3], 'acceptance', ARGV[10])
  else
    redis.call('HSET', KEYS[i], 'status', 'matched', 'match', ARGV[3])
  end
  bump(KEYS[i], id, ARGV[2])
end
redis.call('HSET', KEYS[6], 'match', ARGV[4], 'status', asking and 'accepting' or 'pending', 'region', ARGV[6],
  'tickets', ARGV[7], 'alloc_head', ARGV[5])
if asking then redis.call('HSET', KEYS[6], 'accept_by', ARGV[12], 'claimed', ARGV[13], 'assign_due', ARGV[9]) end
return {'ok'}
`)

// Acceptance (answerScript, dissolveScript) works on a match that is
// 'accepting': KEYS[1..5] pool keys, KEYS[6] the match, KEYS[7] matches
// waiting, KEYS[8] matches accepting, KEYS[9..] the match's tickets, in
// the order of its ticket list. ARGV[2] now, ARGV[3] now in ms, ARGV[4]
// retention in ms, ARGV[5] match id, ARGV[6] the match's ticket ids JSON as
// the caller read them, then further arguments, then the ids of KEYS[9..].
// A ticket's field acc is '1' once it has accepted.
const acceptancePrelude = `
-- tickets checks that the caller passed the match's own tickets.
local function tickets()
  return redis.call('HGET', KEYS[6], 'tickets') == ARGV[6]
end

-- later is exp, a time key (timeKey), pushed back by ms milliseconds: its
-- first 14 digits count milliseconds from 2^63 ns, which a double holds.
local function later(exp, ms)
  return string.format('%014d', tonumber(string.sub(exp, 1, 14)) + ms) .. string.sub(exp, 15)
end

-- dissolve ends the match: each ticket pending on it for which out(i)
-- is true ends cancelled with reason; the others go back to searching,
-- unannounced since now, their expiries pushed back by the time the
-- match was offered. It answers the ids of each, with the players of the
-- cancelled for the caller to release: {requeued ids}, {id, pids, ...}.
local function dissolve(first, out, reason)
  local held = tonumber(ARGV[3]) - tonumber(redis.call('HGET', KEYS[6], 'claimed'))
  local requeued, cancelled = {}, {}
  for i = 9, #KEYS do
    local key, id = KEYS[i], ARGV[i + first - 9]
    if redis.call('HGET', key, 'status') == 'pending_acceptance' then
      local leaves = out(key, id)
      redis.call('HDEL', key, 'match', 'acceptance', 'acc')
      if leaves then
        redis.call('HSET', key, 'reason', reason)
        finish(key, id, 'cancelled', ARGV[2], ARGV[4], KEYS[5])
        cancelled[#cancelled + 1] = id
        cancelled[#cancelled + 1] = redis.call('HGET', key, 'pids')
      else
        local exp = later(redis.call('HGET', key, 'exp'), held)
        redis.call('HSET', key, 'status', 'searching', 'exp', exp)
        redis.call('ZADD', KEYS[3], tonumber(string.sub(exp, 1, 14)) - 9223372036854, id)
        redis.call('ZADD', KEYS[4], ARGV[3], id)
        bump(key, id, ARGV[2])
        requeued[#requeued + 1] = id
      end
    end
  end
  redis.call('ZREM', KEYS[8], ARGV[5])
  redis.call('HSET', KEYS[6], 'status', 'dissolved')
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
  return requeued, cancelled
end
`

func newAcceptanceScript(body string) *redis.Script {
	return redis.NewScript(prelude + acceptancePrelude + body)
}

// answerScript records one ticket's answer. ARGV[7] the answering
// ticket's id, ARGV[8] '1' to accept or '0' to decline, ARGV[9] its
// acceptance JSON once accepted, ARGV[10..] the ids of KEYS[9..].
//
// Answers 'stale' when the match's tickets are not what the caller read,
// or it is not accepting (the caller reads again); 'accepted' when the
// ticket has accepted and the match still waits for others; 'ready' when
// this acceptance completed it; 'declined' with the requeued ids and the
// cancelled ticket's id and players.
var answerScript = newAcceptanceScript(`
if not tickets() or redis.call('HGET', KEYS[6], 'status') ~= 'accepting' then return {'stale'} end
local me
for i = 9, #KEYS do
  if ARGV[i + 1] == ARGV[7] then me = KEYS[i] end
end
if not me or redis.call('HGET', me, 'status') ~= 'pending_acceptance' then return {'stale'} end
if ARGV[8] == '0' then
  local requeued, cancelled = dissolve(10, function(key, id) return id == ARGV[7] end, 'declined')
  return {'declined', requeued, cancelled}
end
if redis.call('HGET', me, 'acc') ~= '1' then
  redis.call('HSET', me, 'acc', '1', 'acceptance', ARGV[9])
  bump(me, ARGV[7], ARGV[2])
end
for i = 9, #KEYS do
  if redis.call('HGET', KEYS[i], 'acc') ~= '1' then return {'accepted'} end
end
for i = 9, #KEYS do
  redis.call('HSET', KEYS[i], 'status', 'matched')
  redis.call('HDEL', KEYS[i], 'acceptance', 'acc')
  bump(KEYS[i], ARGV[i + 1], ARGV[2])
end
redis.call('ZREM', KEYS[8], ARGV[5])
redis.call('ZADD', KEYS[7], redis.call('HGET', KEYS[6], 'assign_due'), ARGV[5])
redis.call('HSET', KEYS[6], 'status', 'pending')
return {'ready', redis.call('HGET', KEYS[6], 'match')}
`)

// dissolveScript times a match's acceptance out. ARGV[7] the deadline
// the caller found due, in ms; ARGV[8..] the ids of KEYS[9..]. Answers
// 'stale' if the match is not accepting or its tickets are not what the
// caller read; 'early' if its deadline is later; else 'dissolved' with the
// requeued ids and the cancelled tickets' ids and players.
var dissolveScript = newAcceptanceScript(`
if not tickets() or redis.call('HGET', KEYS[6], 'status') ~= 'accepting' then
  redis.call('ZREM', KEYS[8], ARGV[5])
  return {'stale'}
end
local due = redis.call('ZSCORE', KEYS[8], ARGV[5])
if not due or tonumber(due) > tonumber(ARGV[7]) then return {'early'} end
local requeued, cancelled = dissolve(8, function(key, id) return redis.call('HGET', key, 'acc') ~= '1' end, 'accept_timeout')
return {'dissolved', requeued, cancelled}
`)

// settleScript is the second step of AssignMatch: KEYS[1] match, KEYS[2]
// the queue's release log, KEYS[3] its matches waiting, KEYS[4..] its
// tickets. ARGV[2] assignment JSON, ARGV[3] server id, ARGV[4] now, ARGV[5]
// retention, ARGV[6] match id, ARGV[7..] the ids of KEYS[4..].
//
// A pending match becomes assigned with its tickets. A match assigned
// before keeps its assignment. Either way the answer is the assignment,
// then each assigned ticket's id and player ids, for the caller to release
// (again, if an earlier call died before it did). A failed match is
// refused: the caller undoes the first step.
var settleScript = newScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'assignment')
if not f[1] then return {'notfound'} end
if f[1] == 'failed' then return {'failed'} end
local asg = f[2]
if f[1] == 'pending' then
  asg = ARGV[2]
  for i = 4, #KEYS do
    if redis.call('HGET', KEYS[i], 'status') == 'matched' then
      redis.call('HSET', KEYS[i], 'assignment', asg)
      finish(KEYS[i], ARGV[i + 3], 'assigned', ARGV[4], ARGV[5], KEYS[2])
    end
  end
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('HSET', KEYS[1], 'status', 'assigned', 'server_id', ARGV[3], 'assignment', asg)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local out = {'ok', asg}
for i = 4, #KEYS do
  local t = redis.call('HMGET', KEYS[i], 'status', 'pids')
  if t[1] == 'assigned' then
    out[#out + 1] = ARGV[i + 3]
    out[#out + 1] = t[2]
  end
end
return out
`)

// failScript: KEYS[1] match, KEYS[2] the queue's release log, KEYS[3] its
// matches waiting, KEYS[4..] its tickets. ARGV[2] reason, ARGV[3] now,
// ARGV[4] retention, ARGV[5] match id, ARGV[6..] the ids of KEYS[4..]. Matched tickets
// are out of the pool and the expiry index already. Answers each failed
// ticket's id and player ids, for the caller to release.
var failScript = newScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'notfound'} end
if st == 'assigned' then return {'assigned'} end
if st == 'accepting' or st == 'dissolved' then return {'notaccepted'} end
if st == 'pending' then
  for i = 4, #KEYS do
    if redis.call('HGET', KEYS[i], 'status') == 'matched' then
      redis.call('HSET', KEYS[i], 'reason', ARGV[2])
      finish(KEYS[i], ARGV[i + 2], 'failed', ARGV[3], ARGV[4], KEYS[2])
    end
  end
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('HSET', KEYS[1], 'status', 'failed')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local out = {'ok'}
for i = 4, #KEYS do
  local t = redis.call('HMGET', KEYS[i], 'status', 'pids')
  if t[1] == 'failed' then
    out[#out + 1] = ARGV[i + 2]
    out[#out + 1] = t[2]
  end
end
return out
`)

// fillScript is step 1 of FillBackfill (backfill.go): KEYS[1..5] pool
// keys, KEYS[6] the queue's backfill requests, KEYS[7] the ticket,
// KEYS[8] the queue's fills owed. ARGV[2] match id, ARGV[3] ticket id,
// ARGV[4] team (from 0), ARGV[5] the ticket's match ref JSON, ARGV[6]
// now, ARGV[7] retention. Answers 'conflict' and the status of a ticket
// that is not searching; 'gone' when the request is gone or the team has
// fewer seats open than the party has players; else 'ok', the
// assignment, the ticket's player ids and the note of the fill.
var fillScript = newScript(`
local st = redis.call('HGET', KEYS[7], 'status')
if st ~= 'searching' then return {'conflict', st or ''} end
local m = ARGV[2]
local open = redis.call('HGET', KEYS[6], m .. ':o')
if not open then return {'gone'} end
local seats = {}
for n in string.gmatch(open, '[^,]+') do seats[#seats + 1] = tonumber(n) end
local team = tonumber(ARGV[4]) + 1
local pids = redis.call('HGET', KEYS[7], 'pids')
local party = #cjson.decode(pids)
if not seats[team] or seats[team] < party then return {'gone'} end
seats[team] = seats[team] - party
local left = 0
for _, n in ipairs(seats) do left = left + n end
local req = cjson.decode(redis.call('HGET', KEYS[6], m))
local asg = redis.call('HGET', KEYS[6], m .. ':a')
if left == 0 then
  redis.call('HDEL', KEYS[6], m, m .. ':o', m .. ':a')
else
  redis.call('HSET', KEYS[6], m .. ':o', table.concat(seats, ','))
end
unpool(KEYS[7], ARGV[3])
redis.call('HSET', KEYS[7], 'assignment', asg, 'match', ARGV[5])
finish(KEYS[7], ARGV[3], 'assigned', ARGV[6], ARGV[7], KEYS[5])
local note = cjson.encode({server = req.server_id, match = m, ticket = ARGV[3], team = team - 1})
redis.call('SADD', KEYS[8], note)
return {'ok', asg, pids, note}
`)

// Player slot: one player's claim.

// claimPlayerScript: KEYS[1] the player's claim. ARGV[2] the claiming
// ticket's id, ARGV[3] the id of a ticket found dead that may be taken over
// (or an empty string). Answers an empty string once the claim is the
// ticket's, or else the owner, which the caller checks.
var claimPlayerScript = newScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[2] or cur == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[2])
  return ''
end
return cur
`)

// releasePlayerScript: KEYS[1] a player's claim. ARGV[2] ticket id. It
// deletes the claim only if it is still the ticket's.
var releasePlayerScript = newScript(`
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// Server slot: the registry.

// registerScript: KEYS[1] server, KEYS[2] its allocations, KEYS[3] its
// region's index, KEYS[4] the index of regions. ARGV[2] id, ARGV[3]
// region, ARGV[4] time to live in ms, ARGV[5..] field/value pairs. New
// servers start at version 0, with nothing allocated, undrained. A server
// that moves leaves its id in the old region's index; allocateScript drops
// it there.
var registerScript = newScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSETNX', KEYS[1], 'allocated', 0)
redis.call('HSETNX', KEYS[1], 'version', 0)
redis.call('HSETNX', KEYS[1], 'draining', 0)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
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

// allocateScript is the first step of AssignMatch: it places match on a
// server, once. KEYS[1] the match's placement record, KEYS[2] the index of
// regions, then the index of each region searched, then each indexed
// server's record and allocations. ARGV[2] match id, ARGV[3] now as a time
// key, ARGV[4] now as JSON, ARGV[5] allocation head, ARGV[6] retention,
// ARGV[7] '1' if the match takes any region, ARGV[8] the index the caller
// read, as JSON {"regions": [...], "servers": [[ids of region 1], ...]}.
//
// A match placed before answers its placement again. The index must still
// be what the caller read, or the caller reads it again ('retry'), so the
// choice is among every server that qualifies now. Index entries whose
// server was purged or moved to another region are dropped on the way.
var allocateScript = newScript(`
local placed = redis.call('HMGET', KEYS[1], 'server', 'assignment')
if placed[1] then return {'ok', placed[2], placed[1]} end

local idx = cjson.decode(ARGV[8])
if ARGV[7] == '1' and not same(KEYS[2], idx.regions) then return {'retry'} end
for i = 1, #idx.regions do
  if not same(KEYS[2 + i], idx.servers[i]) then return {'retry'} end
end

local best, bestFree, bestKey, bestAllocs
local k = 3 + #idx.regions
for i, r in ipairs(idx.regions) do
  local rk = KEYS[2 + i]
  if #idx.servers[i] == 0 then redis.call('SREM', KEYS[2], r) end
  for _, id in ipairs(idx.servers[i]) do
    local sk, ak = KEYS[k], KEYS[k + 1]
    k = k + 2
    local s = redis.call('HMGET', sk, 'exp', 'draining', 'capacity', 'allocated', 'region')
    if not s[1] or s[5] ~= r then
      redis.call('SREM', rk, id)
    elseif less(ARGV[3], s[1]) and s[2] ~= '1' then
      local free = tonumber(s[3]) - tonumber(s[4])
      if free > 0 and (not best or free > bestFree or (free == bestFree and less(id, best))) then
        best, bestFree, bestKey, bestAllocs = id, free, sk, ak
      end
    end
  end
end
if not best then return {'nocapacity'} end

redis.call('HINCRBY', bestKey, 'allocated', 1)
redis.call('HSET', bestAllocs, ARGV[2], ARGV[5] .. ',"allocated_at":' .. ARGV[4] .. '}')
-- The allocations live as long as the server record.
local ttl = redis.call('PTTL', bestKey)
if ttl > 0 then redis.call('PEXPIRE', bestAllocs, ttl) end
local asg = redis.call('HGET', bestKey, 'assignment')
redis.call('HSET', KEYS[1], 'server', best, 'assignment', asg)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
serverChanged(bestKey, best)
return {'ok', asg, best}
`)

// unallocateScript undoes allocateScript for a match that failed: KEYS[1]
// the match's placement record, KEYS[2] the server it names, KEYS[3] that
// server's allocations. ARGV[2] match id, ARGV[3] the server id the caller
// read from the record. Answers 1 when it undid, 0 when there was nothing
// to undo, -1 when the record names another server now.
var unallocateScript = newScript(`
local server = redis.call('HGET', KEYS[1], 'server')
if not server then return 0 end
if server ~= ARGV[3] then return -1 end
redis.call('DEL', KEYS[1])
if redis.call('HDEL', KEYS[3], ARGV[2]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'allocated', -1)
  serverChanged(KEYS[2], ARGV[3])
end
return 1
`)

// withdrawScript: KEYS[1] the queue's backfill requests. ARGV[2] match
// id, ARGV[3] the id of the server that ends it. The request goes only if
// it is that server's.
var withdrawScript = newScript(`
local req = redis.call('HGET', KEYS[1], ARGV[2])
if req and cjson.decode(req).server_id == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[2], ARGV[2] .. ':o', ARGV[2] .. ':a')
end
return {'ok'}
`)

// appendScript is step 2 of FillBackfill: KEYS[1] server, KEYS[2] its
// allocations. ARGV[2] server id, ARGV[3] match id, ARGV[4] the
// allocation as the caller read it, ARGV[5] the allocation with the
// party. Answers 'retry' if the allocation changed since it was read.
var appendScript = newScript(`
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[4] then return {'retry'} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
serverChanged(KEYS[1], ARGV[2])
return {'ok'}
`)

// endScript: KEYS[1] server, KEYS[2] its allocations. ARGV[2] server id,
// ARGV[3] match id.
var endScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HDEL', KEYS[2], ARGV[3]) == 0 then
  return {'notfound'}
end
redis.call('HINCRBY', KEYS[1], 'allocated', -1)
serverChanged(KEYS[1], ARGV[2])
return {'ok'}
`)

// unannouncedScript: KEYS[1] a queue's unannounced tickets, KEYS[2..]
// tickets. ARGV[2] the cutoff in ms, ARGV[3] now in ms, ARGV[4..] the ids
// of KEYS[2..]. Each ticket still searching and still unannounced since
// before the cutoff is marked returned now and answered whole; the entries
// of the others go.
var unannouncedScript = newScript(`
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  local at = redis.call('ZSCORE', KEYS[1], id)
  if at and tonumber(at) <= tonumber(ARGV[2]) then
    if redis.call('HGET', KEYS[i], 'status') == 'searching' then
      redis.call('ZADD', KEYS[1], ARGV[3], id)
      out[#out + 1] = redis.call('HGETALL', KEYS[i])
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return out
`)

// overdueScript: KEYS[1] a queue's matches waiting, KEYS[2..] matches.
// ARGV[2] the cutoff in ms, ARGV[3] now in ms, ARGV[4..] the ids of
// KEYS[2..]. Each match still pending and due at or before the cutoff is
// marked due again at now and answered (its JSON); the entries of the
// others go.
var overdueScript = newScript(`
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  local at = redis.call('ZSCORE', KEYS[1], id)
  if at and tonumber(at) <= tonumber(ARGV[2]) then
    local f = redis.call('HMGET', KEYS[i], 'status', 'match')
    if f[1] == 'pending' and f[2] then
      redis.call('ZADD', KEYS[1], ARGV[3], id)
      out[#out + 1] = f[2]
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return out
`)
