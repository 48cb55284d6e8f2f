-- wrk script: POST /v1/reserve with four requirements and a fresh, valid ULID per request
-- (26 Crockford base32 characters, the first 0-7). The keys are those of
-- benches/http/limits.json, large enough never to deny.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
local first = "01234567"

-- Seed per thread so threads do not repeat each other's ids.
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

local body_prefix = '{"lease_id":"'
local body_suffix = '","requirements":['
  .. '{"key":"bench:http:rpm","amount":1},'
  .. '{"key":"bench:http:tpm","amount":600},'
  .. '{"key":"bench:http:concurrency","amount":1},'
  .. '{"key":"bench:http:tenant_tokens","amount":600}]}'

function request()
  return wrk.format(nil, "/v1/reserve", nil, body_prefix .. ulid() .. body_suffix)
end

-- Count answers other than 200: a denial or an error would make the comparison meaningless.
local non200 = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("non_2xx_or_errors: %d\n",
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
