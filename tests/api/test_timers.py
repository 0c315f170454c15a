"""spacer.timer: background jobs in every worker, run once across instances by claiming rows
with FOR UPDATE SKIP LOCKED; runs never overlap; errors and limits are logged and counted
without harm; a reload swaps the timers; a drain waits for a run in flight."""
import os
import subprocess
import time

from harness import BIN, ROOT, Server, check, eq, test

URL = os.environ.get("DATABASE_URL", "")


def psql(sql):
    r = subprocess.run(["psql", URL, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr)
    return r.stdout.strip()


def rows(sql):
    out = psql(sql)
    return [line.split("|") for line in out.splitlines()] if out else []


def wait_for(what, fn, timeout=20):
    """Polls fn until it is true; bounded, never a fixed sleep standing in for a result."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def reload_cli(s):
    return subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                          timeout=30)


JOBS = r'''
local TAG = "v1"
spacer.timer.every("tick", 0.3, function()
  spacer.db.exec("INSERT INTO timer_ticks (pid, tag) VALUES ($1, $2)", spacer.worker.pid, TAG)
end)
-- Read, act, mark: without the row locks two instances would act on the same job.
spacer.timer.every("claim", 0.2, function()
  spacer.db.tx(function(db)
    local jobs = db.query([[SELECT id FROM timer_jobs WHERE done_at IS NULL
      ORDER BY id LIMIT 3 FOR UPDATE SKIP LOCKED]])
    for _, j in ipairs(jobs) do
      db.exec("INSERT INTO timer_job_log (job_id, pid) VALUES ($1, $2)", j.id, spacer.worker.pid)
    end
    db.exec("SELECT pg_sleep(0.05)") -- hold the claim a while, as real work would
    for _, j in ipairs(jobs) do
      db.exec("UPDATE timer_jobs SET done_at = now() WHERE id = $1", j.id)
    end
  end)
end)
spacer.get("/test/timers", function() return 200, spacer.timer.list() end)
'''

TROUBLE = r'''
spacer.timer.every("tick", 0.3, function()
  spacer.db.exec("INSERT INTO timer_ticks (pid, tag) VALUES ($1, 'trouble')", spacer.worker.pid)
end)
spacer.timer.every("boom", 0.2, function() error("boom from a timer") end)
spacer.timer.every("spin", 0.5, function() while true do end end)
spacer.timer.every("slow", 0.1, function()
  local id = spacer.db.one("INSERT INTO timer_runs (pid) VALUES ($1) RETURNING id",
    spacer.worker.pid).id
  spacer.db.exec("SELECT pg_sleep(0.4)")
  spacer.db.exec("UPDATE timer_runs SET ended = clock_timestamp() WHERE id = $1", id)
end)
-- an error object whose __tostring raises: the core must not run it where it logs
local EVIL = setmetatable({}, { __tostring = function() error("tostring raised") end })
spacer.timer.every("evil", 0.2, function() error(EVIL) end)
spacer.get("/test/evil", function() error(EVIL) end)
spacer.get("/test/timers", function() return 200, spacer.timer.list() end)
spacer.get("/test/declare-late", function()
  spacer.timer.every("late", 1, function() end)
  return 200, {}
end)
spacer.post("/test/after", function(req)
  local tag = req.body.tag
  return 200, { scheduled = spacer.timer.after(0.2, function()
    spacer.db.exec("INSERT INTO timer_ticks (pid, tag) VALUES ($1, $2)", spacer.worker.pid, tag)
  end) }
end)
'''


def setup_tables():
    psql("""DROP TABLE IF EXISTS timer_ticks, timer_jobs, timer_job_log, timer_runs;
CREATE TABLE timer_ticks (id bigserial PRIMARY KEY, pid int NOT NULL, tag text NOT NULL);
CREATE TABLE timer_jobs (id int PRIMARY KEY, done_at timestamptz);
CREATE TABLE timer_job_log (id bigserial PRIMARY KEY, job_id int NOT NULL, pid int NOT NULL);
CREATE TABLE timer_runs (id bigserial PRIMARY KEY, pid int NOT NULL,
  started timestamptz NOT NULL DEFAULT clock_timestamp(), ended timestamptz);""")


def ticking_pids(tag):
    return {int(r[0]) for r in rows("SELECT DISTINCT pid FROM timer_ticks WHERE tag = '%s'" % tag)}


_pair = []


@test
def two_instances_run_each_job_once():
    setup_tables()
    psql("INSERT INTO timer_jobs (id) SELECT g FROM generate_series(1, 60) g")
    a = Server(workers=2, extra_routes=JOBS).start()
    _pair.append(a)
    b = Server(workers=2, extra_routes=JOBS).start()
    _pair.append(b)
    pids = set(a.worker_pids()) | set(b.worker_pids())
    eq(4, len(pids))
    wait_for("every job done",
             lambda: psql("SELECT count(*) FROM timer_jobs WHERE done_at IS NULL") == "0")
    eq([["60", "60"]], rows("SELECT count(*), count(DISTINCT job_id) FROM timer_job_log"),
       "log entries, distinct jobs")
    # every worker of both instances runs the timers
    wait_for("ticks from all four workers", lambda: pids <= ticking_pids("v1"))
    # the test's own timers (the application's, payments.*, run beside them)
    listed = {t["name"]: t for t in a.get("/test/timers").json if not t["name"].startswith("payments.")}
    eq({"tick", "claim"}, set(listed))
    eq(0.3, listed["tick"]["every"])
    eq(0, listed["claim"]["errors"])


@test
def reload_replaces_the_timers():
    check(len(_pair) == 2, "needs the previous test's servers")
    a = _pair[0]
    try:
        pids = set(a.worker_pids())
        path = os.path.join(a.scripts, "routes", "test_fixture.lua")
        with open(path) as f:
            src = f.read()
        with open(path, "w") as f:
            f.write(src.replace('local TAG = "v1"', 'local TAG = "v2"')
                    .replace('spacer.timer.every("claim"', 'spacer.timer.every("claim2"'))
        r = reload_cli(a)
        eq(0, r.returncode, "spacer reload: " + r.stdout + r.stderr)
        wait_for("v2 ticks from both workers", lambda: pids <= ticking_pids("v2"))
        old = psql("SELECT count(*) FROM timer_ticks WHERE tag = 'v1' AND pid = ANY('{%s}')"
                   % ",".join(map(str, pids)))
        # the old generation's timer would tick 3 times a second in each worker
        time.sleep(1.5)
        eq(old, psql("SELECT count(*) FROM timer_ticks WHERE tag = 'v1' AND pid = ANY('{%s}')"
                     % ",".join(map(str, pids))), "v1 ticks after the reload")
        eq({"tick", "claim2"}, {t["name"] for t in a.get("/test/timers").json
                                 if not t["name"].startswith("payments.")})
        eq(pids, set(a.worker_pids()), "no worker restarted")
    finally:
        for s in _pair:
            s.close()
        del _pair[:]


@test
def errors_and_limits_are_logged_counted_and_harmless():
    setup_tables()
    s = Server(workers=1, extra_routes=TROUBLE,
               env={"SPACER_SCRIPTS_INSTRUCTION_LIMIT": "1000000"}).start()
    try:
        pids = s.worker_pids()

        def counted():
            t = {x["name"]: x for x in s.get("/test/timers").json}
            return (t["boom"]["errors"] >= 2 and t["spin"]["errors"] >= 1 and
                    t["evil"]["errors"] >= 2 and
                    t["slow"]["skipped"] >= 1 and t["slow"]["runs"] >= 2 and t)

        t = wait_for("errors, limits and skipped runs counted", counted)
        eq(0, t["tick"]["errors"])
        eq(t["boom"]["runs"], t["boom"]["errors"], "every boom run failed")
        logs = s.logs()
        check('"timer":"boom"' in logs and "boom from a timer" in logs, logs)
        check('"timer":"spin"' in logs and "instruction limit exceeded" in logs, logs)
        check('"timer":"evil"' in logs and "(error object is a table value)" in logs, logs)
        eq(500, s.get("/test/evil").status, "a route raising the same object")
        # runs of one timer never overlap
        runs = rows("SELECT extract(epoch FROM started), extract(epoch FROM ended) "
                    "FROM timer_runs WHERE ended IS NOT NULL ORDER BY started")
        check(len(runs) >= 2, "slow ran %d times" % len(runs))
        for prev, nxt in zip(runs, runs[1:]):
            check(float(nxt[0]) >= float(prev[1]), "overlapping runs: %r then %r" % (prev, nxt))
        # the worker serves and keeps ticking
        eq(200, s.get("/healthz").status)
        n = len(rows("SELECT id FROM timer_ticks WHERE tag = 'trouble'"))
        wait_for("more ticks", lambda: len(rows("SELECT id FROM timer_ticks WHERE tag = 'trouble'")) > n)
        eq(pids, s.worker_pids(), "no worker restarted")
        check("lua panic" not in s.logs(), s.logs())
        # and in spacer test
        path = os.path.join(s.dir, "evil_test.lua")
        with open(path, "w") as f:
            f.write('test("evil", function() error(setmetatable({}, { __tostring = function() '
                    'error("tostring raised") end })) end)\n'
                    'test("fine", function() end)\n')
        r = subprocess.run([BIN, "test", path], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        check("1 passed, 1 failed" in r.stdout and "error object is a table value" in r.stdout,
              r.stdout + r.stderr)
        text = s.get("/metrics").text
        for result in ("ok", "error", "skipped"):
            line = [x for x in text.splitlines()
                    if x.startswith('spacer_timer_runs_total{result="%s"} ' % result)]
            check(line and float(line[0].split()[1]) >= 1, "timer runs %s: %r" % (result, line))
        # declared in a request: a script error, not a new timer
        r = s.get("/test/declare-late")
        eq(500, r.status)
        check("declare timers at a script's top level" in s.logs(), s.logs())
        # a one-shot runs once
        eq(True, s.post("/test/after", {"tag": "once"}).json["scheduled"])
        wait_for("the one-shot", lambda: psql("SELECT count(*) FROM timer_ticks WHERE tag = 'once'") == "1")
        time.sleep(0.5)
        eq("1", psql("SELECT count(*) FROM timer_ticks WHERE tag = 'once'"), "one-shot runs")
        # a drain waits for the run in flight: every started run of slow ended
        eq(0, s.stop())
        eq("0", psql("SELECT count(*) FROM timer_runs WHERE ended IS NULL"), "runs cut off")
    finally:
        s.close()
        psql("DROP TABLE IF EXISTS timer_ticks, timer_jobs, timer_job_log, timer_runs")
