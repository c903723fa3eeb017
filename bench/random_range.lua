-- One random single byte range per request (S2, S7).
--
--   wrk ... -s random_range.lua URL -- FILE_SIZE RANGE_LEN [SEED]
--
-- Each request asks for RANGE_LEN bytes starting at a uniformly random byte offset in
-- [0, FILE_SIZE - RANGE_LEN] (not aligned to anything), so every response is a full-length 206.
-- The generator is seeded per wrk thread from SEED and the thread's index, so runs repeat.

local counter = 0

function setup(thread)
   thread:set("thread_index", counter)
   counter = counter + 1
end

local size, len

function init(args)
   size = tonumber(args[1])
   len = tonumber(args[2])
   if not size or not len or len < 1 or len > size then
      error("usage: -s random_range.lua URL -- FILE_SIZE RANGE_LEN [SEED]")
   end
   local seed = tonumber(args[3]) or 1
   math.randomseed(seed * 7919 + (thread_index or 0))
end

function request()
   local first = math.random(0, size - len)
   local range = string.format("bytes=%d-%d", first, first + len - 1)
   return wrk.format(nil, nil, { ["Range"] = range })
end
