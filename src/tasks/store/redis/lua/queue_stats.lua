-- Queue depth: entries not yet delivered to any worker, and the oldest one's id.
-- Acknowledged entries are always deleted, so undelivered = stream length - pending entries.
-- KEYS[1] work stream
-- ARGV[1] group
-- Returns {undelivered count, oldest undelivered entry id or '', server time ms}

local len = redis.call('XLEN', KEYS[1])
local delivered = 0
local last = '0-0'
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do
      info[g[i]] = g[i + 1]
    end
    if info['name'] == ARGV[1] then
      delivered = tonumber(info['pending'])
      last = info['last-delivered-id']
    end
  end
end
local oldest = ''
local first = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
if #first > 0 then
  oldest = first[1][1]
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {len - delivered, oldest, now_ms}
