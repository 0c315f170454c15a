-- bench/wrk/bookings_list.lua: GET /api/bookings/bookings with a client's token (BENCH_TOKEN,
-- obtained once by tools/bench.sh through /api/users/login): the client's own bookings,
-- first page of 20 (the bench client has about a hundred).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = "/api/bookings/bookings"
wrk.headers["Authorization"] = "Bearer " .. env("BENCH_TOKEN", "missing-token")
