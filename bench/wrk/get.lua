-- wrk script: GET a path, with a random device number filled in.
--   wrk -s bench/wrk/get.lua URL -- TOKEN PATH_FORMAT COUNT
-- PATH_FORMAT is a Lua format string with one %d (or %05d ...) for a device
-- number drawn uniformly from 1..COUNT, e.g.
-- "/v1/analytics/performance/V-%05d?from=...&to=...". TOKEN "-" sends none.

-- setup() and done() (the BENCH_JSON line), next to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

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
