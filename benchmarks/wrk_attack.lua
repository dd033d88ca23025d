-- wrk script for benchmarks/bench_attack.py: one attack, from another client address (X-Forwarded-For,
-- trusted from localhost by uvicorn as from a proxy). Usage: wrk -s wrk_attack.lua URL -- MODE SECRET ADDRESS
-- MODE: guess-write (random Basic write keys), flood-write (one write key, single events),
-- guess-read (random bearer keys on /v1/kpis), huge-read (a read key asking 1 AD to 9999 AD),
-- alias-bomb (an admin key putting a YAML alias bomb as the ruleset)
local mode, secret, address = "guess-write", "", "203.0.113.7"
local counter = 0
local bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n' ..
  'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n' ..
  'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nrules: *g\n'

function init(args)
  mode, secret, address = args[1] or mode, args[2] or "", args[3] or address
  math.randomseed(os.time())
end

function request()
  counter = counter + 1
  local headers = {["X-Forwarded-For"] = address}
  if mode == "guess-write" or mode == "flood-write" then
    headers["Content-Type"] = "text/plain"
    local body = string.format('{"type":"page","anonymousId":"x%d","messageId":"atk-%d-%d"}', counter, os.time(), counter)
    if mode == "guess-write" then  -- a guessed key in the query, as a pixel would send it
      return wrk.format("POST", string.format("/v1/page?writeKey=wk_guess%08d%08d", math.random(99999999), counter),
        headers, body)
    end
    headers["Authorization"] = "Basic " .. secret  -- base64 of "key:", from the benchmark
    return wrk.format("POST", "/v1/page", headers, body)
  elseif mode == "guess-read" or mode == "huge-read" then
    local key = secret
    if mode == "guess-read" then key = string.format("rk_guess%08d%08d", math.random(99999999), counter) end
    headers["Authorization"] = "Bearer " .. key
    return wrk.format("GET", "/v1/kpis?from=0001-01-01&to=9999-12-31&granularity=total", headers)
  end
  headers["Authorization"] = "Bearer " .. secret
  headers["Content-Type"] = "application/yaml"
  return wrk.format("PUT", "/v1/rules", headers, bomb)
end
