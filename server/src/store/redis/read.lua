-- One (ad, day) as stats read it: the day's sketch, its counters and this
-- edge's last step in the day's ledger, in one atomic call, so the counts
-- and the record of which of this edge's deltas they hold are one cut (a
-- step of apply.lua adds the counts and writes the ledger together).
--
-- KEYS[1] visitors HLL, KEYS[2] counters hash, KEYS[3] ledger hash (all in
-- one hash slot).
-- ARGV[1] ledger field of this edge ("s:<edge_id>")
-- ARGV[2], ARGV[3], ...: the counters-hash fields to read
--
-- Returns {sketch bytes or nil, {each field's count or nil, in argument
-- order}, the ledger's "<seq>:<chunk>" of this edge or nil}. Reads only.

local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return {
  redis.call('GET', KEYS[1]),
  redis.call('HMGET', KEYS[2], unpack(fields)),
  redis.call('HGET', KEYS[3], ARGV[1]),
}
