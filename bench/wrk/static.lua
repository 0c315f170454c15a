-- bench/wrk/static.lua: one fixed request (the URL given to wrk), e.g. GET /healthz and
-- the nginx ceiling. No request() function: wrk sends its pre-built request, cheapest.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
