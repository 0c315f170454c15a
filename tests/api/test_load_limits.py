"""Script limits while a generation loads: a runaway at load time (an endless loop, one hidden
behind pcall, a loop that allocates without end, a loop inside a function the load-time
settings check calls) fails the load with file:line, at start-up, on reload, in `spacer check`
and in `spacer test`; the old generation keeps serving and the workers live on."""
import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import BIN, ROOT, Server, check, eq, error_body, test

RULE_ROUTES = r'''
local pricing = require("pricing")
spacer.get("/test/rule", function()
  local q = pricing.quote({ price_per_hour = 50000, price_per_day = 700000, currency = "KES",
    timezone = "Africa/Nairobi" }, 1796108400, 1796108400 + 2 * 3600, { vat_percent = 16 })
  return 200, { total = q.total, generation = spacer.worker.generation }
end)
'''

# name -> (code, where it goes, the limit named). "top": right after `local _M = {}` at the
# top level of pricing.lua; "quote": first line of pricing.quote, which booking_flow.lua's
# settings check calls while the generation loads.
RUNAWAYS = [
    ("endless loop", "while true do end", "top", "instruction"),
    ("loop behind pcall", "for _ = 1, 1000 do pcall(function() while true do end end) end",
     "top", "instruction"),
    ("allocation without end",
     "local t, i = {}, 0 while true do i = i + 1; t[i] = string.rep(\"x\", 4096) .. i end",
     "top", "memory"),
    ("loop in a load-time check", "while true do end", "quote", "instruction"),
]

# The load-time memory cap of these servers: small, so the allocating loop stops quickly.
ENV = {"SPACER_SCRIPTS_MEMORY_LIMIT": "64M"}


def with_runaway(src, code, where):
    """pricing.lua's text with code inserted; returns (text, line number of the code)."""
    lines = src.split("\n")
    if where == "top":
        at = lines.index("local _M = {}") + 1
    else:
        at = next(i for i, l in enumerate(lines) if l.startswith("function _M.quote(")) + 1
    lines.insert(at, code)
    return "\n".join(lines), at + 1


def admin_token(s):
    return s.login("admin@spacer.com", "Admin123!")


class HealthProbe:
    """Asks /healthz over and over on fresh connections; records each answer's time."""

    def __init__(self, s):
        self.s = s
        self.stop = threading.Event()
        self.slowest = 0.0
        self.answers = 0
        self.failures = []
        self.thread = threading.Thread(target=self.run)

    def run(self):
        deadline = time.time() + 30  # bounded, whatever happens
        while not self.stop.is_set() and time.time() < deadline:
            t0 = time.time()
            try:
                r = self.s.get("/healthz", timeout=5)
                if r.status != 200:
                    self.failures.append(r.status)
                else:
                    self.answers += 1
            except Exception as e:
                self.failures.append(repr(e))
            self.slowest = max(self.slowest, time.time() - t0)
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(40)


@test
def a_runaway_at_load_is_refused_and_the_old_generation_serves():
    s = Server(workers=2, extra_routes=RULE_ROUTES, env=ENV).start()
    try:
        token = admin_token(s)
        eq(116000, s.get("/test/rule").json["total"])
        pids = sorted(s.worker_pids())
        eq(2, len(pids))
        path = os.path.join(s.scripts, "pricing.lua")
        with open(path) as f:
            good = f.read()
        for name, code, where, limit in RUNAWAYS:
            text, line = with_runaway(good, code, where)
            with open(path, "w") as f:
                f.write(text)
            with HealthProbe(s) as probe:
                time.sleep(0.1)
                t0 = time.time()
                r = s.post("/api/admin/reload", token=token, timeout=30)
                took = time.time() - t0
                time.sleep(0.1)
            body = error_body(r, 422, "reload_failed")
            want = "pricing.lua:%d: script %s limit exceeded" % (line, limit)
            check(body["errors"] and all(want in e for e in body["errors"]),
                  "%s: errors %r do not say %r" % (name, body["errors"], want))
            check(took < 10, "%s: the reload took %.1fs" % (name, took))
            eq([], probe.failures, name + ": /healthz during the reload")
            check(probe.answers > 0 and probe.slowest < 5,
                  "%s: /healthz answered %d times, slowest %.2fs" % (name, probe.answers,
                                                                      probe.slowest))
            rule = s.get("/test/rule").json
            eq(116000, rule["total"], name + ": the old generation's quote")
            eq(1, rule["generation"], name + ": the generation")
            eq(pids, sorted(s.worker_pids()), name + ": the workers were replaced")
        with open(path, "w") as f:
            f.write(good)
        r = s.post("/api/admin/reload", token=token)
        eq(200, r.status, r.text)
        eq(2, s.get("/test/rule").json["generation"])
        eq(pids, sorted(s.worker_pids()))
    finally:
        s.close()


