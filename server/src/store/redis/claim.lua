-- Claims a group of batches for one delta: the batch claims of a sync, one
-- call per group instead of one command per batch.
--
-- KEYS: the claim keys, `<prefix>batch:{b:<NN>}:<batch_id>` (on a cluster,
-- all of one slot: the edge groups them by shard).
-- ARGV[1] this delta's claim value, `<edge_id>:<seq>`
-- ARGV[2] the claims' time to live, ms
--
-- Returns, per key in order, the value the key held before (`false`, which
-- Redis answers as nil, when it was free and is now ours). The edge decides
-- ownership from it (`plan::owns_claim`: free, or holding our own value from
-- an earlier attempt of this sync), exactly as from `SET ... NX GET`.
--
-- Each SET is atomic and a retry sends the same value, so a script stopped
-- part way (a key of another type answers WRONGTYPE) leaves only claims that
-- the retry finds as its own.
local previous = {}
for i, key in ipairs(KEYS) do
  previous[i] = redis.call('SET', key, ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
end
return previous
