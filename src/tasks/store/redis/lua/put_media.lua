-- Stores a task's media object (portrait) with the task's remaining TTL and files its key in
-- the record, so deleting the task deletes it. Nothing is stored for a task that is gone.
-- KEYS[1] record hash, KEYS[2] media key
-- ARGV[1] bytes
-- Returns {'OK'} | {'NOT_FOUND'}

local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  return {'NOT_FOUND'}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
local media = redis.call('HGET', KEYS[1], 'media')
if media then
  media = media .. '\n' .. KEYS[2]
else
  media = KEYS[2]
end
redis.call('HSET', KEYS[1], 'media', media)
return {'OK'}
