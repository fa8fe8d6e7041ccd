-- Deletes a task of its owner at once: record, input, stream entry (a running worker loses
-- its lease), portraits, idempotency key, in-flight counts and its place in the owner's index.
-- KEYS[1] record hash, KEYS[2] input hash, KEYS[3] work stream, KEYS[4] in-flight set,
-- KEYS[5] in-flight bytes hash, KEYS[6] the caller's task index
-- ARGV[1] group, ARGV[2] caller (owner), ARGV[3] task id, ARGV[4] owner set prefix
-- Returns {'OK'} | {'NOT_FOUND'} (no such task, or someone else's)

local owner = record_owner(KEYS[1])
if not owner or owner ~= ARGV[2] then
  return {'NOT_FOUND'}
end
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then
  redis.call('XACK', KEYS[3], ARGV[1], entry)
  redis.call('XDEL', KEYS[3], entry)
end
local media = redis.call('HGET', KEYS[1], 'media')
if media then
  for key in string.gmatch(media, '[^\n]+') do
    redis.call('DEL', key)
  end
end
local idem = redis.call('HGET', KEYS[1], 'idem')
if idem then
  redis.call('DEL', idem)
end
local pos = redis.call('HGET', KEYS[1], 'pos')
if pos then
  redis.call('ZREM', KEYS[6], pos)
end
release(KEYS[4], KEYS[5], ARGV[4] .. escape(owner), ARGV[3])
redis.call('DEL', KEYS[1], KEYS[2])
return {'OK'}
