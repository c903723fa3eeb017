-- Count responses whose status is not the expected one (S4: every answer must be a 304).
--
--   wrk ... -H 'If-None-Match: "etag"' -s expect_status.lua URL -- STATUS
--
-- Prints one line at the end that run.py parses:  EXPECT_STATUS seen=N bad=M
-- (wrk itself only counts statuses outside 2xx/3xx; a 200 instead of a 304 would pass unseen.)

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local expected

function init(args)
   expected = tonumber(args[1]) or 304
   -- globals, so that done() can read them with thread:get()
   seen = 0
   bad = 0
end

function response(status, headers, body)
   seen = seen + 1
   if status ~= expected then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local s, b = 0, 0
   for _, t in ipairs(threads) do
      s = s + (t:get("seen") or 0)
      b = b + (t:get("bad") or 0)
   end
   io.write(string.format("EXPECT_STATUS seen=%d bad=%d\n", s, b))
end
