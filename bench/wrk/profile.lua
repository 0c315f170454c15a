-- bench/wrk/profile.lua: GET /api/users/profile with a client's token (BENCH_TOKEN, obtained
-- once by tools/bench.sh through /api/users/login): the caller's own profile, which lib/auth's
-- per-worker copy of the user row answers once warm.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = "/api/users/profile"
wrk.headers["Authorization"] = "Bearer " .. env("BENCH_TOKEN", "missing-token")
