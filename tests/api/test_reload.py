"""Hot reload: generations swap under load without a failed request; a broken script keeps
the old generation serving and says file:line; 1,000 reloads leave memory where it was."""
import os
import subprocess
import threading
import time

from harness import BIN, ROOT, Server, check, eq, test

# A route whose answer comes from scripts/pricing.lua, like the quote route.
RULE_ROUTES = r'''
local pricing = require("pricing")
spacer.get("/test/rule", function()
  local q = pricing.quote({ price_per_hour = 50000, price_per_day = 700000, currency = "KES",
    timezone = "Africa/Nairobi" }, 1796108400, 1796108400 + 2 * 3600, { vat_percent = 16 })
  return 200, { total = q.total, generation = spacer.worker.generation }
end)
'''


def reload_cli(s):
    return subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                          timeout=30)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


@test
def pricing_change_under_load_drops_nothing():
    s = Server(workers=2, extra_routes=RULE_ROUTES).start()
    try:
        eq(116000, s.get("/test/rule").json["total"])
        stop = threading.Event()
        stats = {"ok": 0, "failed": [], "totals": set()}
        lock = threading.Lock()

        def load():
            conn = s.connection()
            deadline = time.time() + 8  # bounded, whatever happens
            while not stop.is_set() and time.time() < deadline:
                try:
                    r = s.get("/test/rule", conn=conn)
                    with lock:
                        if r.status == 200:
                            stats["ok"] += 1
                            stats["totals"].add(r.json["total"])
                        else:
                            stats["failed"].append(r.status)
                except Exception as e:  # a dropped connection is a failure too
                    with lock:
                        stats["failed"].append(repr(e))
                    conn.close()
                    conn = s.connection()
            conn.close()

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        path = os.path.join(s.scripts, "pricing.lua")
        with open(path) as f:
            src = f.read()
        # The new rule: a 10% discount on every quote, written the way an integrator would.
        with open(path, "w") as f:
            f.write(src.replace("return _M", "local base_quote = _M.quote\n"
                                "function _M.quote(...)\n"
                                "  local q = base_quote(...)\n"
                                "  if q then q.total = q.total - q.total // 10 end\n"
                                "  return q\nend\n\nreturn _M", 1))
        r = reload_cli(s)
        eq(0, r.returncode, "spacer reload: " + r.stdout + r.stderr)
        time.sleep(1.0)
        after = s.get("/test/rule").json
        stop.set()
        for t in threads:
            t.join(10)
        eq([], stats["failed"], "failed requests during the reload")
        check(stats["ok"] > 200, "too little load: %d" % stats["ok"])
        eq(116000 - 11600, after["total"], "the quote after the reload")
        eq({116000, 104400}, stats["totals"], "totals seen")
    finally:
        s.close()


@test
def broken_script_keeps_the_old_generation():
    s = Server(workers=2, extra_routes=RULE_ROUTES).start()
    try:
        path = os.path.join(s.scripts, "pricing.lua")
        with open(path) as f:
            good = f.read()
        with open(path, "a") as f:
            f.write("\nlocal broken = (\n")
        r = reload_cli(s)
        check(r.returncode != 0, "reload of a broken script exited 0")
        check("pricing.lua:" in r.stdout, "no file:line in " + r.stdout)
        eq(116000, s.get("/test/rule").json["total"])
        eq(1, s.get("/test/rule").json["generation"])
        check("reload failed" in s.logs(), "the log does not say the reload failed")
        with open(path, "w") as f:
            f.write(good)
        r = reload_cli(s)
        eq(0, r.returncode, r.stdout)
        eq(2, s.get("/test/rule").json["generation"])
    finally:
        s.close()


@test
def runtime_error_at_load_is_reported_with_file_and_line():
    s = Server(workers=1).start()
    try:
        with open(os.path.join(s.scripts, "init.lua"), "a") as f:
            f.write('\nlocal x = nil\nlocal y = x.field\n')
        r = reload_cli(s)
        check(r.returncode != 0, "exit status 0")
        check("init.lua:" in r.stdout and "index a nil value" in r.stdout, r.stdout)
        eq(200, s.get("/healthz").status)
    finally:
        s.close()


@test
def a_thousand_reloads_leave_memory_where_it_was():
    # Under AddressSanitizer freed memory sits in a quarantine that grows the RSS by design;
    # without it the allocator reuses memory as the real one does.
    s = Server(workers=1, env={"ASAN_OPTIONS": "quarantine_size_mb=0"}).start()
    try:
        pid = s.worker_pids()[0]
        for _ in range(50):
            eq(0, reload_cli(s).returncode)
        before = rss_kb(pid)
        for _ in range(1000):
            r = reload_cli(s)
            eq(0, r.returncode, r.stdout)
        after = rss_kb(pid)
        eq([pid], s.worker_pids(), "the worker was replaced")
        check(after - before < 2048, "RSS grew from %d kB to %d kB" % (before, after))
    finally:
        s.close()


@test
def a_reload_while_workers_start_ends_none_of_them():
    # The reload is asked for as soon as the master answers on its control socket, while the
    # workers it has just forked still load their scripts.
    s = Server(workers=2, extra_routes=RULE_ROUTES).start(wait=False)
    try:
        sock = s.env["SPACER_SERVER_PID_FILE"][:-len(".pid")] + ".sock"
        deadline = time.time() + 15
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.002)
        r = reload_cli(s)
        s.wait_ready()
        eq(0, r.returncode, r.stdout + r.stderr)
        for _ in range(4):
            eq(200, s.get("/test/rule").status)
        time.sleep(0.3)
        check("killed by signal" not in s.logs_all(), "a worker was killed:\n" + s.logs())
        check("exited with status" not in s.logs_all(), "a worker exited:\n" + s.logs())
    finally:
        s.close()
