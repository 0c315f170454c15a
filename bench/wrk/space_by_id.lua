-- bench/wrk/space_by_id.lua: GET /api/spaces/spaces/{id} over random ids of the bench spaces
-- (BENCH_SPACE_MIN..BENCH_SPACE_MAX).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local lo = tonumber(env("BENCH_SPACE_MIN", "1"))
local hi = tonumber(env("BENCH_SPACE_MAX", "1000"))

function request()
  return wrk.format("GET", "/api/spaces/spaces/" .. math.random(lo, hi))
end
