-- bench/wrk/spaces_list.lua: GET /api/spaces/spaces?per_page=20&min_capacity=10 — the public
-- list of spaces, one page of 20 with a filter. Which page varies (1..BENCH_LIST_PAGES) so
-- the database does not answer the same rows every time.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local pages = tonumber(env("BENCH_LIST_PAGES", "5"))
local min_capacity = env("BENCH_MIN_CAPACITY", "10")

function request()
  local path = string.format("/api/spaces/spaces?per_page=20&min_capacity=%s&page=%d",
    min_capacity, math.random(1, pages))
  return wrk.format("GET", path)
end
