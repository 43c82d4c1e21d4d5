-- Shared by every bench script (python -m bench --compare prepends it to the scenario's own part).
-- The request comes from the environment: BENCH_METHOD, BENCH_PATH, BENCH_BODY, BENCH_HEADERS
-- ("Name: value" lines); "{token}" in the body or a header is replaced by a token from
-- BENCH_TOKENS (one a line; wrk thread i of BENCH_THREADS takes lines i, i + n, ...).
-- done() writes the run's figures as JSON to BENCH_OUT.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

method = os.getenv("BENCH_METHOD") or "GET"
path = os.getenv("BENCH_PATH") or "/"
body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
headers = {}
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end
expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
failures = 0
first_failure = ""
queue = {}

-- The thread's share of the tokens, in file order.
function load_tokens()
  local file = os.getenv("BENCH_TOKENS")
  if not file or file == "" then return end
  local n, index = tonumber(os.getenv("BENCH_THREADS")), 0
  for line in io.lines(file) do
    if index % n == id then table.insert(queue, line) end
    index = index + 1
  end
end

local function plain(text)
  return (string.gsub(text, "%%", "%%%%"))
end

-- The scenario's request with `token` in place of {token}.
function with_token(token)
  local filled = {}
  for name, value in pairs(headers) do filled[name] = string.gsub(value, "{token}", plain(token)) end
  local filled_body = body and string.gsub(body, "{token}", plain(token)) or nil
  return wrk.format(method, path, filled, filled_body)
end

function fail(status, text)
  failures = failures + 1
  if first_failure == "" then first_failure = tostring(status) .. ": " .. string.sub(text or "", 1, 200) end
end

-- A request nothing answers with 2xx: sent when a thread ran out of tokens, so it counts as an error.
function exhausted()
  fail(0, "out of tokens")
  return wrk.format("GET", "/__bench_out_of_tokens__")
end

local function quote(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local extra, first = 0, ""
  for _, thread in ipairs(threads) do
    extra = extra + (thread:get("failures") or 0)
    if first == "" then first = thread:get("first_failure") or "" end
  end
  local completed = 0
  for _, thread in ipairs(threads) do completed = completed + (thread:get("completed") or 0) end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"script_failures": %d, "completed": %d, "first_failure": %s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, extra, completed, quote(first)))
  out:close()
end
