-- wrk script: two-phase purchases. Each connection-slot alternates: create a
-- hold, then capture it. A "flow" is one hold plus its capture; Requests/sec
-- counts both requests. Non-200 answers are counted.
local auth = "Bearer " .. (os.getenv("API_KEY") or "")
local users = tonumber(os.getenv("USERS") or "100000")
local threads = {}
local pending = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  failures = 0
  captures = 0
end

function request()
  local hold = table.remove(pending)
  if hold then
    return wrk.format("POST", "/api/credits/holds/" .. hold .. "/capture", { ["Authorization"] = auth })
  end
  local user = "bench-" .. math.random(1, users)
  local body = '{"userId":"' .. user .. '","packageId":"starter","ttlSeconds":600}'
  return wrk.format("POST", "/api/credits/holds", { ["Content-Type"] = "application/json", ["Authorization"] = auth }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
    return
  end
  if string.find(body, '"state":"open"', 1, true) then
    table.insert(pending, string.match(body, '"holdId":"([^"]+)"'))
  elseif string.find(body, '"state":"captured"', 1, true) then
    captures = captures + 1
  end
end

function done(summary, latency, requests)
  local failed, captured = 0, 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
    captured = captured + thread:get("captures")
  end
  io.write(string.format("captures: %d (%.0f flows/s)\nnon-200 answers: %d\n",
    captured, captured / (summary.duration / 1e6), failed))
end
