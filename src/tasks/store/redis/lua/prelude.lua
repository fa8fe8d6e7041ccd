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

-- Creates the consumer group (and the stream) if missing. Starting at 0 delivers every entry
-- still in the stream: acknowledged entries are always deleted, so none is delivered twice.
local function ensure_group(stream, group)
  pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
