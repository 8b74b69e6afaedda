-- wrk script: POST /v1/ingest with readings that never repeat a (device, instant).
--   wrk -s bench/wrk/ingest.lua URL -- TOKEN PREFIX PER_REQUEST BASE_EPOCH [DEVICES]
-- PER_REQUEST 1 sends one reading as an object, more sends an array. Readings
-- alternate meter/vehicle; DEVICES (default 10000) ids of each kind per wrk
-- thread, all prefixed by PREFIX and the thread's number; the timestamp steps
-- one second each time every device of the thread has sent once, from BASE_EPOCH.

-- setup() and done() (the BENCH_JSON line), next to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  token, prefix = args[1], args[2]
  per = tonumber(args[3])
  base = tonumber(args[4])
  devices = tonumber(args[5] or "10000")
  position = 0
  cached_step, cached_ts = -1, nil
  math.randomseed(base * 16 + tid)
  wrk.method = "POST"
  wrk.path = "/v1/ingest"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
  ids = prefix .. "T" .. tid
end

local function timestamp(step)
  if step ~= cached_step then
    cached_step = step
    cached_ts = os.date("!%Y-%m-%dT%H:%M:%SZ", base + step)
  end
  return cached_ts
end

local function reading(p)
  local device = math.floor(p / 2) % devices
  local ts = timestamp(math.floor(p / (2 * devices)))
  if p % 2 == 0 then
    return string.format('{"meterId":"%sM%d","kwhConsumedAc":%.4f,"voltage":%.1f,"timestamp":"%s"}',
      ids, device, math.random() * 0.2, 225 + math.random() * 10, ts)
  end
  return string.format(
    '{"vehicleId":"%sV%d","soc":%.2f,"kwhDeliveredDc":%.4f,"batteryTemp":%.2f,"timestamp":"%s"}',
    ids, device, math.random() * 100, math.random() * 0.18, 20 + math.random() * 15, ts)
end

function request()
  local body
  if per == 1 then
    body = reading(position)
    position = position + 1
  else
    local parts = {}
    for i = 1, per do
      parts[i] = reading(position)
      position = position + 1
    end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end
