-- One (ad, day) as stats read it: the day's sketch, its counters and this
-- edge's last step in the day's ledger, and when asked its hours, in one
-- atomic call, so the counts and the record of which of this edge's deltas
-- they hold are one cut (a step of apply.lua adds the counts and writes the
-- ledger together).
--
-- KEYS[1] visitors HLL, KEYS[2] counters hash, KEYS[3] ledger hash, and for
-- a read with hours KEYS[4] .. KEYS[27], the visitors HLL of hours 00 to 23
-- (all in one hash slot).
-- ARGV[1] ledger field of this edge ("s:<edge_id>")
-- ARGV[2], ARGV[3], ...: the counters-hash fields of the day to read
--
-- Returns {sketch bytes or nil, {each field's count or nil, in argument
-- order}, the ledger's "<seq>:<chunk>" of this edge or nil, then for a read
-- with hours the whole counters hash as HGETALL answers it (the hours'
-- fields are "<HH>:<field>") and the 24 hours' sketches (nil for an hour
-- without), for a read without them two empty arrays}. Reads only.

local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local reply = {
  redis.call('GET', KEYS[1]),
  redis.call('HMGET', KEYS[2], unpack(fields)),
  redis.call('HGET', KEYS[3], ARGV[1]),
  {},
  {},
}
if #KEYS > 3 then
  local hours = {}
  for i = 4, #KEYS do
    hours[#hours + 1] = KEYS[i]
  end
  reply[4] = redis.call('HGETALL', KEYS[2])
  reply[5] = redis.call('MGET', unpack(hours))
end
return reply
