-- One sync step of one (ad, day) and its UTC hours: write sketches, add
-- exact counters, once.
--
-- KEYS[1] the day's visitors HLL, KEYS[2] counters hash (the day's fields
-- and each hour's, "<HH>:<field>"), KEYS[3] ledger hash, KEYS[4] scratch
-- key, KEYS[5] .. KEYS[4 + H] the visitors HLL of each hour that gains
-- visitors, and for a (post, day) KEYS[5 + H], the post's all-time views (a
-- string counter, never expiring), which gains the day's `imp` (all in one
-- hash slot).
-- ARGV[1] ledger field of this edge ("s:<edge_id>")
-- ARGV[2] step sequence (decimal, < 2^53)   ARGV[3] chunk number (0)
-- ARGV[4] the day's sketch bytes in Redis's HLL format, or "" for none
-- ARGV[5] what the edge expects the day's sketch to hold (see `write`)
-- ARGV[6] expiry of the day's counters and sketch, unix ms
-- ARGV[7] ledger time to live, ms
-- ARGV[8] expiry of the hours' sketches, unix ms (--hourly-retention-days)
-- ARGV[9] H, the number of hour sketches
-- ARGV[10] .. ARGV[9 + 2H]: each hour's sketch bytes and expectation, in
-- the order of their keys
-- ARGV[10 + 2H], ...: pairs of a counters-hash field and the count to add to
-- it, each above zero (the day's "imp", "meas", "invalid", "verified", the
-- video counters "vs", "v25", "v50", "v75", "vc", "aud", and the same names
-- after "<HH>:" for an hour; the edge has already left out the batches it
-- does not own, see the batch claims in docs/redis.md)
--
-- Returns {0} when this step had landed before, else {1, then for the
-- day's sketch (when sent) and each hour's, in order, what `write` answers}.
--
-- Redis runs a script alone but does not roll back on error, so every check
-- comes first and the ledger (the record that the step happened) is written
-- last: a step that fails part way is simply run again.

local hours = tonumber(ARGV[9])
local post_views = KEYS[5 + hours]

-- A key of another type (written by hand) must stop the step before it
-- counts anything. The ledger's first use, the HGET below, refuses a key
-- that is not a hash before anything is written. The sketches and the
-- counters need no check of their own: GET refuses a key that is not a
-- string and PFMERGE one that is not an HLL before writing (see `write`),
-- and the first HINCRBY refuses a hash of another type after only sketches
-- (whose writes are idempotent) were written. The post's total, written
-- between counters, is checked first: a failure there would leave counts
-- without the record that they landed.
if post_views then
  local t = redis.call('TYPE', post_views)['ok']
  if t ~= 'none' and t ~= 'string' then
    return redis.error_reply('GLIMPSE_WRONGTYPE a key of ' .. KEYS[1] .. ' holds another type')
  end
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

-- The sketches. Each write leaves the key holding at least the union of
-- what it held and the bytes sent, so writing the same bytes again changes
-- nothing: they go first. The expectation says how:
--   a SHA1 (hex): the digest of the value this edge wrote last, and the
--     bytes are that value merged with the step's sketch. If the key still
--     holds it (no one else wrote since), the bytes replace it with one
--     SET: no PFMERGE, whose register-by-register rewrite costs Redis ten
--     times more.
--   "": the edge does not know the value; the bytes are the step's sketch.
--   "*": another writer is busy on this key; the bytes are the step's
--     sketch, merged without a look at the value.
-- A missing key is SET whatever the expectation but "*". Answers true when
-- the key now holds the bytes sent; after a PFMERGE, the value now held so
-- that the edge knows it next time, or false for "*".
-- GET refuses a key that is not a string before anything is written, and
-- PFMERGE one that is not an HLL; SET only ever replaces a missing key or
-- the very value this edge wrote.
local scratch_used = false
local function write(key, bytes, expect, expiry)
  if expect ~= '*' then
    local held = redis.call('GET', key)
    if not held or (expect ~= '' and redis.sha1hex(held) == expect) then
      redis.call('SET', key, bytes, 'PXAT', expiry)
      return true
    end
  end
  redis.call('SET', KEYS[4], bytes, 'PX', 60000)
  scratch_used = true
  redis.call('PFMERGE', key, KEYS[4])
  redis.call('PEXPIREAT', key, expiry)
  if expect == '*' then
    return false
  end
  return redis.call('GET', key)
end
local answers = {1}
if ARGV[4] ~= '' then
  answers[#answers + 1] = write(KEYS[1], ARGV[4], ARGV[5], ARGV[6])
end
for i = 1, hours do
  answers[#answers + 1] = write(KEYS[4 + i], ARGV[8 + 2 * i], ARGV[9 + 2 * i], ARGV[8])
end
if scratch_used then
  redis.call('DEL', KEYS[4])
end

-- The counters hash gets its expiry when a field is new (the count after
-- the HINCRBY is the count added), which it is whenever the hash is: a
-- hash this script made always has its expiry, and the step of a busy day
-- sends one command less.
local new_field = false
for i = 10 + 2 * hours, #ARGV - 1, 2 do
  local n = tonumber(ARGV[i + 1])
  if redis.call('HINCRBY', KEYS[2], ARGV[i], n) == n then
    new_field = true
  end
  if post_views and ARGV[i] == 'imp' then
    redis.call('INCRBY', post_views, n)
  end
end
if new_field then
  redis.call('PEXPIREAT', KEYS[2], ARGV[6])
end

-- The step record last.
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
return answers
