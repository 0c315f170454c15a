"""The engine: routes in Lua, errors, limits, request ids, CORS, shutdown, worker restarts."""
import json
import os
import re
import shutil
import signal
import socket
import threading
import time

from harness import SANITIZED, Server, TEST_ROUTES, check, eq, error_body, server, test


@test
def welcome_and_health():
    s = server()
    r = s.get("/")
    eq(200, r.status)
    eq({"message": "Welcome to the Spacer API"}, r.json)
    check(r.header("content-type").startswith("application/json"), r.header("content-type"))
    r = s.get("/healthz")
    eq(200, r.status)
    eq("ok", r.json["status"])


@test
def readyz_answers_when_database_is_up():
    r = server().get("/readyz")
    eq(200, r.status)
    eq("ready", r.json["status"])


@test
def unknown_path_is_json_404():
    error_body(server().get("/no/such/thing"), 404, "not_found")


@test
def typed_id_parameter():
    s = server()
    eq({"id": 42}, s.get("/test/items/42").json)
    error_body(s.get("/test/items/abc"), 404)
    error_body(s.get("/test/items/0"), 404)
    error_body(s.get("/test/items/-3"), 404)


@test
def request_table_fields():
    """req as the docs describe it, whichever fields a handler reads and in which order."""
    s = server()
    r = s.get("/test/req/42/abc?a=1&b=x%20y", headers={"X-Request-Id": "req-fields-1",
                                                       "X-Custom": "Value"})
    eq(200, r.status)
    j = r.json
    eq("req-fields-1", j["id"])
    eq("GET", j["method"])
    eq("/test/req/42/abc", j["path"])
    eq("/test/req/{id}/{name:str}", j["route"])
    eq(False, j["compat"])
    eq({"id": 42, "name": "abc"}, j["params"])
    eq({"a": "1", "b": "x y"}, j["query"])
    eq("Value", j["headers"]["x-custom"])
    eq("req-fields-1", j["headers"]["x-request-id"])
    eq("127.0.0.1", j["ip"])
    eq(None, j["body"])
    eq(True, j["again"])
    eq("replaced", j["replaced"])
    eq(["compat", "headers", "id", "ip", "method", "params", "path", "query", "route"],
       j["keys"])
    r = s.post("/test/req/7/x", {"k": [1]})
    eq(200, r.status)
    eq({"k": [1]}, r.json["body"])
    eq("POST", r.json["method"])
    eq(["body", "compat", "headers", "id", "ip", "method", "params", "path", "query", "route"],
       r.json["keys"])


@test
def wrong_method_is_405_with_allow():
    r = server().request("DELETE", "/healthz")
    error_body(r, 405, "method_not_allowed")
    eq("GET", r.header("allow"))


@test
def body_too_large_is_413():
    r = server().post("/test/echo", raw=b'{"a":"' + b"x" * (2 * 1024 * 1024) + b'"}',
                      headers={"Content-Type": "application/json"})
    eq(413, r.status)


