-- bench/wrk/common.lua: what every wrk script of `make bench` shares. Loaded with dofile by
-- each scenario script (tools/bench.sh runs wrk from the repository's root).
--
--   * setup() numbers the threads: `id` (0, 1, ...) is a global in each thread's state, so
--     scripts can make values unique across threads (see booking_create.lua).
--   * done() prints one line "BENCH {json}" that tools/bench.sh collects: requests,
--     duration, requests/s, latency percentiles (µs) and wrk's error counts (errors.status
--     counts responses with a status of 400 or more).
--   * env(name, default) reads the parameters bench.sh passes as environment variables.

function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    return default
  end
  return v
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  -- A different random sequence per thread (and per run).
  math.randomseed(os.time() * 1000 + (id or 0) * 7919 + tonumber(env("BENCH_SEED", "0")))
  if init_scenario then
    init_scenario(args)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.3f,"rps":%.2f,"bytes":%d,' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes,
    latency.mean, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
