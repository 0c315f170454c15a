-- bench/wrk/payment_create.lua: POST /api/payments/payments (manual) on distinct bookings.
--
-- The pay pool of bench/gen_payments.sql: confirmed bookings BENCH_PAY_MIN..BENCH_PAY_MAX of
-- the client whose token is BENCH_PAY_TOKEN. Request n of thread `id` pays booking
--   BENCH_PAY_MIN + (pass * BENCH_PAY_SHARE + counter * BENCH_THREADS + id) mod pool
-- where pass = BENCH_SLOT_BASE / 1000000 (tools/bench.sh gives each wrk run its own), so no
-- two requests of the bench pay the same booking while a run stays under BENCH_PAY_SHARE
-- requests. Each answer is a 201 with a pending manual payment.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local lo = tonumber(env("BENCH_PAY_MIN", "1"))
local hi = tonumber(env("BENCH_PAY_MAX", "1"))
local share = tonumber(env("BENCH_PAY_SHARE", "40000"))
local nthreads = tonumber(env("BENCH_THREADS", "2"))
local pass = math.floor(tonumber(env("BENCH_SLOT_BASE", "0")) / 1000000)
local pool = hi - lo + 1
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. env("BENCH_PAY_TOKEN", "missing-token")

function request()
  local g = pass * share + counter * nthreads + id
  counter = counter + 1
  local body = string.format('{"booking_id":%d,"payment_method":"manual"}', lo + g % pool)
  return wrk.format(nil, "/api/payments/payments", nil, body)
end
