-- wrk script for nginx (and the direct baseline): the four exchanges of one kyc_passport task
-- in turn: the client's multipart upload, then the three vendor requests kycgate made
-- (recorded by capture.py into BENCH_REQ: <vendor>.method/.path/.headers/.body).
-- Environment: as submit.lua, plus BENCH_REQ and BENCH_PREFIX (prefix of the vendor paths).
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

local upload = part("selfie_image", "selfie.jpg", read(os.getenv("BENCH_SELFIE")))
  .. part("passport_image", "passport.jpg", read(os.getenv("BENCH_PASSPORT")))
  .. "--" .. boundary .. "--\r\n"

-- Built in init(): wrk fills in wrk.headers.Host (which wrk.format copies) only after the
-- script's top level has run.
local requests = {}
function init(args)
  table.insert(requests, wrk.format("POST", os.getenv("BENCH_PATH") or "/api/v3/services/kyc_passport/", {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["Authorization"] = "Bearer benchkey",
  }, upload))
  local dir = os.getenv("BENCH_REQ")
  local prefix = os.getenv("BENCH_PREFIX") or ""
  for _, vendor in ipairs({ "regula", "kbyai", "compreface" }) do
    local base = dir .. "/" .. vendor
    local headers = {}
    for line in read(base .. ".headers"):gmatch("[^\n]+") do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then headers[name] = value end
    end
    table.insert(requests, wrk.format(read(base .. ".method"), prefix .. read(base .. ".path"), headers, read(base .. ".body")))
  end
end

local i = 0
function request()
  i = i % #requests + 1
  return requests[i]
end
