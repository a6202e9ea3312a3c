-- The browser shape for wrk: each request is one batch of MIN..MAX events
-- (uniform), with batch and event ids unique across the run, threads and
-- connections, and the events accepted counted from each answer's
-- "accepted" field. Arguments after `--`: RUN ADS VISITORS MIN MAX.
-- `glimpse-bench` passes a thread number to each thread as `thread_no`.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  run = args[1]
  ads = tonumber(args[2])
  visitors = tonumber(args[3])
  min_events = tonumber(args[4])
  max_events = tonumber(args[5])
  seq = 0
  accepted = 0
  refused = 0
  math.randomseed(os.time() * 1000 + thread_no)
end

local headers = { ["Content-Type"] = "text/plain;charset=UTF-8" }

function request()
  seq = seq + 1
  local ts = string.format("%d", os.time() * 1000)
  local events = {}
  for i = 1, math.random(min_events, max_events) do
    local kind = math.random() < 0.8 and "viewable" or "measurable"
    events[i] = string.format(
      '{"id":"e%s-%d-%d-%d","ad_id":"ad-%04d","user_id":"v%031d","kind":"%s","ts":%s}',
      run, thread_no, seq, i, math.random(0, ads - 1), math.random(0, visitors - 1), kind, ts)
  end
  local body = string.format('{"batch_id":"w%s-%d-%d","events":[%s]}',
    run, thread_no, seq, table.concat(events, ","))
  return wrk.format("POST", "/v1/impressions", headers, body)
end

function response(status, _, body)
  if status == 202 then
    accepted = accepted + (tonumber(string.match(body, '"accepted":(%d+)')) or 0)
  else
    refused = refused + 1
  end
end

function done()
  local a, r = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    r = r + t:get("refused")
  end
  io.write(string.format("glimpse-wrk: accepted_events=%d refused=%d\n", a, r))
end
