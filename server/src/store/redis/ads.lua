-- A day's ad index: a sorted set whose members all score 0, so that
-- ZRANGEBYLEX reads the ids under a key's prefix without the rest of the
-- day's ads. Earlier versions kept the index as a plain set, which can only
-- be read whole; a set found beside the index (an edge of the old version
-- still writes one during a rolling upgrade) is folded into the index first,
-- in the same atomic call, so no id is ever missing from either.
--
-- KEYS[1] the index (sorted set), KEYS[2] the old-layout set; one hash slot.
-- ARGV[1] "add":  ARGV[2] the index's expiry (epoch ms), ARGV[3..] ad ids.
--                 Returns 0.
-- ARGV[1] "list": ARGV[2..] pairs of ZRANGEBYLEX bounds (min, max).
--                 Returns the ids inside each pair, pair after pair.

local index, old = KEYS[1], KEYS[2]

-- ZADD with at most this many members per call: unpack() has a limit.
local CHUNK = 1000

local function zadd_all(members)
  for first = 1, #members, CHUNK do
    local args = {}
    for i = first, math.min(first + CHUNK - 1, #members) do
      args[#args + 1] = 0
      args[#args + 1] = members[i]
    end
    redis.call('ZADD', index, unpack(args))
  end
end

if redis.call('EXISTS', old) == 1 then
  local ttl = redis.call('PTTL', old)
  zadd_all(redis.call('SMEMBERS', old))
  redis.call('DEL', old)
  -- The old set had the day's expiry: the index keeps it unless it has one.
  if ttl > 0 and redis.call('PTTL', index) == -1 then
    redis.call('PEXPIRE', index, ttl)
  end
end

if ARGV[1] == 'add' then
  local ids = {}
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
  zadd_all(ids)
  redis.call('PEXPIREAT', index, ARGV[2])
  return 0
end

local found = {}
for i = 2, #ARGV, 2 do
  for _, id in ipairs(redis.call('ZRANGEBYLEX', index, ARGV[i], ARGV[i + 1])) do
    found[#found + 1] = id
  end
end
return found
