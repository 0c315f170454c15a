-- bench/wrk/booking_create.lua: POST /api/bookings/bookings on distinct free slots.
--
-- Request n of thread `id` gets the global number
--   g = BENCH_SLOT_BASE + counter * BENCH_THREADS + id
-- which no other request of this wrk run has; g picks the space (g mod the number of bench
-- spaces) and a one-hour slot (g div that number) counted from BENCH_SLOT_EPOCH, a time
-- after every generated booking. tools/bench.sh gives each wrk run (warm-up, measurement)
-- its own BENCH_SLOT_BASE, so no two requests of the whole bench ask for the same slot of
-- the same space. The bench spaces are available and not instant_book: bookings are
-- created pending (201). The token is a client's (BENCH_CLIENT_TOKEN).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local lo = tonumber(env("BENCH_SPACE_MIN", "1"))
local hi = tonumber(env("BENCH_SPACE_MAX", "1000"))
local nspaces = hi - lo + 1
local nthreads = tonumber(env("BENCH_THREADS", "2"))
local base = tonumber(env("BENCH_SLOT_BASE", "0"))
local epoch = tonumber(env("BENCH_SLOT_EPOCH", "0"))
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. env("BENCH_CLIENT_TOKEN", "missing-token")

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

function request()
  local g = base + counter * nthreads + id
  counter = counter + 1
  local space = lo + g % nspaces
  local start = epoch + math.floor(g / nspaces) * 3600
  local body = string.format(
    '{"space_id":%d,"start_datetime":"%s","end_datetime":"%s","guests":2,"notes":"bench"}',
    space, iso(start), iso(start + 3600))
  return wrk.format(nil, "/api/bookings/bookings", nil, body)
end
