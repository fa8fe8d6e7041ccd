-- Queues a new task: writes its Pending record and its input with the task TTL and appends it
-- to the work stream, in one step (a crash never leaves a record without queued work).
-- KEYS[1] record hash, KEYS[2] input key, KEYS[3] work stream
-- ARGV[1] group, ARGV[2] task id, ARGV[3] record JSON (submit-time), ARGV[4] now ms,
-- ARGV[5] input JSON, ARGV[6] TTL ms
-- Returns {'OK', entry id} | {'ILLEGAL', current status} when the id already exists

local current = redis.call('HGET', KEYS[1], 'status')
if current then
  return {'ILLEGAL', current}
end
ensure_group(KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[3], 'status', 'PENDING', 'updated_ms', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
local entry = redis.call('XADD', KEYS[3], '*', 'task', ARGV[2])
return {'OK', entry}
