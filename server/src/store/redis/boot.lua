-- Records that an edge opened the store, and refuses a start that comes
-- from a restored copy of its data directory.
--
-- KEYS[1] the edge's boot key (`<prefix>boot:<edge_id>`)
-- ARGV[1] this start's boot number (decimal)   ARGV[2] this run's nonce
--
-- The key holds `<boot>:<nonce>` of the highest start seen. A start whose
-- boot is above it is new: it is recorded. The same boot and nonce is this
-- very run asking again (a reply lost): fine. Anything else means the edge's
-- boot counter went back, so its delta sequence numbers would repeat those
-- the ledgers and claims already hold.
--
-- Returns {1} when the start is recorded, {0, held boot} when refused.

local held = redis.call('GET', KEYS[1])
local boot = tonumber(ARGV[1])
if held then
  local b, nonce = string.match(held, '^(%d+):(.*)$')
  b = tonumber(b)
  if b == nil then
    return redis.error_reply('GLIMPSE_WRONGTYPE ' .. KEYS[1] .. ' holds no boot record')
  end
  if b == boot and nonce == ARGV[2] then
    return {1}
  end
  if b >= boot then
    return {0, b}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
return {1}