def scripts_copy():
    d = tempfile.mkdtemp(prefix="spacer-load-")
    shutil.copytree(os.path.join(ROOT, "scripts"), os.path.join(d, "scripts"))
    return d


def run_spacer(args, scripts, timeout=30):
    env = dict(os.environ)
    env.update(ENV)
    env["SPACER_SCRIPTS_DIR"] = scripts
    t0 = time.time()
    r = subprocess.run([BIN] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r, time.time() - t0


@test
def spacer_check_and_test_stop_a_runaway_with_file_and_line():
    d = scripts_copy()
    try:
        scripts = os.path.join(d, "scripts")
        path = os.path.join(scripts, "pricing.lua")
        with open(path) as f:
            good = f.read()
        for name, code, where, limit in RUNAWAYS:
            text, line = with_runaway(good, code, where)
            with open(path, "w") as f:
                f.write(text)
            want = "pricing.lua:%d: script %s limit exceeded" % (line, limit)
            r, took = run_spacer(["check"], scripts)
            check(r.returncode != 0, "%s: spacer check exited 0" % name)
            check(want in r.stderr, "%s: spacer check said %r, not %r" % (name, r.stderr, want))
            check(took < 10, "%s: spacer check took %.1fs" % (name, took))
            r, took = run_spacer(["test", os.path.join(ROOT, "tests", "lua", "money_test.lua")],
                                 scripts)
            check(r.returncode != 0, "%s: spacer test exited 0" % name)
            check(want in r.stdout + r.stderr, "%s: spacer test said %r" % (name, r.stdout + r.stderr))
            check(took < 10, "%s: spacer test took %.1fs" % (name, took))
        # A finalizer would run with the limits off (Lua stops hooks in __gc): refused.
        text, line = with_runaway(good, "setmetatable({}, { __gc = function() while true do "
                                  "end end })", "top")
        with open(path, "w") as f:
            f.write(text)
        r, took = run_spacer(["check"], scripts)
        check(r.returncode != 0 and "pricing.lua:%d: setmetatable: __gc" % line in r.stderr,
              "a finalizer: %r" % r.stderr)
        with open(path, "w") as f:
            f.write(good)
        r, _ = run_spacer(["check"], scripts)
        eq(0, r.returncode, r.stderr)
    finally:
        shutil.rmtree(d)


@test
def start_up_with_a_runaway_fails_with_file_and_line():
    s = Server(workers=1, env=ENV)
    try:
        path = os.path.join(s.scripts, "pricing.lua")
        with open(path) as f:
            text, line = with_runaway(f.read(), RUNAWAYS[1][1], "top")
        with open(path, "w") as f:
            f.write(text)
        s.start(wait=False)
        try:
            rc = s.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not give up on the runaway: " + s.logs())
        check(rc != 0, "exit status 0")
        check("pricing.lua:%d: script instruction limit exceeded" % line in s.logs(), s.logs())
    finally:
        s.close()
