-- Queues a new task in one step (a crash never leaves a record without queued work): checks
-- the idempotency key and the queue bounds, then writes the Pending record, makes the staged
-- upload (a hash: JSON header plus raw image bytes, written by the HSET before this script in
-- the same MULTI) the input with the task TTL, appends it to the work stream and counts it in
-- flight. Nothing is kept unless it all is: a refused submit deletes its staged upload.
-- KEYS[1] record hash, KEYS[2] input hash, KEYS[3] work stream, KEYS[4] in-flight set,
-- KEYS[5] in-flight bytes hash, KEYS[6] the owner's in-flight set, KEYS[7] idempotency key,
-- KEYS[8] staged upload, KEYS[9] the owner's task index
-- ARGV[1] task id, ARGV[2] record JSON (submit-time), ARGV[3] owner, ARGV[4] now ms (record),
-- ARGV[5] TTL ms, ARGV[6] image bytes, ARGV[7] max tasks, ARGV[8] max bytes, ARGV[9] max per
-- owner, ARGV[10] request fingerprint ('' without an idempotency key), ARGV[11] idempotency
-- TTL ms, ARGV[12] the task's list position (index member), ARGV[13] exclusive lex bound below
-- which index members are older than the owner's task TTL (expired: dropped here), ARGV[14]
-- the service (kept in the record for `list.lua`'s filter)
-- Returns {'OK', entry id} | {'EXISTING', task id} | {'CONFLICT'} | {'FULL', 'owner'|'queue'}
-- | {'ILLEGAL', current status} when the id already exists

local function refuse(reply)
  redis.call('DEL', KEYS[8])
  return reply
end

if ARGV[10] ~= '' then
  local used = redis.call('GET', KEYS[7])
  if used then
    local fingerprint, task = string.match(used, '^(%S+) (%S+)$')
    if fingerprint == ARGV[10] then
      return refuse({'EXISTING', task})
    end
    return refuse({'CONFLICT'})
  end
end
local current = redis.call('HGET', KEYS[1], 'status')
if current then
  return refuse({'ILLEGAL', current})
end

-- Bounds. Entries past their expiry score (tasks that expired unfinished, e.g. on a crashed
-- instance) are dropped only when a bound is reached, so the common submit pays nothing for it.
local now = tonumber(ARGV[4])
local function owner_full()
  return redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[9])
end
if owner_full() then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  if owner_full() then
    return refuse({'FULL', 'owner'})
  end
end
local bytes = tonumber(ARGV[6])
local function queue_full()
  local total = tonumber(redis.call('HGET', KEYS[5], '#total') or '0')
  return redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) or total + bytes > tonumber(ARGV[8])
end
if queue_full() then
  release_expired(KEYS[4], KEYS[5], now)
  if queue_full() then
    return refuse({'FULL', 'queue'})
  end
end

local entry = redis.call('XADD', KEYS[3], '*', 'task', ARGV[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'status', 'PENDING', 'updated_ms', ARGV[4], 'owner', ARGV[3],
  'entry', entry, 'pos', ARGV[12], 'service', ARGV[14])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('RENAME', KEYS[8], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])

local expires = now + tonumber(ARGV[5])
redis.call('ZADD', KEYS[4], expires, ARGV[1])
redis.call('ZADD', KEYS[6], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[6], ARGV[5])
redis.call('ZADD', KEYS[9], 0, ARGV[12])
redis.call('ZREMRANGEBYLEX', KEYS[9], '-', ARGV[13])
redis.call('PEXPIRE', KEYS[9], ARGV[5])
redis.call('HSET', KEYS[5], ARGV[1], bytes)
redis.call('HINCRBY', KEYS[5], '#total', bytes)
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[7], ARGV[10] .. ' ' .. ARGV[1], 'PX', ARGV[11])
  redis.call('HSET', KEYS[1], 'idem', KEYS[7])
end
return {'OK', entry}
