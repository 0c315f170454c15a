"""The HTTP/1.1 layer over raw sockets: strict framing, JSON errors, pipelining, keep-alive at
scale, timeouts, limits, and a client that leaves cancelling its request."""
import json
import os
import resource
import socket
import threading
import time

from harness import Server, check, eq, server, test


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock, buf=b""):
    """One response off sock (Content-Length framed): (status, headers, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response; got %r" % buf[:200])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed inside a body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def closed_after(sock, rest=b""):
    """The server closes the connection (EOF, not a timeout) and sends nothing more."""
    sock.settimeout(5)
    extra = rest
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            extra += chunk
    except ConnectionResetError:
        pass
    eq(b"", extra, "bytes after the error response")


def json_error(status, headers, body, want_status, code=None):
    eq(want_status, status, "status")
    check(headers.get("content-type", "").startswith("application/json"), headers)
    check(headers.get("x-request-id"), "no X-Request-Id: %r" % headers)
    doc = json.loads(body)
    check(isinstance(doc.get("error"), str) and doc["error"], doc)
    check(isinstance(doc.get("code"), str), doc)
    if code:
        eq(code, doc["code"], "code")
    return doc


def refused(port, data, want_status):
    c = connect(port)
    try:
        c.sendall(data)
        status, headers, body, rest = read_response(c)
        json_error(status, headers, body, want_status)
        eq("close", headers.get("connection"), "Connection header")
        closed_after(c, rest)
    finally:
        c.close()


FRAMING = [
    ("two different Content-Length",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}", 400),
    ("Content-Length and Transfer-Encoding",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding then Content-Length",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("unknown transfer coding",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("a coding before chunked",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     501),
    ("chunked twice",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("whitespace before the colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("bad chunk size",
     b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding in HTTP/1.0",
     b"POST /test/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bad request line", b"THIS IS NOT HTTP\r\n\r\n", 400),
]


@test
def ambiguous_framing_is_refused_and_the_connection_closed():
    s = server()
    for name, data, want in FRAMING:
        try:
            refused(s.port, data, want)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (name, e))
    eq(200, s.get("/healthz").status)


@test
def obs_fold_is_refused_however_the_bytes_arrive():
    s = server()
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"
    for cut in range(30, len(data) - 2):
        c = connect(s.port)
        try:
            c.sendall(data[:cut])
            time.sleep(0.01)
            c.sendall(data[cut:])
            status, headers, body, rest = read_response(c)
            json_error(status, headers, body, 400)
        finally:
            c.close()


@test
def chunked_body_and_split_headers_are_read():
    s = server()
    c = connect(s.port)
    try:
        req = (b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;ext=1\r\n:12\r\n1\r\n}\r\n0\r\n\r\n")
        for i in range(0, len(req), 7):
            c.sendall(req[i:i + 7])
            time.sleep(0.002)
        status, headers, body, _ = read_response(c)
        eq(200, status)
        eq({"body": {"a": 12}}, json.loads(body))
    finally:
        c.close()


@test
def three_pipelined_requests_are_answered_in_order():
    s = server()
    c = connect(s.port)
    try:
        c.sendall(b"GET /test/items/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /test/slow?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /test/items/3 HTTP/1.1\r\nHost: x\r\nX-Request-Id: third\r\n\r\n")
        rest = b""
        got = []
        for _ in range(3):
            status, headers, body, rest = read_response(c, rest)
            got.append((status, json.loads(body)))
        eq([(200, {"id": 1}), (200, {"slept": True}), (200, {"id": 3})], got)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(200, read_response(c, rest)[0])
    finally:
        c.close()


@test
def pipelined_requests_before_a_half_close_are_all_answered():
    s = server()
    c = connect(s.port)
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /test/items/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        c.shutdown(socket.SHUT_WR)
        status, _, _, rest = read_response(c)
        eq(200, status)
        status, _, body, rest = read_response(c, rest)
        eq((200, {"id": 2}), (status, json.loads(body)))
        closed_after(c, rest)
    finally:
        c.close()


@test
def head_and_http10_are_framed_right():
    s = server()
    c = connect(s.port)
    try:
        c.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while buf.count(b"\r\n\r\n") < 2 or not buf.endswith(b"}"):
            chunk = c.recv(65536)
            check(chunk, "closed early: %r" % buf)
            buf += chunk
        first, _, second = buf.partition(b"\r\n\r\n")
        check(first.startswith(b"HTTP/1.1 200"), first)
        check(second.startswith(b"HTTP/1.1 200"), "HEAD carried a body: %r" % buf[:300])
    finally:
        c.close()
    c = connect(s.port)
    try:
        c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, headers, body, rest = read_response(c)
        eq(200, status)
        eq("close", headers.get("connection"))
        closed_after(c, rest)
    finally:
        c.close()


@test
def oversized_body_is_json_413():
    s = server()
    c = connect(s.port)
    try:
        c.sendall(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (2 * 1024 * 1024))
        c.sendall(b"x" * 65536)
        status, headers, body, rest = read_response(c)
        json_error(status, headers, body, 413, "body_too_large")
    finally:
        c.close()
    c = connect(s.port)
    try:  # chunked: the limit applies as the chunks come
        c.sendall(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(40):
                c.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body, rest = read_response(c)
        json_error(status, headers, body, 413, "body_too_large")
    finally:
        c.close()


@test
def long_target_is_414_and_big_headers_431():
    s = server()
    refused(s.port, b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)
    refused(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431)
    refused(s.port, b"GET /healthz HTTP/1.1\r\n" +
            b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431)


@test
def slow_headers_are_cut_with_408():
    srv = Server(workers=1, env={"SPACER_HTTP_HEADER_TIMEOUT": "1"}).start()
    try:
        c = connect(srv.port)
        data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
        t0 = time.time()
        try:
            for byte in data:
                c.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body, rest = read_response(c)
        json_error(status, headers, body, 408, "request_timeout")
        check(time.time() - t0 < 5, "cut after %.1fs" % (time.time() - t0))
        c.close()
        eq(200, srv.get("/healthz").status)  # the worker goes on
    finally:
        srv.close()


@test
def connections_opened_one_after_another_alternate_between_workers():
    # A proxy's or a browser's keep-alive pool: connections opened in a row and kept. Each
    # goes to the worker holding fewer (the request id names the worker that answered);
    # a kernel hash would split them 10/10 only as often as not.
    srv = Server(workers=2).start()
    socks, per_worker = [], {}
    try:
        for _ in range(20):
            s = connect(srv.port)
            socks.append(s)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, _, _ = read_response(s)
            eq(200, status)
            worker = headers["x-request-id"].split("-")[1]
            per_worker[worker] = per_worker.get(worker, 0) + 1
        eq(2, len(per_worker), "both workers took connections: %r" % per_worker)
        check(abs(per_worker["0"] - per_worker["1"]) <= 2, "20 connections split %r" % per_worker)
    finally:
        for s in socks:
            s.close()
        srv.close()


@test
def ten_thousand_idle_keepalive_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 10000 + 200
    check(hard >= want, "this machine's open-files hard limit is %d, below %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = Server(workers=2).start()
    socks = []
    try:
        for pid in srv.worker_pids():
            with open("/proc/%d/limits" % pid) as f:
                line = [l for l in f if l.startswith("Max open files")][0].split()
            eq(line[3], line[4], "worker %d open-files soft limit raised to the hard one" % pid)
        first = connect(srv.port)
        first.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(200, read_response(first)[0])
        socks.append(first)
        for _ in range(10000 - 1):
            socks.append(connect(srv.port, timeout=30))
        # every one of them is still served on its connection
        for c in socks[::500]:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(200, read_response(c)[0])
        first.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(200, read_response(first)[0])
        eq(200, srv.get("/healthz").status)
    finally:
        for c in socks:
            c.close()
        srv.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@test
def connection_cap_answers_json_503_and_logs_it():
    srv = Server(workers=1, env={"SPACER_HTTP_MAX_CONNECTIONS": "3"}).start()
    socks = []
    try:
        for _ in range(3):
            socks.append(connect(srv.port))
        time.sleep(0.2)
        c = connect(srv.port)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, rest = read_response(c)
        json_error(status, headers, body, 503, "overloaded")
        c.close()
        time.sleep(0.2)
        check("connection cap reached" in srv.logs(), srv.logs())
        socks[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(200, read_response(socks[0])[0])
    finally:
        for c in socks:
            c.close()
        srv.close()


def login_request(email):
    body = json.dumps({"email": email, "password": "not-the-password"}).encode()
    return (b"POST /api/users/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def timed_login(port, email):
    c = connect(port, timeout=60)
    try:
        t0 = time.time()
        c.sendall(login_request(email))
        status = read_response(c)[0]
        return status, time.time() - t0
    finally:
        c.close()


@test
def a_client_gone_during_login_frees_its_hashing_slot():
    # One hashing thread; an unknown email still spends a full cost-12 verification.
    srv = Server(workers=1, env={"SPACER_AUTH_HASH_THREADS": "1",
                                 "SPACER_AUTH_BCRYPT_COST": "12",
                                 "SPACER_LOGIN_MAX_FAILURES_PER_IP": "1000",
                                 "SPACER_LOG_LEVEL": "info"}).start()
    tag = "%x" % int(time.time() * 1000)  # fresh emails: failures are counted per email
    try:
        status, one = timed_login(srv.port, "warm-%s@example.com" % tag)
        eq(401, status)
        status, one = timed_login(srv.port, "alone-%s@example.com" % tag)
        eq(401, status)
        # Four logins queue behind each other on the one thread; their clients leave.
        gone = []
        for i in range(4):
            c = connect(srv.port)
            c.sendall(login_request("gone%d-%s@example.com" % (i, tag)))
            gone.append(c)
        time.sleep(min(one / 2, 0.5))
        for c in gone:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()
        status, waited = timed_login(srv.port, "next-%s@example.com" % tag)
        eq(401, status)
        # Without cancelling: the four hashes, then ours (5x). With it: at most the one
        # already on the thread, then ours (2x).
        check(waited < 3.5 * one, "next login waited %.2fs; one login takes %.2fs" % (waited, one))
        time.sleep(0.3)
        cancelled = [json.loads(l) for l in open(srv.log_path).read().splitlines()
                     if '"access"' in l and '"status":499' in l]
        eq(4, len(cancelled), "cancelled requests in the access log")
        check("client gone" in open(srv.log_path).read(), srv.logs())
    finally:
        srv.close()


def sched_policy(pid, tid):
    # /proc/PID/task/TID/stat: the 41st field is the scheduling policy (after the name in
    # parentheses, which may hold spaces); 0 SCHED_OTHER, 5 SCHED_IDLE.
    stat = open("/proc/%d/task/%d/stat" % (pid, tid)).read()
    return int(stat[stat.rindex(")") + 2:].split()[38])


@test
def hashing_threads_run_only_on_time_requests_leave():
    # The event loop stays in the normal class; each hashing thread is in the idle one, so a
    # loop that wakes takes the core from a hash at once.
    srv = Server(workers=1, env={"SPACER_AUTH_HASH_THREADS": "3"}).start()
    try:
        (worker,) = srv.worker_pids()
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % worker))
        policies = [sched_policy(worker, t) for t in tids]
        eq(0, sched_policy(worker, worker), "the loop's policy")
        eq(3, policies.count(5), "threads in SCHED_IDLE: %r" % policies)
        eq(200, srv.get("/healthz").status)
    finally:
        srv.close()


@test
def a_client_gone_during_queries_frees_the_pool():
    # One database connection: a slow query holds it, two more wait for it. Their clients
    # leave: the waiting queries are dropped, the running one's result is discarded. (Without
    # pipelining: a statement already sent behind it cannot be taken back and still runs;
    # tests/api/test_db.py covers clients gone mid-pipeline.)
    from harness import TEST_ROUTES
    srv = Server(workers=1, extra_routes=TEST_ROUTES,
                 env={"SPACER_DATABASE_POOL_SIZE": "1",
                      "SPACER_DATABASE_PIPELINE_DEPTH": "1"}).start()
    try:
        eq(200, srv.get("/test/slow?s=0").status)
        gone = []
        for _ in range(3):
            c = connect(srv.port)
            c.sendall(b"GET /test/slow?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            gone.append(c)
            time.sleep(0.05)
        time.sleep(0.2)
        for c in gone:
            c.close()
        t0 = time.time()
        r = srv.get("/test/slow?s=0")
        waited = time.time() - t0
        eq(200, r.status)
        # the running query's second, not three of them
        check(waited < 1.9, "waited %.2fs for the pool" % waited)
        time.sleep(0.3)
        lines = [json.loads(l) for l in open(srv.log_path).read().splitlines()
                 if '"access"' in l and '"status":499' in l]
        eq(3, len(lines), "cancelled requests in the access log")
        eq(200, srv.get("/test/slow?s=0").status)
    finally:
        srv.close()


@test
def keepalive_limits_idle_cap_request_cap_and_timeout():
    srv = Server(workers=1, env={"SPACER_HTTP_MAX_IDLE_CONNECTIONS": "2",
                                 "SPACER_HTTP_KEEPALIVE_REQUESTS": "2",
                                 "SPACER_HTTP_KEEPALIVE_TIMEOUT": "1"}).start()
    try:
        # requests per connection: the second answer closes
        c = connect(srv.port)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _, rest = read_response(c)
        eq((200, None), (status, headers.get("connection")))
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _, rest = read_response(c, rest)
        eq((200, "close"), (status, headers.get("connection")))
        closed_after(c, rest)
        c.close()
        # idle cap: a third idle connection closes the longest idle one
        a, b = connect(srv.port), connect(srv.port)
        time.sleep(0.2)
        third = connect(srv.port)
        time.sleep(0.2)
        closed_after(a)
        for s in (b, third):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(200, read_response(s)[0])
        # idle timeout: a kept-alive connection left alone is closed after a second
        t0 = time.time()
        closed_after(third)
        check(0.5 < time.time() - t0 < 4, "closed after %.1fs" % (time.time() - t0))
        for s in (a, b, third):
            s.close()
    finally:
        srv.close()
