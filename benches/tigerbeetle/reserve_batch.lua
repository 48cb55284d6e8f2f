-- wrk script: POST /v1/reserve/batch with BATCH (default 32) reserves of four requirements
-- each and a fresh, valid ULID per reserve. The keys are those of benches/http/limits.json,
-- large enough never to deny; an answer other than 200, or any reserve not allowed, counts
-- as an error (the run is then meaningless and the script fails it).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local batch = tonumber(os.getenv("BATCH") or "32")
local alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
local first = "01234567"

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local chars = {}
local function ulid()
  local r = math.random(1, 8)
  chars[1] = first:sub(r, r)
  for i = 2, 26 do
    local c = math.random(1, 32)
    chars[i] = alphabet:sub(c, c)
  end
  return table.concat(chars)
end

local requirements = '","requirements":['
  .. '{"key":"bench:http:rpm","amount":1},'
  .. '{"key":"bench:http:tpm","amount":600},'
  .. '{"key":"bench:http:concurrency","amount":1},'
  .. '{"key":"bench:http:tenant_tokens","amount":600}]}'

function request()
  local items = {}
  for i = 1, batch do
    items[i] = '{"lease_id":"' .. ulid() .. requirements
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
