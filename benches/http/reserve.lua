-- wrk script: POST /v1/reserve with four requirements and a fresh, valid ULID per request
-- (26 Crockford base32 characters, the first 0-7). The keys are those of
-- benches/http/limits.json, large enough never to deny.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- The body pieces and ULIDs, shared with benches/tigerbeetle/reserve_batch.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local reserve_body = dofile(here .. "reserve_body.lua")

function init(args)
  reserve_body.seed()
end

function request()
  return wrk.format(nil, "/v1/reserve", nil, reserve_body.prefix .. reserve_body.ulid() .. reserve_body.suffix)
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
