"""The access log: one JSON line per request, buffered per worker ([http] access_log_buffer,
access_log_flush) as shipped, or written at once (access_log_buffer = 0). Whichever, every
line arrives whole: after the flush interval under load, at once on a quiet server, after a
reload, after a SIGTERM drain, and never torn, even through a pipe."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import BIN, Server, TEST_ROUTES, check, eq, test

FIELDS = {"type", "time", "request_id", "method", "path", "route", "status", "bytes",
          "duration_us", "worker"}


def access_lines(text):
    """Every access line of text, parsed; a line that does not parse fails the test."""
    out = []
    for line in text.splitlines():
        if '"type":"access"' not in line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError("a torn access line: %r" % line[:300])
    return out


def wait_for_id(srv, rid, timeout):
    """Seconds until the access line of request rid is in the log, or None."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(l["request_id"] == rid for l in access_lines(srv.logs_all())):
            return time.time() - t0
        time.sleep(0.01)
    return None


def get(port, path, rid, sock=None):
    """GET path with X-Request-Id rid on a keep-alive socket (made when None); the socket."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n" % (path, rid)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        check(chunk, "connection closed before the answer to %s" % rid)
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(65536)
    return s


class Flood:
    """Keeps a server busy: n keep-alive connections asking /healthz back to back."""

    def __init__(self, port, n=4):
        self.port, self.n, self.stop, self.count = port, n, threading.Event(), 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]

    def run(self, i):
        s = None
        k = 0
        while not self.stop.is_set():
            s = get(self.port, "/healthz", "flood-%d-%d" % (i, k), s)
            k += 1
            self.count += 1
        s.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)


@test
def a_quiet_servers_lines_appear_at_once():
    # As shipped (64K buffer, 1 s flush): a worker with nothing else to do writes at once.
    srv = Server(workers=1).start()
    try:
        get(srv.port, "/test-not-here", "quiet-1").close()
        waited = wait_for_id(srv, "quiet-1", 5)
        check(waited is not None, "no access line for quiet-1:\n" + srv.logs())
        line = [l for l in access_lines(srv.logs_all()) if l["request_id"] == "quiet-1"][0]
        eq(FIELDS, set(line))
        eq(404, line["status"])
        eq("/test-not-here", line["path"])
    finally:
        srv.close()


@test
def under_load_lines_appear_within_the_flush_interval():
    srv = Server(workers=1, env={"SPACER_HTTP_ACCESS_LOG_FLUSH": "300ms"}).start()
    try:
        with Flood(srv.port) as flood:
            time.sleep(0.5)
            get(srv.port, "/healthz", "marked-1").close()
            waited = wait_for_id(srv, "marked-1", 10)
            busy = not flood.stop.is_set() and all(t.is_alive() for t in flood.threads)
        check(waited is not None, "no access line for marked-1:\n" + srv.logs())
        check(busy, "the load stopped early")
        check(flood.count > 100, "only %d requests of load" % flood.count)
        # the interval, with room for a loaded machine; the load never paused meanwhile
        check(waited < 3, "the line of marked-1 took %.2fs" % waited)
    finally:
        srv.close()


@test
def every_line_is_written_by_a_sigterm_drain():
    # A flush interval longer than the test: only the drain can write the last lines. The slow
    # request is still running when SIGTERM arrives; its line is written as it ends.
    srv = Server(workers=2, extra_routes=TEST_ROUTES,
                 env={"SPACER_HTTP_ACCESS_LOG_FLUSH": "60s",
                      "SPACER_HTTP_ACCESS_LOG_BUFFER": "1M"}).start()
    try:
        sent = []
        socks = [None] * 4
        for k in range(400):
            rid = "drain-%d" % k
            socks[k % 4] = get(srv.port, "/healthz", rid, socks[k % 4])
            sent.append(rid)
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        slow.sendall(b"GET /test/slow?s=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: drain-slow\r\n\r\n")
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        answer = slow.recv(65536)
        check(answer.startswith(b"HTTP/1.1 200"), "the slow request: %r" % answer[:100])
        eq(0, srv.stop())
        for s in socks:
            s.close()
        slow.close()
        ids = [l["request_id"] for l in access_lines(srv.logs_all())]
        missing = [r for r in sent + ["drain-slow"] if r not in ids]
        eq([], missing[:10], "access lines missing after the drain (%d)" % len(missing))
    finally:
        srv.close()


@test
def lines_before_and_after_a_reload_are_all_written():
    srv = Server(workers=2, env={"SPACER_HTTP_ACCESS_LOG_FLUSH": "60s"}).start()
    try:
        s = None
        for k in range(100):
            s = get(srv.port, "/healthz", "before-%d" % k, s)
        r = subprocess.run([BIN, "reload"], cwd=srv.cwd, env=srv.env, capture_output=True,
                           text=True, timeout=30)
        eq(0, r.returncode, r.stdout + r.stderr)
        for k in range(100):
            s = get(srv.port, "/healthz", "after-%d" % k, s)
        s.close()
        for k in (99,):
            check(wait_for_id(srv, "after-%d" % k, 10) is not None, "no line for after-99")
        ids = set(l["request_id"] for l in access_lines(srv.logs_all()))
        missing = [r for r in ["before-%d" % k for k in range(100)] +
                   ["after-%d" % k for k in range(100)] if r not in ids]
        eq([], missing, "access lines missing around the reload")
    finally:
        srv.close()


@test
def lines_are_never_torn_through_a_pipe():
    # Two workers with small buffers and 2 KB lines, standard error a pipe (as under a log
    # collector): each write holds whole lines, never more than a pipe keeps whole.
    srv = Server(workers=2, env={"SPACER_HTTP_ACCESS_LOG_BUFFER": "16K",
                                 "SPACER_LOG_LEVEL": "info"})
    args = [BIN, "serve"]
    proc = subprocess.Popen(args, cwd=srv.cwd, env=srv.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                get(srv.port, "/healthz", "up").close()
                break
            except OSError:
                time.sleep(0.05)
        long_path = "/nothing/" + "x" * 2000

        def load(i):
            s = None
            for k in range(150):
                s = get(srv.port, long_path, "torn-%d-%d" % (i, k), s)
            s.close()

        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        proc.send_signal(signal.SIGTERM)
        eq(0, proc.wait(30))
        reader.join(10)
        text = b"".join(lines).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    raise AssertionError("a torn line: %r" % line[:300])
        ids = set(l["request_id"] for l in access_lines(text))
        missing = ["torn-%d-%d" % (i, k) for i in range(4) for k in range(150)
                   if "torn-%d-%d" % (i, k) not in ids]
        eq([], missing[:10], "access lines missing (%d)" % len(missing))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        srv.close()


@test
def unbuffered_lines_are_written_at_once():
    srv = Server(workers=1, env={"SPACER_HTTP_ACCESS_LOG_BUFFER": "0"}).start()
    try:
        with Flood(srv.port, n=2):
            time.sleep(0.3)
            get(srv.port, "/healthz", "unbuffered-1").close()
            waited = wait_for_id(srv, "unbuffered-1", 10)
        check(waited is not None, "no access line for unbuffered-1:\n" + srv.logs())
        line = [l for l in access_lines(srv.logs_all()) if l["request_id"] == "unbuffered-1"][0]
        eq(FIELDS, set(line))
        eq(200, line["status"])
        eq("/healthz", line["route"])
    finally:
        srv.close()


@test
def the_access_log_settings_are_checked():
    srv = Server(workers=1, env={"SPACER_HTTP_ACCESS_LOG_FLUSH": "soon"})
    try:
        srv.start(wait=False)
        check(srv.proc.wait(15) != 0, "started with a bad access_log_flush")
        check("http.access_log_flush must be a duration like 250ms or 1s" in srv.logs_all(),
              srv.logs_all())
    finally:
        srv.close()
