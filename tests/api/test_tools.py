"""The tools of integrators and operators: check, routes, test, reload over HTTP, watch mode,
status, create-admin, hash-password."""
import os
import shutil
import subprocess
import tempfile
import time
import uuid

from harness import BIN, ROOT, Server, check, eq, error_body, server, test


def run(args, env=None, stdin=None, cwd=ROOT):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BIN] + args, cwd=cwd, env=e, input=stdin, capture_output=True,
                          text=True, timeout=120)


def scripts_copy():
    d = tempfile.mkdtemp(prefix="spacer-tools-")
    shutil.copytree(os.path.join(ROOT, "scripts"), os.path.join(d, "scripts"))
    return d, os.path.join(d, "scripts")


@test
def check_passes_on_the_shipped_scripts_and_names_file_and_line_on_errors():
    r = run(["check"])
    eq(0, r.returncode, r.stderr)
    check(r.stdout.startswith("ok: "), r.stdout)
    d, scripts = scripts_copy()
    try:
        with open(os.path.join(scripts, "pricing.lua"), "a") as f:
            f.write("\nlocal = 1\n")
        r = run(["check"], env={"SPACER_SCRIPTS_DIR": scripts})
        check(r.returncode != 0, "check passed a broken script")
        check("pricing.lua:" in r.stderr, r.stderr)
    finally:
        shutil.rmtree(d)


@test
def routes_lists_method_path_auth_roles_and_source():
    r = run(["routes"])
    eq(0, r.returncode, r.stderr)
    lines = r.stdout.splitlines()
    status = [l for l in lines if "/api/admin/status" in l]
    eq(1, len(status), r.stdout)
    cols = status[0].split()
    eq("GET", cols[0])
    eq("auth", cols[2])
    eq("admin", cols[3])
    check("routes/ops.lua:" in cols[4], status[0])
    check(any(l.split()[1] == "/healthz" and l.split()[2] == "-" for l in lines), r.stdout)


@test
def spacer_test_counts_passes_and_failures():
    d = tempfile.mkdtemp(prefix="spacer-lt-")
    try:
        path = os.path.join(d, "sample_test.lua")
        with open(path, "w") as f:
            f.write('test("adds", function() assert_eq(4, 2 + 2) end)\n'
                    'test("queries", function()\n'
                    '  assert_eq(7, spacer.db.one("SELECT 3 + $1::int AS n", 4).n)\n'
                    'end)\n'
                    'test("fails", function() assert_eq("a", "b", "on purpose") end)\n')
        r = run(["test", path])
        eq(1, r.returncode)
        eq("2 passed, 1 failed", r.stdout.strip().splitlines()[-1])
        check("on purpose" in r.stdout and "sample_test.lua:5" in r.stdout, r.stdout)
    finally:
        shutil.rmtree(d)


def admin_token(s):
    return s.login("admin@spacer.com", "Admin123!")


@test
def admin_reload_over_http_reports_every_worker():
    s = Server(workers=2).start()
    try:
        token = admin_token(s)
        r = s.post("/api/admin/reload", token=token)
        eq(200, r.status, r.text)
        eq(2, r.json["generation"])
        eq(2, len(r.json["workers"]))
        check(all(w["ok"] and w["generation"] == 2 for w in r.json["workers"]), r.json)
        with open(os.path.join(s.scripts, "pricing.lua"), "a") as f:
            f.write("\nerror('broken on purpose')\n")
        r = s.post("/api/admin/reload", token=token)
        body = error_body(r, 422, "reload_failed")
        check(body["errors"] and "pricing.lua:" in body["errors"][0], body)
        r = s.get("/api/admin/status", token=token)
        eq(200, r.status)
        eq(2, r.json["generation"])
        check("pricing.lua:" in r.json["last_reload_error"], r.json)
        eq(2, len(r.json["workers"]))
        check(all(w["pool"]["total"] >= 1 for w in r.json["workers"]), r.json)
        client = s.login("client1@example.com", "password123")
        error_body(s.post("/api/admin/reload", token=client), 403, "forbidden")
        error_body(s.post("/api/admin/reload"), 401)
    finally:
        s.close()


@test
def watch_mode_reloads_when_a_script_changes():
    s = Server(workers=1, env={"SPACER_SCRIPTS_RELOAD": "watch"}).start()
    try:
        token = admin_token(s)
        eq(1, s.get("/api/admin/status", token=token).json["generation"])
        with open(os.path.join(s.scripts, "routes", "ops.lua"), "a") as f:
            f.write("\n-- touched\n")
        deadline = time.time() + 10
        gen = 1
        while time.time() < deadline and gen == 1:
            time.sleep(0.2)
            gen = s.get("/api/admin/status", token=token).json["generation"]
        eq(2, gen, "generation after a change on disk")
    finally:
        s.close()


@test
def metrics_count_requests_by_route_and_status():
    s = server()
    s.get("/test/items/3")
    r = s.get("/metrics")
    eq(200, r.status)
    check(r.header("content-type").startswith("text/plain"), r.header("content-type"))
    check('spacer_http_requests_total{method="GET",route="/test/items/{id}",status="200"}' in r.text, r.text[:500])
    for name in ("spacer_http_request_duration_seconds_bucket", "spacer_db_pool_connections",
                 "spacer_db_queue_length", "spacer_script_errors_total", "spacer_reloads_total",
                 "spacer_generation"):
        check(name in r.text, name)


@test
def create_admin_and_hash_password():
    email = "ops-%s@example.com" % uuid.uuid4().hex[:8]
    r = run(["create-admin", "--email", email, "--name", "Ops"], stdin="correct-horse-1\n")
    eq(0, r.returncode, r.stderr)
    check("created admin " + email in r.stdout, r.stdout)
    s = server()
    r = s.post("/api/users/login", {"email": email, "password": "correct-horse-1"})
    eq(200, r.status)
    eq("admin", r.json["user"]["role"])
    r = run(["create-admin", "--email", email, "--name", "Ops"], stdin="short\n")
    check(r.returncode != 0 and "8 to 72" in r.stderr, r.stderr)
    r = run(["hash-password"], stdin="a-password\n", env={"SPACER_AUTH_BCRYPT_COST": "5"})
    eq(0, r.returncode, r.stderr)
    check(r.stdout.startswith("$2b$05$") and len(r.stdout.strip()) == 60, r.stdout)
    # The admin made here would break the last-admin tests of other files: remove it.
    token = s.login("admin@spacer.com", "Admin123!")
    uid = [u["id"] for u in s.get("/api/users/users?per_page=100", token=token).json if u["email"] == email]
    eq(1, len(uid))
    eq(200, s.delete("/api/users/users/%d" % uid[0], token=token).status)
