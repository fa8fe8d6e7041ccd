-- Extends a lease: resets the entry's idle time (XCLAIM JUSTID, which keeps the delivery
-- count), but only if the caller still holds the entry.
-- KEYS[1] work stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] worker
-- Returns {'OK'} | {'LEASE_LOST'}

if lease_holder(KEYS[1], ARGV[1], ARGV[2]) ~= ARGV[3] then
  return {'LEASE_LOST'}
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return {'OK'}
