-- bench/wrk/login.lua: POST /api/users/login as the bench users in turn (every one has the
-- same real bcrypt hash, cost 12, made once by `spacer hash-password`). Each login costs
-- one bcrypt verification: this scenario measures the hashing pool.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local nusers = tonumber(env("BENCH_USERS", "1000"))
local password = env("BENCH_PASSWORD", "bench-password-1")
local nthreads = tonumber(env("BENCH_THREADS", "2"))
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  local n = (counter * nthreads + id) % nusers + 1
  counter = counter + 1
  return wrk.format(nil, "/api/users/login", nil, string.format(
    '{"email":"user%d@bench.spacer.test","password":"%s"}', n, password))
end