@test
def non_json_body_is_415():
    r = server().post("/test/echo", raw=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    error_body(r, 415, "unsupported_media_type")


@test
def invalid_json_is_400():
    s = server()
    for raw in [b"{", b"{'a': 1}", b'{"a": 1,}', b"[1, 2]", b'"just a string"', b"nul",
                b'{"a": "\xff\xfe"}', b'{"a": "\\ud800"}']:
        r = s.post("/test/echo", raw=raw, headers={"Content-Type": "application/json"})
        error_body(r, 400)


@test
def deeply_nested_json_is_400_and_server_lives():
    s = server()
    r = s.post("/test/echo", raw=b"[" * 100000, headers={"Content-Type": "application/json"})
    error_body(r, 400)
    r = s.post("/test/echo", raw=b'{"a":' * 70 + b"1" + b"}" * 70, headers={"Content-Type": "application/json"})
    error_body(r, 400)
    eq(200, s.get("/healthz").status)


@test
def json_round_trips_through_a_handler():
    body = {"s": "caf\u00e9 \U0001F600 \"q\" \\ \n", "i": 9007199254740993, "neg": -12,
            "f": 1.5, "t": True, "n": None, "empty_list": [], "empty_obj": {},
            "nested": {"a": [1, {"b": []}]}}
    r = server().post("/test/echo", body)
    eq(200, r.status)
    eq(body, r.json["body"])
    check('"empty_list":[]' in r.text and '"empty_obj":{}' in r.text, r.text)


@test
def empty_body_counts_as_no_body():
    r = server().post("/test/echo", raw=b"", headers={"Content-Type": "application/json"})
    eq(200, r.status)
    eq(None, r.json["body"])


@test
def get_with_json_content_type_and_no_body_is_fine():
    r = server().get("/healthz", headers={"Content-Type": "application/json"})
    eq(200, r.status)


@test
def get_with_a_body_is_400():
    r = server().request("GET", "/healthz", raw=b'{"a":1}', headers={"Content-Type": "application/json"})
    error_body(r, 400)


@test
def script_error_is_500_with_request_id_and_worker_lives():
    s = server()
    r = s.get("/test/raise", headers={"X-Request-Id": "trace-123"})
    body = error_body(r, 500, "script_error")
    eq("trace-123", body["request_id"])
    check("boom" not in r.text and "traceback" not in r.text.lower(), "leaks the error: " + r.text)
    for _ in range(10):
        eq(200, s.get("/healthz").status)
    check("boom from a test route" in s.logs(), "the log does not say what failed")


@test
def spacer_error_gives_its_status_code_and_fields():
    r = server().get("/test/http-error")
    body = error_body(r, 409, "taken")
    eq({"email": "is taken"}, body["fields"])


@test
def request_id_is_echoed_or_generated():
    s = server()
    eq("abc-1", s.get("/healthz", headers={"X-Request-Id": "abc-1"}).header("x-request-id"))
    a = s.get("/healthz").header("x-request-id")
    b = s.get("/healthz").header("x-request-id")
    check(a and b and a != b, "ids %r %r" % (a, b))


@test
def cors_preflight_and_simple_requests():
    s = server()
    r = s.request("OPTIONS", "/test/echo", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    eq(204, r.status)
    eq("http://localhost:5173", r.header("access-control-allow-origin"))
    check("POST" in r.header("access-control-allow-methods"), r.headers)
    check("Authorization" in r.header("access-control-allow-headers"), r.headers)
    r = s.get("/healthz", headers={"Origin": "http://localhost:3000"})
    eq("http://localhost:3000", r.header("access-control-allow-origin"))
    eq("Origin", r.header("vary"))
    check("X-Total-Count" in r.header("access-control-expose-headers"), r.headers)
    r = s.get("/healthz", headers={"Origin": "http://evil.example"})
    eq(None, r.header("access-control-allow-origin"))


@test
def access_log_line_per_request():
    s = server()
    s.get("/test/items/7", headers={"X-Request-Id": "log-check-7"})
    time.sleep(0.2)
    lines = [json.loads(l) for l in s.logs().splitlines() if '"log-check-7"' in l and '"access"' in l]
    eq(1, len(lines))
    line = lines[0]
    eq("GET", line["method"])
    eq("/test/items/7", line["path"])
    eq("/test/items/{id}", line["route"])
    eq(200, line["status"])
    check(isinstance(line["duration_us"], int) and line["bytes"] > 0, line)


def raw_request(port, data, timeout=5):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        c.sendall(data)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                break
        return out
    finally:
        c.close()


@test
def malformed_request_line_and_huge_headers_are_refused():
    s = server()
    out = raw_request(s.port, b"THIS IS NOT HTTP\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400") or out == b"", out[:80])
    out = raw_request(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    check(out == b"" or out.split(b" ")[1] in (b"400", b"413", b"431"), out[:80])
    eq(200, s.get("/healthz").status)


@test
def infinite_loop_is_ended_by_the_instruction_budget():
    s = server()
    r = s.get("/test/loop")
    error_body(r, 500, "script_limit")
    r = s.get("/test/pcall-loop")
    error_body(r, 500, "script_limit")
    eq(200, s.get("/healthz").status)


@test
def unbounded_allocation_is_ended_by_the_memory_cap():
    s = Server(workers=1, extra_routes=TEST_ROUTES, env={
        "SPACER_SCRIPTS_MEMORY_LIMIT": "32M", "SPACER_SCRIPTS_INSTRUCTION_LIMIT": "1000000000"})
    try:
        s.start()
        pid = s.worker_pids()
        error_body(s.get("/test/alloc", timeout=30), 500, "script_limit")
        eq(200, s.get("/healthz").status)
        eq(pid, s.worker_pids(), "the worker was replaced")
    finally:
        s.close()


@test
def sigterm_drains_a_slow_request_then_exits_zero():
    s = Server(workers=1, extra_routes=TEST_ROUTES).start()
    try:
        result = {}

        def slow():
            result["r"] = s.get("/test/slow?s=1.5", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        code = s.stop(signal.SIGTERM)
        t.join(10)
        eq(200, result["r"].status, "the in-flight request")
        eq(0, code, "exit status")
    finally:
        s.close()


@test
def killed_worker_is_replaced():
    s = Server(workers=2).start()
    try:
        before = s.worker_pids()
        eq(2, len(before))
        os.kill(before[0], signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline:
            now = s.worker_pids()
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.05)
        now = s.worker_pids()
        eq(2, len(now), "workers after the kill")
        check(before[0] not in now, "the killed worker is still listed")
        for _ in range(20):
            eq(200, s.get("/healthz").status)
        check("restarting" in s.logs(), "the master did not log the restart")
    finally:
        s.close()


@test
def config_typo_stops_startup_with_file_and_line():
    s = Server(conf="[server]\nport = 5000\n\n[http]\nmax_body_sise = 1M\n")
    try:
        s.start(wait=False)
        code = s.proc.wait(10)
        check(code != 0, "exit status 0")
        check("spacer.conf:5: unknown key \"max_body_sise\"" in s.logs(), s.logs())
    finally:
        s.close()


@test
def database_types_come_back_typed():
    r = server().get("/test/types")
    eq(200, r.status)
    j = r.json
    eq(1, j["i2"])
    eq(2147483647, j["i4"])
    eq(9007199254740993, j["i8"])
    eq("12.50", j["n"])
    eq(1.5, j["f"])
    eq(True, j["b"])
    eq("x", j["t"])
    eq(None, j["nul"])
    eq({"a": [1, 2]}, j["j"])
    eq(["a", "b c"], j["arr"])
    eq([1, 2], j["iarr"])
    check(j["ts"].startswith("2026-12-01T07:00:00") and j["ts"][-6] in "+-" and j["ts"][-3] == ":", j["ts"])


@test
def openapi_document_comes_from_the_route_declarations():
    s = server()
    r = s.get("/apispec.json")
    eq(200, r.status)
    doc = r.json
    eq("3.0.3", doc["openapi"])
    check("/healthz" in doc["paths"] and "get" in doc["paths"]["/healthz"], list(doc["paths"]))
    op = doc["paths"]["/test/items/{id}"]["get"]
    eq("integer", op["parameters"][0]["schema"]["type"])
    status = doc["paths"]["/api/admin/status"]["get"]
    check("bearerAuth" in status["security"][0], status)
    check("403" in status["responses"], status["responses"])
    r = s.get("/apidocs")
    eq(200, r.status)
    check(r.header("content-type").startswith("text/html") and "/apidocs/swagger-initializer.js" in r.text,
          r.text[:200])


def leak_checked_pids(workers, requests):
    """Serves requests with every allocation left at exit counted as a leak (no roots), stops
    the server and returns (worker pids, pids whose exit LeakSanitizer checked)."""
    s = Server(workers=workers, env={
        "LSAN_OPTIONS": "use_globals=0:use_stacks=0:use_registers=0:use_tls=0:exitcode=0"})
    try:
        s.start()
        for path in requests:
            s.get(path)
        pids = s.worker_pids()
        s.stop()
        text = s.logs_all()
    finally:
        shutil.rmtree(s.dir, ignore_errors=True)
    checked = {int(p) for p in re.findall(r"==(\d+)==ERROR: LeakSanitizer", text)}
    return pids, checked


if SANITIZED:
    @test
    def leak_sanitizer_checks_every_worker():
        # With no roots to scan, whatever is still allocated at exit is reported: a report
        # names each process that LeakSanitizer checked, the master and every worker alike.
        pids, checked = leak_checked_pids(2, ["/", "/api/spaces/spaces", "/healthz"])
        eq(2, len(pids), "workers")
        for pid in pids:
            check(pid in checked, "worker %d left unchecked: %r" % (pid, sorted(checked)))
