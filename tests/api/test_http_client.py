"""spacer.http: scripts call local HTTP and HTTPS servers through the real worker loop.

Round trips, every failure a script must see as `nil, err` (timeout, refused, too large, too
many calls, TLS), certificates checked by default and trusted through ca_file, a call at load
time refused, and the same API inside `spacer test`. The worker serves throughout."""
import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from harness import BIN, ROOT, Server, check, eq, free_port, test

ROUTES = r'''
spacer.post("/test/http", function(req)
  local res, err = spacer.http.request(req.body)
  if not res then return 200, { error = err } end
  return 200, { status = res.status, headers = res.headers, body = res.body }
end)
spacer.post("/test/http-many", function(req)
  local out, left = {}, { spacer.http.calls_left() }
  for i = 1, req.body.n do
    local res, err = spacer.http.request{ url = req.body.url }
    out[i] = res and res.status or err
    left[#left + 1] = spacer.http.calls_left()
  end
  return 200, { results = out, left = left }
end)
spacer.post("/test/http-bad-header", function(req)
  spacer.http.request{ url = req.body.url, headers = { ["X-A"] = "b\r\nX-Injected: 1" } }
  return 200, {}
end)
'''


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        if self.path.startswith("/big-headers"):
            self.reply(200, b"{}", extra=[("X-Filler-%d" % i, "z" * 1000) for i in range(100)])
        elif self.path.startswith("/big"):
            self.reply(200, b"x" * (200 * 1024), "text/plain")
        elif self.path.startswith("/chunked-big"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 8192
            try:
                for _ in range(40):  # 320K in all, well past the 64K cap
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client gave up at its cap
        else:
            echo = {"method": self.command, "path": self.path, "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.reply(201 if self.path.startswith("/created") else 200, json.dumps(echo).encode(),
                       extra=[("X-Multi", "a"), ("X-Multi", "b")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Upstream:
    """A threaded HTTP (or HTTPS) server on 127.0.0.1 (or ::1), stopped by close()."""

    def __init__(self, cert=None, v6=False):
        if v6:
            self.httpd = Server6(("::1", 0), Handler)
        else:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert[0], cert[1])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_cert(dir, name, san):
    key, crt = os.path.join(dir, name + ".key"), os.path.join(dir, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=" + name, "-addext",
                    "subjectAltName=" + san], check=True, capture_output=True, timeout=60)
    return crt, key


class World:
    """The upstream servers and two spacers: default trust, and one trusting the test CA."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="spacer-httpc-")
        self.good = make_cert(self.dir, "local", "IP:127.0.0.1,DNS:localhost")
        self.other = make_cert(self.dir, "other", "DNS:other.example")
        self.ca = os.path.join(self.dir, "ca.pem")
        with open(self.ca, "w") as f:
            for c in (self.good, self.other):
                with open(c[0]) as g:
                    f.write(g.read())
        self.plain = Upstream()
        self.tls = Upstream(self.good)
        self.tls_other = Upstream(self.other)
        # Accepts connections in the kernel and never answers: a provider that hangs.
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(16)
        # A port with nothing listening.
        self.closed_port = free_port()
        # Accepts and hangs up at once, before any byte.
        self.closer = socket.socket()
        self.closer.bind(("127.0.0.1", 0))
        self.closer.listen(16)
        self.closer_port = self.closer.getsockname()[1]
        threading.Thread(target=self.hang_up, daemon=True).start()
        env = {"SPACER_HTTP_CLIENT_MAX_RESPONSE_SIZE": "64K",
               "SPACER_HTTP_CLIENT_MAX_CALLS_PER_REQUEST": "3"}
        self.s = Server(workers=1, extra_routes=ROUTES, env=env).start()
        self.trusting = Server(workers=1, extra_routes=ROUTES,
                               env=dict(env, SPACER_HTTP_CLIENT_CA_FILE=self.ca)).start()
        self.pids = self.s.worker_pids()

    def hang_up(self):
        while True:
            try:
                c, _ = self.closer.accept()
            except OSError:
                return  # closed at the end
            c.close()

    def call(self, opts, server=None, timeout=30):
        r = (server or self.s).post("/test/http", opts, timeout=timeout)
        eq(200, r.status, "fixture route: %r" % r)
        return r.json

    def url(self, path, port=None, scheme="http", host="127.0.0.1"):
        return "%s://%s:%d%s" % (scheme, host, port or self.plain.port, path)

    def close(self):
        for x in (self.s, self.trusting):
            x.close()
        for u in (self.plain, self.tls, self.tls_other):
            u.close()
        self.silent.close()
        self.closer.close()


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def starts_with(prefix, err):
    check(isinstance(err, str) and err.startswith(prefix),
          "expected an error starting with %r, got %r" % (prefix, err))


@test
def get_round_trip_status_headers_body():
    w = world()
    r = w.call({"url": w.url("/created/x?a=1&b=two"), "headers": {"X-Token": "abc", "X-N": 5}})
    eq(201, r["status"])
    eq("application/json", r["headers"]["content-type"])
    eq("a, b", r["headers"]["x-multi"], "a repeated header is joined")
    echo = json.loads(r["body"])
    eq("GET", echo["method"])
    eq("/created/x?a=1&b=two", echo["path"])
    eq("abc", echo["headers"]["x-token"])
    eq("5", echo["headers"]["x-n"])
    eq("127.0.0.1:%d" % w.plain.port, echo["headers"]["host"])
    check(echo["headers"]["user-agent"].startswith("Spacer/"), "default user agent")


@test
def ipv6_literals():
    w = world()
    up = Upstream(v6=True)
    try:
        r = w.call({"url": "http://[::1]:%d/v6" % up.port})
        eq(200, r["status"])
        eq("[::1]:%d" % up.port, json.loads(r["body"])["headers"]["host"])
    finally:
        up.close()


@test
def post_put_patch_delete_send_their_bodies():
    w = world()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        payload = json.dumps({"amount": 1500, "method": method})
        r = w.call({"method": method, "url": w.url("/pay"), "body": payload,
                    "headers": {"Content-Type": "application/json", "Content-Length": "1"}})
        eq(200, r["status"], method)
        echo = json.loads(r["body"])
        eq(method, echo["method"])
        eq(payload, echo["body"], method + " body")
        eq(str(len(payload)), echo["headers"]["content-length"], "the client frames the body")
        eq("application/json", echo["headers"]["content-type"])
    r = w.call({"method": "HEAD", "url": w.url("/head")})
    eq(200, r["status"])
    eq("", r["body"])


@test
def a_silent_server_is_a_timeout_within_the_limit():
    w = world()
    t0 = time.time()
    r = w.call({"url": w.url("/", w.silent.getsockname()[1]), "timeout": 1})
    elapsed = time.time() - t0
    starts_with("timeout", r.get("error"))
    check(0.9 <= elapsed < 5, "the call took %.1f s with timeout = 1" % elapsed)


@test
def the_worker_serves_while_a_call_hangs():
    w = world()  # one worker: whatever answers shares the loop with the hung call
    out = {}

    def hang():
        out["r"] = w.call({"url": w.url("/", w.silent.getsockname()[1]), "timeout": 3})

    t = threading.Thread(target=hang)
    t.start()
    time.sleep(0.3)
    for _ in range(5):
        t0 = time.time()
        eq(200, w.s.get("/healthz").status)
        check(time.time() - t0 < 1.0, "healthz waited on the hung call")
        eq(201, w.call({"url": w.url("/created")})["status"])
    t.join(10)
    starts_with("timeout", out["r"].get("error"))


@test
def refused_connections_say_so():
    w = world()
    starts_with("connection refused", w.call({"url": w.url("/", w.closed_port)}).get("error"))
    starts_with("connection refused",
                w.call({"url": w.url("/", w.closed_port, "https")}).get("error"))


@test
def a_server_that_hangs_up_is_an_error():
    w = world()
    starts_with("error", w.call({"url": w.url("/", w.closer_port)}).get("error"))
    err = w.call({"url": w.url("/", w.closer_port, "https")}).get("error")
    starts_with("tls", err)
    check("handshake" in err, err)


@test
def oversized_responses_are_too_large():
    w = world()
    starts_with("too large", w.call({"url": w.url("/big")}).get("error"))
    starts_with("too large", w.call({"url": w.url("/chunked-big")}).get("error"))
    err = w.call({"url": w.url("/big-headers")}).get("error")
    starts_with("error", err)
    check("headers over 65536 bytes" in err, err)
    eq(200, w.call({"url": w.url("/small")})["status"], "the next call is fine")


@test
def calls_per_request_are_capped():
    w = world()
    r = w.s.post("/test/http-many", {"n": 5, "url": w.url("/")})
    eq(200, r.status)
    res = r.json["results"]
    eq([200, 200, 200], res[:3])
    for e in res[3:]:
        starts_with("too many requests", e)
    eq([3, 2, 1, 0, 0, 0], r.json["left"], "calls_left before and after each call")
    # the cap is per request: the next request may call again
    eq([200], w.s.post("/test/http-many", {"n": 1, "url": w.url("/")}).json["results"])


@test
def bad_urls_and_headers():
    w = world()
    for url in ("ftp://127.0.0.1/x", "not a url", "http:///nohost", "http://user:pw@127.0.0.1/",
                "http://127.0.0.1:99999/", "http://127.0.0.1/a b", "http://127.0.0.1/\u0000x"):
        starts_with("invalid url", w.call({"url": url}).get("error"))
    r = w.s.post("/test/http-bad-header", {"url": w.url("/")})
    eq(500, r.status, "a header with a line break is a script error")


@test
def https_needs_a_trusted_certificate():
    w = world()
    err = w.call({"url": w.url("/", w.tls.port, "https")}).get("error")
    starts_with("tls", err)
    check("certificate verify failed" in err, err)


@test
def https_with_ca_file_succeeds_and_checks_the_name():
    w = world()
    r = w.call({"method": "POST", "url": w.url("/created", w.tls.port, "https"), "body": "hi"},
               server=w.trusting)
    eq(201, r["status"])
    eq("hi", json.loads(r["body"])["body"])
    # by name: resolved without blocking, SNI sent, the name checked
    r = w.call({"url": w.url("/", w.tls.port, "https", "localhost")}, server=w.trusting)
    eq(200, r["status"])
    # a trusted certificate for another name is refused
    err = w.call({"url": w.url("/", w.tls_other.port, "https")}, server=w.trusting).get("error")
    starts_with("tls", err)
    check("mismatch" in err, err)
    # TLS to a server that speaks plain HTTP
    starts_with("tls", w.call({"url": w.url("/", w.plain.port, "https")}).get("error"))


@test
def no_calls_while_scripts_load():
    s = Server(workers=1, extra_routes='spacer.http.request{ url = "http://127.0.0.1:1/" }\n')
    try:
        try:
            s.start()
            raise AssertionError("the server started with a call at load time")
        except AssertionError as e:
            check("no network calls while scripts load" in str(e), str(e)[-2000:])
    finally:
        s.close()


@test
def spacer_test_runs_calls_too():
    w = world()
    path = os.path.join(w.dir, "call_test.lua")
    with open(path, "w") as f:
        f.write('test("calls out", function()\n'
                '  local res, err = spacer.http.request{ method = "POST", url = "%s", body = "x" }\n'
                '  assert_nil(err)\n'
                '  assert_eq(201, res.status)\n'
                '  assert_eq("x", spacer.json.decode(res.body).body)\n'
                '  local r2, err2 = spacer.http.request{ url = "%s", timeout = 0.5 }\n'
                '  assert_nil(r2)\n'
                '  assert_true(err2:find("^timeout") ~= nil, err2)\n'
                '  -- a peer that hangs up (a write to it would raise SIGPIPE)\n'
                '  local r3, err3 = spacer.http.request{ url = "%s" }\n'
                '  assert_nil(r3)\n'
                '  assert_true(err3:find("^tls") ~= nil, err3)\n'
                'end)\n' % (w.url("/created"), w.url("/", w.silent.getsockname()[1]),
                            w.url("/", w.closer_port, "https")))
    r = subprocess.run([BIN, "test", path], cwd=ROOT, capture_output=True, text=True, timeout=60)
    check("1 passed, 0 failed" in r.stdout, r.stdout + r.stderr)


def metric(server, name):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


@test
def the_worker_never_restarted():
    w = world()
    try:
        # what the tests above did, as the operators see it
        calls = 'spacer_http_client_calls_total{outcome="%s"}'
        check(metric(w.s, calls % "ok") >= 10, "ok calls")
        for outcome, n in (("timeout", 2), ("connection_refused", 2), ("too_large", 2),
                           ("tls", 2)):
            check(metric(w.s, calls % outcome) >= n, "%s calls counted" % outcome)
        eq(200, w.s.get("/healthz").status)
        eq(w.pids, w.s.worker_pids(), "worker pids")
        check("killed by signal" not in w.s.logs(), w.s.logs())
    finally:
        global _world
        w.close()
        _world = None
