-- wrk script: one Segment track/page message per request, unique messageIds per thread,
-- persons cycling over PERSONS anonymous ids. Usage: wrk -s wrk_track.lua URL -- BASIC_AUTH [BATCH] [RUN_TAG]
-- Give every run its own RUN_TAG (default: the clock), or its messages are duplicates of an earlier run.
local counter = 0
thread_id = 0  -- a global: setup() gives each thread its own value
local key = ""
local tag = ""
local batch = 1
local persons = 20000
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  key = args[1] or ""
  batch = tonumber(args[2] or "1")
  tag = args[3] or tostring(os.time())
  math.randomseed(os.time() + thread_id * 7919)
end

local function message_and_type()
  counter = counter + 1
  local person = math.random(persons)
  local kind = math.random(10)
  local id = string.format("%s-%d-%d", tag, thread_id, counter)
  if kind <= 6 then
    return string.format('{"type":"page","anonymousId":"p%d","messageId":"%s","context":{"page":{"url":"https://shop.example/p/%d","referrer":"https://www.google.com/"}}}', person, id, kind), "page"
  elseif kind <= 9 then
    return string.format('{"type":"track","event":"Product Viewed","anonymousId":"p%d","messageId":"%s","properties":{"product_id":"sku-%d"}}', person, id, kind), "track"
  end
  return string.format('{"type":"track","event":"Order Completed","anonymousId":"p%d","messageId":"%s","properties":{"order_id":"%s","revenue":25.5}}', person, id, id), "track"
end

function request()
  local body
  if batch == 1 then
    local kind
    body, kind = message_and_type()
    return wrk.format("POST", "/v1/" .. kind, {["Content-Type"] = "text/plain", ["Authorization"] = "Basic " .. key}, body)
  end
  local parts = {}
  for i = 1, batch do parts[i] = (message_and_type()) end
  body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json", ["Authorization"] = "Basic " .. key}, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
