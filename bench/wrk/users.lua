-- Replays the requests bench/workload.py wrote, in turn, from the first again after the last:
--   wrk -s bench/wrk/users.lua URL -- REQUESTS_FILE
-- Each line of the file: "METHOD PATH TOKEN [JSON BODY]". done() prints one line:
-- "BENCH_JSON {...}" (requests, latency percentiles, answers by status class, socket errors).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^(%S+) (%S+) (%S+) ?(.*)$")
    local headers = { ["Authorization"] = "Bearer " .. token }
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
  counter = 0
  s2, s3, s4, s5 = 0, 0, 0, 0
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  if status < 300 and status >= 200 then
    s2 = s2 + 1
  elseif status < 400 then
    s3 = s3 + 1
  elseif status < 500 then
    s4 = s4 + 1
  else
    s5 = s5 + 1
  end
end

function done(summary, latency, requests)
  local c2, c3, c4, c5 = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    c2 = c2 + thread:get("s2")
    c3 = c3 + thread:get("s3")
    c4 = c4 + thread:get("s4")
    c5 = c5 + thread:get("s5")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.6f,' ..
    '"latency_ms":{"p50":%.3f,"p99":%.3f},' ..
    '"status":{"2xx":%d,"3xx":%d,"4xx":%d,"5xx":%d},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    c2, c3, c4, c5,
    e.connect, e.read, e.write, e.timeout))
end
