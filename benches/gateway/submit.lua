-- wrk script: POST the kyc_passport multipart upload (selfie + passport page) on every request.
-- Environment: BENCH_SELFIE, BENCH_PASSPORT (image files), BENCH_PATH (request path),
-- BENCH_KEY (API key), BENCH_MAX (each wrk thread stops after this many responses; 0 = none),
-- BENCH_HIST (a file: when the run ends, wrk's whole latency histogram is written there, one
-- "<microseconds> <count>" line per value seen; bench.py loads it into an HdrHistogram).
local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local boundary = "kycgate-bench-7d1e0c"
local function part(name, filename, data)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\"; filename=\""
    .. filename .. "\"\r\nContent-Type: image/jpeg\r\n\r\n" .. data .. "\r\n"
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/api/v3/services/kyc_passport/"
wrk.body = part("selfie_image", "selfie.jpg", read(os.getenv("BENCH_SELFIE")))
  .. part("passport_image", "passport.jpg", read(os.getenv("BENCH_PASSPORT")))
  .. "--" .. boundary .. "--\r\n"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "benchkey")

local max = tonumber(os.getenv("BENCH_MAX") or "0")
local seen = 0
if max > 0 then
  function response(status, headers, body)
    seen = seen + 1
    if seen >= max then
      wrk.thread:stop()
    end
  end
end

local hist = os.getenv("BENCH_HIST") or ""
if hist ~= "" then
  function done(summary, latency, requests)
    local f = assert(io.open(hist, "w"))
    for i = 1, #latency do
      local value, count = latency(i)
      f:write(string.format("%d %d\n", value, count))
    end
    f:close()
  end
end
