"""The database layer seen from HTTP: the pool's queue, transactions, outages and recovery."""
import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import ROOT, Server, check, eq, error_body, free_port, test

ROUTES = r'''
spacer.get("/test/q", function(req)
  local row = spacer.db.one("SELECT $1::int AS n, pg_sleep(0.01) AS s", tonumber(req.query.n or "0"))
  return 200, { n = row.n }
end)
spacer.get("/test/sleep", function(req)
  spacer.db.one("SELECT pg_sleep($1::float8) AS s", tonumber(req.query.s or "0.5"))
  return 200, { slept = true }
end)
spacer.post("/test/tx", function(req)
  spacer.db.exec("CREATE TABLE IF NOT EXISTS test_tx (tag text, n int)")
  spacer.db.tx(function(db)
    db.exec("INSERT INTO test_tx VALUES ($1, 1)", req.body.tag)
    db.exec("INSERT INTO test_tx VALUES ($1, 2)", req.body.tag)
    if req.body.fail == "error" then error("failing after two inserts") end
    if req.body.fail == "loop" then while true do end end
  end)
  return 201, { ok = true }
end)
spacer.get("/test/div", function(req)
  local row = spacer.db.one("SELECT 100 / $1::int AS q, pg_sleep(0.005) AS s", tonumber(req.query.d))
  return 200, { q = row.q }
end)
spacer.get("/test/tx/{tag:str}", function(req)
  local row = spacer.db.one("SELECT count(*)::int AS c FROM test_tx WHERE tag = $1", req.params.tag)
  return 200, { count = row.c }
end)
'''


def hammer(s, paths):
    results = [None] * len(paths)

    def one(i):
        try:
            results[i] = s.get(paths[i], timeout=30)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@test
def two_hundred_concurrent_queries_on_a_pool_of_four():
    s = Server(workers=1, extra_routes=ROUTES, env={"SPACER_DATABASE_POOL_SIZE": "4"}).start()
    try:
        results = hammer(s, ["/test/q?n=%d" % i for i in range(200)])
        statuses = [getattr(r, "status", repr(r)) for r in results]
        eq([200] * 200, statuses)
        eq(list(range(200)), [r.json["n"] for r in results], "each request got its own answer")
    finally:
        s.close()


PIPELINE = {"SPACER_DATABASE_POOL_SIZE": "1", "SPACER_DATABASE_PIPELINE_DEPTH": "8"}


@test
def pipelined_requests_on_one_connection_each_get_their_own_answer():
    s = Server(workers=1, extra_routes=ROUTES, env=PIPELINE).start()
    try:
        results = hammer(s, ["/test/q?n=%d" % i for i in range(120)])
        eq([200] * 120, [getattr(r, "status", repr(r)) for r in results])
        eq(list(range(120)), [r.json["n"] for r in results], "each request got its own answer")
    finally:
        s.close()


