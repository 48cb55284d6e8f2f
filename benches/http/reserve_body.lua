-- Shared by the wrk scripts (loaded with dofile): the body pieces of a reserve of the four
-- keys of benches/http/limits.json (large enough never to deny) and a fresh, valid ULID per
-- reserve (26 Crockford base32 characters, the first 0-7).
local M = {}

local alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
local first = "01234567"
local chars = {}

-- Seeds per thread, so threads do not repeat each other's ids.
function M.seed()
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function M.ulid()
  local r = math.random(1, 8)
  chars[1] = first:sub(r, r)
  for i = 2, 26 do
    local c = math.random(1, 32)
    chars[i] = alphabet:sub(c, c)
  end
  return table.concat(chars)
end

-- One reserve's JSON object: M.prefix .. M.ulid() .. M.suffix.
M.prefix = '{"lease_id":"'
M.suffix = '","requirements":['
  .. '{"key":"bench:http:rpm","amount":1},'
  .. '{"key":"bench:http:tpm","amount":600},'
  .. '{"key":"bench:http:concurrency","amount":1},'
  .. '{"key":"bench:http:tenant_tokens","amount":600}]}'

return M
