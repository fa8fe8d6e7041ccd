-- Finishes a task: writes the final status and result and the media its result links to
-- (portraits: with the record's remaining TTL, their keys filed in the record so deleting the
-- task deletes them), deletes the input images, acknowledges and deletes the stream entry and
-- stops counting it in flight, all at once. Nothing is written unless the record is unfinished
-- and the caller still holds the entry.
-- KEYS[1] record hash, KEYS[2] input hash, KEYS[3] work stream, KEYS[4] in-flight set,
-- KEYS[5] in-flight bytes hash, KEYS[6..] media keys
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] worker, ARGV[4] final status (SUCCESS|FAILURE),
-- ARGV[5] outcome JSON (`TaskOutcome`), ARGV[6] now ms, ARGV[7] task id, ARGV[8] owner set prefix,
-- ARGV[9] the owner's in-flight set ('' when the caller does not know the owner: read from the
-- record), ARGV[10..] the media's bytes, one per media key
-- Returns {'OK'} | {'NOT_FOUND'} | {'ILLEGAL', current status} | {'LEASE_LOST'}

local function owner_set()
  if ARGV[9] ~= '' then
    return ARGV[9]
  end
  local owner = record_owner(KEYS[1])
  if owner then
    return ARGV[8] .. escape(owner)
  end
  return nil
end

local current = redis.call('HGET', KEYS[1], 'status')
local holder = lease_holder(KEYS[3], ARGV[1], ARGV[2])
if not current then
  -- The record expired: nothing can be reported, so drop the delivery if we hold it.
  if holder == ARGV[3] then
    redis.call('DEL', KEYS[2])
    redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[3], ARGV[2])
    release(KEYS[4], KEYS[5], nil, ARGV[7])
  end
  return {'NOT_FOUND'}
end
if (ARGV[4] ~= 'SUCCESS' and ARGV[4] ~= 'FAILURE') or not can_become(current, ARGV[4]) then
  return {'ILLEGAL', current}
end
if holder ~= ARGV[3] then
  return {'LEASE_LOST'}
end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'result', ARGV[5], 'updated_ms', ARGV[6])
if #KEYS > 5 then
  local ttl = redis.call('PTTL', KEYS[1])
  local filed = redis.call('HGET', KEYS[1], 'media')
  for i = 6, #KEYS do
    if ttl > 0 then
      redis.call('SET', KEYS[i], ARGV[i + 4], 'PX', ttl)
    else
      redis.call('SET', KEYS[i], ARGV[i + 4])
    end
    filed = filed and (filed .. '\n' .. KEYS[i]) or KEYS[i]
  end
  redis.call('HSET', KEYS[1], 'media', filed)
end
redis.call('DEL', KEYS[2])
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
release(KEYS[4], KEYS[5], owner_set(), ARGV[7])
return {'OK'}
