-- One sync step of one (ad, day): merge a sketch, add exact counters, once.
--
-- KEYS[1] visitors HLL, KEYS[2] counters hash, KEYS[3] ledger hash,
-- KEYS[4] scratch key, and for a (post, day) KEYS[5], the post's all-time
-- views (a string counter, never expiring), which gains the step's `imp`
-- (all in one hash slot).
-- ARGV[1] ledger field of this edge ("s:<edge_id>")
-- ARGV[2] step sequence (decimal, < 2^53)   ARGV[3] chunk number (0)
-- ARGV[4] sketch bytes in Redis's HLL format, or "" for none
-- ARGV[5] expiry of the day's counters, unix ms
-- ARGV[6] ledger time to live, ms
-- ARGV[7] expiry of the sketch, unix ms (an hour's sketch goes before its
-- counters: --hourly-retention-days)
-- ARGV[8], ARGV[9], ...: pairs of a counters-hash field and the count to
-- add to it ("imp", "meas", "invalid", "verified", the video counters
-- "vs", "v25", "v50", "v75", "vc", "aud"; the edge has already left out the
-- batches it does not own, see the batch claims in docs/redis.md)
--
-- Returns {applied (0 = this step had landed before), then the count added
-- to each field, in argument order}.
--
-- Redis runs a script alone but does not roll back on error, so every check
-- comes first and the ledger (the record that the step happened) is written
-- last: a step that fails part way is simply run again.

-- A key of another type (written by hand) must stop the step before it
-- counts anything. The sketch and the counters need no check of their own:
-- PFMERGE refuses a destination that is not an HLL before writing, and the
-- first HINCRBY refuses a hash of another type after only the sketch (whose
-- merge is idempotent) was written. The ledger, written last, and the post's
-- total, written between counters, are checked first: a failure there
-- would leave counts without the record that they landed.
local function has_type(key, wanted)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == wanted
end
if not has_type(KEYS[3], 'hash') or (KEYS[5] and not has_type(KEYS[5], 'string')) then
  return redis.error_reply('GLIMPSE_WRONGTYPE a key of ' .. KEYS[1] .. ' holds another type')
end

local seq = tonumber(ARGV[2])
local chunk = tonumber(ARGV[3])
local last = redis.call('HGET', KEYS[3], ARGV[1])
if last then
  local s, c = string.match(last, '^(%d+):(%d+)$')
  s = tonumber(s)
  c = tonumber(c)
  if s > seq or (s == seq and c >= chunk) then
    return {0}
  end
end

-- The sketch: merging is idempotent, so it goes first.
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[4], ARGV[4], 'PX', 60000)
  redis.call('PFMERGE', KEYS[1], KEYS[4])
  redis.call('DEL', KEYS[4])
  redis.call('PEXPIREAT', KEYS[1], ARGV[7])
end

local reply = {1}
local counted = false
for i = 8, #ARGV - 1, 2 do
  local n = tonumber(ARGV[i + 1])
  if n > 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[i], n)
    counted = true
    if KEYS[5] and ARGV[i] == 'imp' then
      redis.call('INCRBY', KEYS[5], n)
    end
  end
  reply[#reply + 1] = n
end
if counted then
  redis.call('PEXPIREAT', KEYS[2], ARGV[5])
end

-- The step record last.
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return reply
