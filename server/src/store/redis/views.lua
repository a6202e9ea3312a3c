-- One post's views as /v1/views reads them: its all-time total and this
-- edge's last step in the ledger of each day asked about, in one atomic
-- call, so the total and the record of which of this edge's deltas it
-- holds are one cut (a step of apply.lua adds to the total and writes the
-- (post, day)'s ledger together).
--
-- KEYS[1] the post's views counter, KEYS[2], KEYS[3], ...: the ledger hashes
-- of the days on which this edge has pending counts of the post (all in the
-- post's hash slot).
-- ARGV[1] ledger field of this edge ("s:<edge_id>")
--
-- Returns {the total or nil, {each day's "<seq>:<chunk>" of this edge, or
-- false, in key order}}. Reads only.

local steps = {}
for i = 2, #KEYS do
  steps[#steps + 1] = redis.call('HGET', KEYS[i], ARGV[1])
end
return {redis.call('GET', KEYS[1]), steps}
