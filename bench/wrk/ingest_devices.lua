-- wrk script: single-reading POST /v1/ingest, each with the token of the device it is from.
--   wrk -s bench/wrk/ingest_devices.lua URL -- TOKENS_FILE BASE_EPOCH THREADS
-- TOKENS_FILE (from bench/scenarios/device_tokens.py): one device a line, "meter|vehicle ID TOKEN".
-- wrk thread t takes the devices on lines t, t + THREADS, ... (THREADS: wrk's -t), and
-- sends each of them in turn, so no (device, instant) repeats; the timestamp steps one
-- second each time all of the thread's devices have sent once, from BASE_EPOCH.
-- Each reading is the same shape as ingest.lua's: only the token and ids differ, so the
-- two scripts' figures compare the cost of checking a device token with a fleet one.

-- setup() and done() (the BENCH_JSON line), next to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  local path = args[1]
  base = tonumber(args[2])
  local threads = tonumber(args[3])
  devices = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % threads == tid then
      local kind, id, token = line:match("^(%a+) (%S+) (%S+)$")
      devices[#devices + 1] = {
        meter = kind == "meter", id = id,
        headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
      }
    end
    line_no = line_no + 1
  end
  if #devices == 0 then
    error("no devices for wrk thread " .. tid .. " in " .. path)
  end
  position = 0
  cached_step, cached_ts = -1, nil
  math.randomseed(base * 16 + tid)
end

local function timestamp(step)
  if step ~= cached_step then
    cached_step = step
    cached_ts = os.date("!%Y-%m-%dT%H:%M:%SZ", base + step)
  end
  return cached_ts
end

function request()
  local device = devices[position % #devices + 1]
  local ts = timestamp(math.floor(position / #devices))
  position = position + 1
  local body
  if device.meter then
    body = string.format('{"meterId":"%s","kwhConsumedAc":%.4f,"voltage":%.1f,"timestamp":"%s"}',
      device.id, math.random() * 0.2, 225 + math.random() * 10, ts)
  else
    body = string.format(
      '{"vehicleId":"%s","soc":%.2f,"kwhDeliveredDc":%.4f,"batteryTemp":%.2f,"timestamp":"%s"}',
      device.id, math.random() * 100, math.random() * 0.18, 20 + math.random() * 15, ts)
  end
  return wrk.format("POST", "/v1/ingest", device.headers, body)
end
