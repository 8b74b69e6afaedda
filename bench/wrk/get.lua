-- wrk script: GET a path, with a random device number filled in.
--   wrk -s bench/wrk/get.lua URL -- TOKEN PATH_FORMAT COUNT
-- PATH_FORMAT is a Lua format string with one %d (or %05d ...) for a device
-- number drawn uniformly from 1..COUNT, e.g.
-- "/v1/analytics/performance/V-%05d?from=...&to=...". TOKEN "-" sends none.
-- done() prints one line "BENCH_JSON {...}" with counts and latency percentiles.

local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  token, path_format, count = args[1], args[2], tonumber(args[3] or "1")
  math.randomseed(os.time() * 16 + tid)
  if token ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  return wrk.format("GET", string.format(path_format, math.random(1, count)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
