-- wrk script: POST /v1/reserve/batch with BATCH (default 32) reserves of four requirements
-- each and a fresh, valid ULID per reserve. The keys are those of benches/http/limits.json,
-- large enough never to deny; an answer other than 200, or any reserve not allowed, counts
-- as an error (the run is then meaningless and the script fails it).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local batch = tonumber(os.getenv("BATCH") or "32")

-- The body pieces and ULIDs, shared with benches/http/reserve.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local reserve_body = dofile(here .. "../http/reserve_body.lua")

function init(args)
  reserve_body.seed()
end

function request()
  local items = {}
  for i = 1, batch do
    items[i] = reserve_body.prefix .. reserve_body.ulid() .. reserve_body.suffix
  end
  return wrk.format(nil, "/v1/reserve/batch", nil,
    '{"requests":[' .. table.concat(items, ",") .. ']}')
end

-- Per thread (a global, so done() can read it through the thread objects).
bad = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 or body:find('"allowed":false', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local denied = 0
  for _, thread in ipairs(threads) do
    denied = denied + (thread:get("bad") or 0)
  end
  io.write(string.format("non_2xx_or_errors: %d\n", denied
    + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
