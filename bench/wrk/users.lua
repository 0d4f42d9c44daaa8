-- One wrk run drives one endpoint of the users API; bench/loadgen.py mirrors this in Python.
--   wrk -s bench/wrk/users.lua URL -- MODE MIN_ID MAX_ID TAG TOKENS_FILE
-- MODE: get | list | patch | item | login | mixed (get, list, patch, item in turn). Ids are
-- drawn from MIN_ID..MAX_ID. TOKENS_FILE has one "USER_ID TOKEN" per line: each request is
-- signed in as one of them, picked at random (patch and item change that user's own data).
-- done() prints one line: "BENCH_JSON {...}".

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

local modes = { "get", "list", "patch", "item" }

function init(args)
  mode = args[1]
  min_id = tonumber(args[2])
  max_id = tonumber(args[3])
  tag = args[4]
  accounts = {}
  for line in io.lines(args[5]) do
    local id, token = line:match("(%d+) (%S+)")
    table.insert(accounts, { id = id, auth = "Bearer " .. token })
  end
  counter = 0
  s2, s3, s4, s5 = 0, 0, 0, 0
  math.randomseed(os.time() + 7919 * thread_no)
end

local function build(kind)
  local account = accounts[math.random(#accounts)]
  local headers = { ["Authorization"] = account.auth }
  if kind == "get" then
    return wrk.format("GET", "/users/" .. math.random(min_id, max_id), headers)
  elseif kind == "list" then
    return wrk.format("GET", "/users?limit=20", headers)
  elseif kind == "patch" then
    headers["Content-Type"] = "application/json"
    return wrk.format("PATCH", "/users/" .. account.id, headers,
      '{"name":"Renamed ' .. counter .. '"}')
  elseif kind == "item" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/users/" .. account.id .. "/items", headers,
      '{"title":"Bench ' .. tag .. " " .. counter .. '"}')
  else
    local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }
    return wrk.format("POST", "/auth/token", form, "username=seed-" ..
      math.random(min_id, max_id) .. "%40example.com&password=bench-password")
  end
end

function request()
  counter = counter + 1
  if mode == "mixed" then
    return build(modes[counter % 4 + 1])
  end
  return build(mode)
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
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f},' ..
    '"status":{"2xx":%d,"3xx":%d,"4xx":%d,"5xx":%d},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3,
    c2, c3, c4, c5,
    e.connect, e.read, e.write, e.timeout))
end
