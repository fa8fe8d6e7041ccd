-- Takes over the oldest delivery whose holder has not heartbeated for the lease (min idle).
-- Also (re)creates the consumer group, so claiming works again after Redis lost its data.
-- KEYS[1] work stream
-- ARGV[1] group, ARGV[2] claiming worker, ARGV[3] lease (min idle) ms
-- Returns {entry id, task id, deliveries} | false when nothing is reclaimable

ensure_group(KEYS[1], ARGV[1])
local cursor = '0-0'
repeat
  local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
  cursor = res[1]
  for _, e in ipairs(res[2]) do
    local fields = e[2]
    local task = nil
    if type(fields) == 'table' then
      for i = 1, #fields, 2 do
        if fields[i] == 'task' then
          task = fields[i + 1]
        end
      end
    end
    if task then
      local _, deliveries = lease_holder(KEYS[1], ARGV[1], e[1])
      return {e[1], task, deliveries}
    end
    -- An entry without a task id can never run: drop it rather than reclaim it forever.
    redis.call('XACK', KEYS[1], ARGV[1], e[1])
    redis.call('XDEL', KEYS[1], e[1])
  end
until cursor == '0-0'
return false
