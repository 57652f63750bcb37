-- wrk script: spends of 1 credit by users bench-1..USERS (fund them first
-- with purchase.lua and the same USERS), each with a unique idempotency key.
local users = tonumber(os.getenv("USERS") or "1000")
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
  local body = '{"userId":"' .. user .. '","credits":1,"reason":"bench"}'
  return wrk.format("POST", "/api/credits/spend",
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
