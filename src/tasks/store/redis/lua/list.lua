-- One page of an owner's tasks, newest first: walks the owner's task index down from a
-- position, reads each record's state, skips what the filters exclude and drops index members
-- whose record is gone (expired). Reads at most ARGV[6] members, so a page costs a bounded
-- amount however many tasks the filters skip; the walk then returns where it stopped.
-- KEYS[1] the owner's task index (score 0, members `<13-digit created ms>.<task id>`)
-- ARGV[1] record key prefix, ARGV[2] start below this member ('' = from the newest),
-- ARGV[3] page size, ARGV[4] status ('' = any), ARGV[5] service ('' = any), ARGV[6] most
-- members read
-- Returns {next member ('' = no further match), then per task: member, service, status,
-- updated_ms}

local limit = tonumber(ARGV[3])
local budget = tonumber(ARGV[6])
local max = '+'
if ARGV[2] ~= '' then
  max = '(' .. ARGV[2]
end
local out = {''}
local found = 0
local read = 0
while read < budget do
  local batch = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, math.min(64, budget - read))
  if #batch == 0 then
    return out
  end
  for _, member in ipairs(batch) do
    read = read + 1
    local record = redis.call('HMGET', ARGV[1] .. string.sub(member, 15), 'status', 'service', 'updated_ms')
    if not record[1] then
      redis.call('ZREM', KEYS[1], member)
    elseif ARGV[4] == '' or ARGV[4] == record[1] then
      local service = record[2] or ''
      if ARGV[5] == '' or ARGV[5] == service then
        if found == limit then
          out[1] = out[#out - 3]
          return out
        end
        found = found + 1
        out[#out + 1] = member
        out[#out + 1] = service
        out[#out + 1] = record[1]
        out[#out + 1] = record[3] or '0'
      end
    end
    max = '(' .. member
  end
end
-- The read budget is spent: the next page goes on below the last member read.
out[1] = string.sub(max, 2)
return out
