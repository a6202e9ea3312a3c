-- Claims a sync's batches of one shard: each batch id gets this delta's
-- claim unless a claim is found for it already, in one atomic call of a few
-- commands whatever the number of ids.
--
-- KEYS[1..n] the shard's claim hashes of the windows that can hold a claim
-- on these ids (from 49 h before the oldest was accepted: plan.rs,
-- `ClaimWindows::to_check`), newest first (one hash slot); new claims go
-- into KEYS[1].
-- ARGV[1] this delta's claim ("<edge_id>:<seq>")
-- ARGV[2] KEYS[1]'s expiry (epoch ms)
-- ARGV[3..] the batch ids (distinct)
--
-- Returns the ids claimed by another edge or delta: this delta does not
-- count them. An id whose claim is this delta's own (an earlier attempt of
-- the same sync) is counted, as a new one is.

local ours = ARGV[1]
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = ARGV[i]
end

local found = {}
for k = 1, #KEYS do
  local claims = redis.call('HMGET', KEYS[k], unpack(ids))
  for i = 1, #ids do
    if not found[i] and claims[i] then
      found[i] = claims[i]
    end
  end
end

local new, taken = {}, {}
for i = 1, #ids do
  if not found[i] then
    new[#new + 1] = ids[i]
    new[#new + 1] = ours
  elseif found[i] ~= ours then
    taken[#taken + 1] = ids[i]
  end
end
if #new > 0 then
  redis.call('HSET', KEYS[1], unpack(new))
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return taken