@test
def a_failing_statement_in_a_pipeline_fails_only_its_own_request():
    s = Server(workers=1, extra_routes=ROUTES, env=PIPELINE).start()
    try:
        ds = [0 if i % 5 == 2 else i % 7 + 1 for i in range(60)]
        results = hammer(s, ["/test/div?d=%d" % d for d in ds])
        for d, r in zip(ds, results):
            if d == 0:
                error_body(r, 500, "script_error")  # division by zero: the script's error
            else:
                eq(200, r.status, r.json)
                eq(100 // d, r.json["q"])
        eq(200, s.get("/test/q?n=5").status)
    finally:
        s.close()


@test
def a_client_gone_mid_pipeline_disturbs_no_other():
    import socket
    s = Server(workers=1, extra_routes=ROUTES, env=PIPELINE).start()
    try:
        gone = []
        for i in range(6):  # on the one connection, between the others
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(b"GET /test/sleep?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
            gone.append(c)
        results = [None] * 12

        def one(i):
            results[i] = s.get("/test/q?n=%d" % i, timeout=30)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        for c in gone:
            c.close()
        for t in threads:
            t.join(30)
        eq(list(range(12)), [r.json["n"] for r in results])
        eq(200, s.get("/test/q?n=1").status)
    finally:
        s.close()


@test
def a_full_queue_answers_503_with_retry_after():
    # queue_size counts requests waiting for a connection; statements sent behind others on a
    # pipeline are not waiting any more, so the queue is measured without one.
    s = Server(workers=1, extra_routes=ROUTES, env={
        "SPACER_DATABASE_POOL_SIZE": "1", "SPACER_DATABASE_QUEUE_SIZE": "2",
        "SPACER_DATABASE_PIPELINE_DEPTH": "1"}).start()
    try:
        results = hammer(s, ["/test/sleep?s=0.5"] * 10)
        ok = [r for r in results if getattr(r, "status", 0) == 200]
        busy = [r for r in results if getattr(r, "status", 0) == 503]
        eq(10, len(ok) + len(busy), "every request answered 200 or 503: %r" % results)
        check(len(busy) >= 5 and len(ok) >= 1, "ok %d busy %d" % (len(ok), len(busy)))
        for r in busy:
            error_body(r, 503, "db_busy")
            check(r.header("retry-after"), "no Retry-After")
    finally:
        s.close()


@test
def an_error_inside_a_transaction_leaves_no_partial_write():
    s = Server(workers=2, extra_routes=ROUTES).start()
    try:
        tag = "t%d" % os.getpid()
        error_body(s.post("/test/tx", {"tag": tag + "a", "fail": "error"}), 500, "script_error")
        eq(0, s.get("/test/tx/%sa" % tag).json["count"])
        error_body(s.post("/test/tx", {"tag": tag + "b", "fail": "loop"}), 500, "script_limit")
        eq(0, s.get("/test/tx/%sb" % tag).json["count"])
        eq(201, s.post("/test/tx", {"tag": tag + "c"}).status)
        eq(2, s.get("/test/tx/%sc" % tag).json["count"])
    finally:
        s.close()


def devdb(*args):
    return subprocess.run(["sh", os.path.join(ROOT, "tools", "devdb.sh")] + list(args),
                          capture_output=True, text=True, timeout=120)


@test
def database_outage_gives_503_then_recovers_without_restart():
    work = tempfile.mkdtemp(prefix="spacer-outage-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    port = free_port()
    r = devdb("init", pg, str(port), "--fast")
    eq(0, r.returncode, r.stdout + r.stderr)
    eq(0, devdb("start", pg, str(port)).returncode)
    url = devdb("url", pg, str(port)).stdout.strip()
    s = Server(workers=2, extra_routes=ROUTES, env={
        "DATABASE_URL": url, "SPACER_DATABASE_CONNECT_TIMEOUT": "1"})
    try:
        s.start()
        eq(200, s.get("/readyz").status)
        eq(200, s.get("/test/q?n=1").status)
        eq(0, devdb("stop", pg).returncode)
        t0 = time.time()
        r = s.get("/readyz", timeout=10)
        eq(503, r.status)
        error_body(s.get("/test/q?n=2", timeout=10), 503, "db_unavailable")
        check(time.time() - t0 < 5, "answers took %.1fs" % (time.time() - t0))
        eq(200, s.get("/healthz").status)
        eq(0, devdb("start", pg, str(port)).returncode)
        deadline = time.time() + 15
        while time.time() < deadline and s.get("/readyz").status != 200:
            time.sleep(0.2)
        eq(200, s.get("/readyz").status, "ready again")
        eq(200, s.get("/test/q?n=3").status)
    finally:
        s.close()
        devdb("destroy", pg)
        shutil.rmtree(work, ignore_errors=True)
    check(not os.path.exists(work), "%s left behind" % work)


@test
def database_restarted_with_pipelined_queries_in_flight():
    work = tempfile.mkdtemp(prefix="spacer-outage-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    port = free_port()
    eq(0, devdb("init", pg, str(port), "--fast").returncode)
    eq(0, devdb("start", pg, str(port)).returncode)
    url = devdb("url", pg, str(port)).stdout.strip()
    s = Server(workers=1, extra_routes=ROUTES, env=dict(PIPELINE, DATABASE_URL=url,
                                                        SPACER_DATABASE_CONNECT_TIMEOUT="1"))
    try:
        s.start()
        eq(200, s.get("/test/q?n=1").status)
        results = [None] * 8

        def one(i):
            try:
                results[i] = s.get("/test/sleep?s=3", timeout=30)
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # all eight on the one connection, the first asleep
        eq(0, devdb("stop", pg).returncode)
        for t in threads:
            t.join(30)
        for r in results:
            error_body(r, 503, "db_unavailable")
            check(r.header("retry-after"), "no Retry-After")
        eq(0, devdb("start", pg, str(port)).returncode)
        deadline = time.time() + 15
        while time.time() < deadline and s.get("/readyz").status != 200:
            time.sleep(0.2)
        eq(200, s.get("/test/q?n=3").status)
    finally:
        s.close()
        devdb("destroy", pg)
        shutil.rmtree(work, ignore_errors=True)


class Load:
    """Threads asking path over and over on fresh connections; keeps (sent, answered, status)."""

    def __init__(self, s, path, threads=6):
        self.s = s
        self.path = path
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.log = []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self):
        deadline = time.time() + 60  # bounded, whatever happens
        while not self.stop.is_set() and time.time() < deadline:
            t0 = time.time()
            try:
                r = self.s.get(self.path, timeout=10)
                status = r.status
                if status == 503 and (not r.header("retry-after") or
                                      (r.json or {}).get("code") != "db_unavailable"):
                    status = "503 without Retry-After or db_unavailable: %r" % r
            except Exception as e:
                status = repr(e)
            with self.lock:
                self.log.append((t0, time.time(), status))
            time.sleep(0.02)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def between(self, start, end):
        with self.lock:
            return [x for x in self.log if start <= x[0] < end]


def timed_get(s, path):
    t0 = time.time()
    r = s.get(path, timeout=10)
    return r, time.time() - t0


@test
def database_stopped_under_load_every_request_answered_at_once():
    work = tempfile.mkdtemp(prefix="spacer-outage-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    port = free_port()
    eq(0, devdb("init", pg, str(port), "--fast").returncode)
    eq(0, devdb("start", pg, str(port)).returncode)
    url = devdb("url", pg, str(port)).stdout.strip()
    # The shipped connect_timeout (5 s): no request may wait for it.
    s = Server(workers=2, extra_routes=ROUTES, env={"DATABASE_URL": url,
                                                    "SPACER_DATABASE_CONNECT_TIMEOUT": "5"})
    try:
        s.start()
        eq(200, s.get("/test/q?n=1").status)
        with Load(s, "/test/q?n=7") as load:
            time.sleep(0.5)
            eq(0, devdb("stop", pg).returncode)
            stopped = time.time()
            readyz = []
            for _ in range(5):
                r, took = timed_get(s, "/readyz")
                readyz.append((r.status, took))
                time.sleep(0.2)
            time.sleep(0.5)
            eq(0, devdb("start", pg, str(port)).returncode)
            started = time.time()
            time.sleep(2.0)
            ready_again, _ = timed_get(s, "/readyz")
        check(all(st == 503 and took < 1.5 for st, took in readyz),
              "/readyz while the database is stopped: %r" % readyz)
        down = load.between(stopped, started - 0.3)
        check(len(down) >= 10, "too few requests while down: %d" % len(down))
        slow = [(round(b - a, 2), st) for a, b, st in down if b - a >= 1.5 or st != 503]
        eq([], slow, "requests while the database was stopped (seconds, status)")
        up = load.between(started, started + 2.0)
        oks = [a for a, b, st in up if st == 200]
        check(oks, "no request served after the database returned: %r" % up[:20])
        check(oks[0] - started < 1.5, "first 200 %.2fs after the return" % (oks[0] - started))
        late = [(round(a - started, 2), st) for a, b, st in up if a >= started + 1.5 and st != 200]
        eq([], late, "requests more than 1.5 s after the return that failed")
        eq(200, ready_again.status, "/readyz after the return")
    finally:
        s.close()
        devdb("destroy", pg)
        shutil.rmtree(work, ignore_errors=True)
    check(not os.path.exists(work), "%s left behind" % work)


@test
def readyz_answers_within_a_second_while_a_connect_hangs():
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accepts: a connect attempt hangs, as to a blackholed address
    url = "host=127.0.0.1 port=%d dbname=nowhere user=nobody sslmode=disable" % \
        silent.getsockname()[1]
    s = Server(workers=1, extra_routes=ROUTES, env={"DATABASE_URL": url,
                                                    "SPACER_DATABASE_CONNECT_TIMEOUT": "3"})
    try:
        s.start()
        seen = []
        end = time.time() + 5  # across the first attempt's 3 s and the retries after it
        while time.time() < end:
            r, took = timed_get(s, "/readyz")
            seen.append((r.status, round(took, 2)))
            q, took_q = timed_get(s, "/test/q?n=1")
            error_body(q, 503, "db_unavailable")
            seen.append((q.status, round(took_q, 2)))
        check(all(st == 503 and took < 1.5 for st, took in seen), "answers: %r" % seen)
        eq(200, s.get("/healthz").status)
    finally:
        s.close()
        silent.close()
