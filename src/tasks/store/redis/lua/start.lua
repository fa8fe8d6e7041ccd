-- Marks a claimed task Started (again, after a reclaim), if the caller still holds it.
-- KEYS[1] record hash, KEYS[2] work stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] worker, ARGV[4] now ms
-- Returns {'OK'} | {'NOT_FOUND'} | {'ILLEGAL', current status} | {'LEASE_LOST'}

local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {'NOT_FOUND'}
end
if not can_become(current, 'STARTED') then
  return {'ILLEGAL', current}
end
if lease_holder(KEYS[2], ARGV[1], ARGV[2]) ~= ARGV[3] then
  return {'LEASE_LOST'}
end
redis.call('HSET', KEYS[1], 'status', 'STARTED', 'updated_ms', ARGV[4])
return {'OK'}
