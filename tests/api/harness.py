"""harness.py: the real spacer binary on a free loopback port, and a small HTTP client.

Tests import `server()` (one shared server for the run), `Server` (their own, for tests
that stop or break it), `test` (registers a test function) and the assertion helpers.
Standard library only: the interpreter is Debian's /usr/bin/python3.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPACER_BIN", os.path.join(ROOT, "spacer"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

TESTS = []


def test(fn):
    """Registers a test; it runs in file order."""
    TESTS.append(fn)
    return fn


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # lower-case names
        self.raw = raw
        self.text = raw.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%d %s>" % (self.status, self.text[:300])


# The sanitizer build (make test SANITIZE=1): workers leave through exit(), so LeakSanitizer
# checks them as well as the master; any report in a server's log fails the test that ran it.
SANITIZED = b"__asan_init" in open(BIN, "rb").read() if os.path.exists(BIN) else False
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(text):
    """The first sanitizer report in text (up to 3000 characters), or None."""
    at = min((text.find(m) for m in SANITIZER_MARKS if m in text), default=-1)
    if at < 0:
        return None
    start = text.rfind("\n", 0, at) + 1
    return text[start:start + 3000]


class Server:
    """A spacer server with its own copy of scripts/ (so tests may add routes or edit rules)."""

    def __init__(self, workers=2, env=None, extra_routes=None, conf=None, cwd=None):
        self.port = free_port()
        self.cwd = cwd or ROOT  # the working directory: .env and var/ are read there
        self.dir = tempfile.mkdtemp(prefix="spacer-api-")
        self.scripts = os.path.join(self.dir, "scripts")
        shutil.copytree(os.path.join(ROOT, "scripts"), self.scripts)
        if extra_routes:
            with open(os.path.join(self.scripts, "routes", "test_fixture.lua"), "w") as f:
                f.write(extra_routes)
            with open(os.path.join(self.scripts, "init.lua"), "a") as f:
                f.write('\nrequire("routes.test_fixture")\n')
        self.env = dict(os.environ)
        self.env.update({
            "SPACER_SERVER_PORT": str(self.port),
            "SPACER_SERVER_WORKERS": str(workers),
            "SPACER_SERVER_PID_FILE": os.path.join(self.dir, "spacer.pid"),
            "SPACER_SCRIPTS_DIR": self.scripts,
            "SPACER_SCRIPTS_PLUGINS": os.path.join(ROOT, "plugins"),
            "SPACER_SERVER_SHUTDOWN_TIMEOUT": "10",
        })
        self.env.update(env or {})
        self.conf = conf
        self.proc = None
        self.log_path = os.path.join(self.dir, "server.log")

    def start(self, wait=True):
        args = [BIN]
        if self.conf:
            path = os.path.join(self.dir, "spacer.conf")
            with open(path, "w") as f:
                f.write(self.conf)
            args += ["-c", path]
        args.append("serve")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=self.cwd, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                if self.request("GET", "/healthz", timeout=1).status == 200:
                    self.wait_all_workers(deadline)
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready:\n" + self.logs())

    def wait_all_workers(self, deadline):
        """Until every worker has answered a /healthz (seen in the access log): a test that
        edits the scripts right after start must not race a worker still loading them."""
        want = int(self.env.get("SPACER_SERVER_WORKERS", "1"))
        if self.env.get("SPACER_HTTP_ACCESS_LOG", "on").lower() in ("off", "no", "false", "0"):
            return
        while time.time() < deadline:
            seen = set()
            for line in self.logs_all().splitlines():
                if line.startswith('{"type":"access"') and '"path":"/healthz"' in line:
                    try:
                        seen.add(json.loads(line)["worker"])
                    except (ValueError, KeyError):
                        pass
            if len(seen) >= want:
                return
            try:
                self.request("GET", "/healthz", timeout=1)
            except OSError:
                pass
            time.sleep(0.02)

    def logs_all(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within %ss" % timeout)
        finally:
            self.log.close()

    def close(self):
        try:
            self.stop()
            report = sanitizer_report(self.logs_all())
            check(report is None, "sanitizer report in the server's log:\n%s" % report)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs_all(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=None, raw=None,
                timeout=10, conn=None):
        """body: a JSON-able value; raw: bytes sent as is."""
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = "Bearer " + token
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw_body = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, raw_body)
        finally:
            if own:
                c.close()

    # Shorthands
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def login(self, email, password):
        r = self.post("/api/users/login", {"email": email, "password": password})
        assert r.status == 200, "login %s: %r" % (email, r)
        return r.json["token"]


# Routes only the tests add: they exercise the engine with scripts an integrator could write.
TEST_ROUTES = r'''
spacer.get("/test/raise", function() error("boom from a test route") end)
spacer.get("/test/http-error", function()
  spacer.error(409, "already there", { code = "taken", fields = { email = "is taken" } })
end)
spacer.get("/test/slow", function(req)
  spacer.db.one("SELECT pg_sleep($1::float8) AS s", tonumber(req.query.s or "1"))
  return 200, { slept = true }
end)
spacer.post("/test/echo", function(req) return 200, { body = req.body or spacer.json.null } end)
spacer.get("/test/loop", function() while true do end end)
spacer.get("/test/pcall-loop", function()
  for _ = 1, 1000 do pcall(function() while true do end end) end
  return 200, { escaped = true }
end)
spacer.get("/test/alloc", function()
  local t = {}
  local i = 0
  while true do i = i + 1; t[i] = string.rep("x", 1024) .. i end
end)
spacer.get("/test/items/{id}", function(req) return 200, { id = req.params.id } end)
-- Every field of req as a handler sees it, then the keys pairs(req) lists.
spacer.route({ "GET", "POST" }, "/test/req/{id}/{name:str}", function(req)
  local seen = {
    id = req.id, method = req.method, path = req.path, route = req.route, compat = req.compat,
    params = req.params, query = req.query, headers = req.headers, ip = req.ip,
    body = req.body or spacer.json.null, again = rawequal(req.headers, req.headers),
  }
  req.query = "replaced"
  seen.replaced = req.query
  local keys = {}
  for k in pairs(req) do keys[#keys + 1] = k end
  table.sort(keys)
  seen.keys = keys
  return 200, seen
end)
spacer.get("/test/types", function()
  return 200, spacer.db.one([[SELECT 1::int2 AS i2, 2147483647::int4 AS i4,
    9007199254740993::int8 AS i8, 12.50::numeric AS n, 1.5::float8 AS f, true AS b,
    'x'::text AS t, NULL::text AS nul, '{"a":[1,2]}'::jsonb AS j, ARRAY['a','b c'] AS arr,
    ARRAY[1,2]::int8[] AS iarr, '2026-12-01 10:00:00+03'::timestamptz AS ts]])
end)
'''

_shared = None


def server():
    """The run's shared server (2 workers, test routes), started on first use."""
    global _shared
    if _shared is None:
        _shared = Server(workers=2, extra_routes=TEST_ROUTES).start()
    return _shared


def shutdown_shared():
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


def eq(expected, actual, what=""):
    if expected != actual:
        raise AssertionError("%sexpected %r, got %r" % (what + ": " if what else "", expected, actual))


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def error_body(r, status, code=None):
    """An API error: the status, a JSON body with error and code (and the expected code)."""
    eq(status, r.status, "status of %r" % r)
    check(isinstance(r.json, dict), "error body is not JSON: %r" % r)
    check(isinstance(r.json.get("error"), str) and r.json["error"], "no error message: %r" % r)
    check(isinstance(r.json.get("code"), str), "no code: %r" % r)
    if code is not None:
        eq(code, r.json["code"], "code")
    check(r.header("x-request-id"), "no X-Request-Id")
    return r.json
