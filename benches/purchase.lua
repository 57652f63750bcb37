-- wrk script: durable purchases with unique idempotency keys, users drawn
-- uniformly from USERS (default 100000). Non-200 answers are counted.
local users = tonumber(os.getenv("USERS") or "100000")
local nonce = os.getenv("NONCE") or tostring(os.time())
local auth = "Bearer " .. (os.getenv("API_KEY") or "")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  failures = 0
end

function request()
  counter = counter + 1
  local user = "bench-" .. math.random(1, users)
  local key = nonce .. "-" .. id .. "-" .. counter
  local body = '{"userId":"' .. user .. '","packageId":"starter"}'
  return wrk.format("POST", "/api/credits/purchase",
    { ["Content-Type"] = "application/json", ["Idempotency-Key"] = key, ["Authorization"] = auth }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  io.write(string.format("non-200 answers: %d\n", failed))
end
