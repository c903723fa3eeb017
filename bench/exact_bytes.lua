-- Print the exact counts behind wrk's summary (which rounds the bytes read), so that run.py can
-- check every response of a run had the one expected length (S4: each server's 304 head).
--
--   wrk ... -s exact_bytes.lua URL
--
-- Prints one line at the end:  EXACT_BYTES responses=N bytes=B status_errors=E
-- No response() hook: it would make wrk build a Lua table of every response's fields, which cost
-- it ~10% of its core in S4, a client that is already the tighter side there.

function done(summary, latency, requests)
   io.write(string.format("EXACT_BYTES responses=%d bytes=%d status_errors=%d\n",
                          summary.requests, summary.bytes, summary.errors.status))
end
