-- Helpers prepended to every script below (never run on its own).
-- KEYS: none. ARGV: none. Returns: nothing; defines local functions.

-- The consumer holding stream entry `entry` and its delivery count, or nil when nobody does
-- (acknowledged, deleted, or the group is gone after a Redis restart).
local function lease_holder(stream, group, entry)
  local ok, res = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1)
  if not ok or type(res) ~= 'table' or #res == 0 then
    return nil, 0
  end
  return res[1][2], tonumber(res[1][4])
end

-- Task states only move forward; a finished task never changes (mirrors TaskStatus::can_become).
local function can_become(from, to)
  if from == 'SUCCESS' or from == 'FAILURE' then
    return false
  end
  return to ~= 'PENDING'
end

-- Escapes the key separator like `keys::escape` in Rust.
local function escape(part)
  return (string.gsub(string.gsub(part, '%%', '%%25'), ':', '%%3A'))
end

-- A record's owner: its `owner` field, or (records written before it existed) its meta JSON's.
local function record_owner(record)
  local owner = redis.call('HGET', record, 'owner')
  if owner then
    return owner
  end
  local meta = redis.call('HGET', record, 'meta')
  if meta then
    local ok, decoded = pcall(cjson.decode, meta)
    if ok and type(decoded) == 'table' and type(decoded['owner']) == 'string' then
      return decoded['owner']
    end
  end
  return nil
end

-- Task `id` no longer counts against the queue bounds (in-flight set, bytes, owner set).
local function release(inflight, bytes, owner_set, id)
  redis.call('ZREM', inflight, id)
  if owner_set then
    redis.call('ZREM', owner_set, id)
  end
  local n = redis.call('HGET', bytes, id)
  if n then
    redis.call('HDEL', bytes, id)
    redis.call('HINCRBY', bytes, '#total', -tonumber(n))
  end
end

-- Forgets in-flight entries past their expiry (tasks that expired unfinished, e.g. queued on
-- a crashed instance), a bounded batch per call (`now` in ms).
local function release_expired(inflight, bytes, now)
  local gone = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 64)
  for _, id in ipairs(gone) do
    release(inflight, bytes, nil, id)
  end
end
