-- Takes over one delivery whose holder has not heartbeated for the lease (min idle). The
-- candidates come from the store's periodic XPENDING sweep; XCLAIM's min-idle check makes a
-- stale candidate (heartbeated, finished or taken by another instance since) a no-op.
-- KEYS[1] work stream
-- ARGV[1] group, ARGV[2] claiming worker, ARGV[3] lease (min idle) ms, ARGV[4] entry id
-- Returns {entry id, task id, deliveries} | false when it is not reclaimable (any more)

local res = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
local e = res[1]
if not e or type(e) ~= 'table' then
  return false
end
local fields = e[2]
local task = nil
if type(fields) == 'table' then
  for i = 1, #fields, 2 do
    if fields[i] == 'task' then
      task = fields[i + 1]
    end
  end
end
if not task then
  -- An entry without a task id can never run: drop it rather than reclaim it forever.
  redis.call('XACK', KEYS[1], ARGV[1], e[1])
  redis.call('XDEL', KEYS[1], e[1])
  return false
end
local _, deliveries = lease_holder(KEYS[1], ARGV[1], e[1])
return {e[1], task, deliveries}
