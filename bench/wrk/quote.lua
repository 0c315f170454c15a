-- bench/wrk/quote.lua: GET /api/spaces/spaces/{id}/quote?start=...&end=... — the pricing
-- script (scripts/pricing.lua) on a random space, for a random period of 1 to 30 hours
-- starting within 90 days after BENCH_SLOT_EPOCH (UTC, ISO 8601 with Z).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local lo = tonumber(env("BENCH_SPACE_MIN", "1"))
local hi = tonumber(env("BENCH_SPACE_MAX", "1000"))
local epoch = tonumber(env("BENCH_SLOT_EPOCH", "0"))

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

function request()
  local start = epoch + math.random(0, 90 * 24 - 1) * 3600
  local stop = start + math.random(1, 30) * 3600
  return wrk.format("GET", string.format("/api/spaces/spaces/%d/quote?start=%s&end=%s",
    math.random(lo, hi), iso(start), iso(stop)))
end
