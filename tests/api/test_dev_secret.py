"""The development JWT secret: with no secret configured, `spacer serve` in development makes
one once under var/ (mode 0600) and reuses it, so two instances on one database accept each
other's tokens and a restart logs nobody out; production still refuses to start without one."""
import os
import shutil
import stat
import subprocess
import tempfile

from harness import Server, check, eq, error_body, test

PASSWORD = "password123"


def dev_server(cwd):
    """A `make run`-style instance: development, no secret anywhere, started in cwd."""
    s = Server(workers=1, cwd=cwd, env={"SPACER_SERVER_ENV": "development"})
    for name in ("JWT_SECRET_KEY", "SPACER_AUTH_JWT_SECRET", "SECRET_KEY"):
        s.env.pop(name, None)
    return s


@test
def two_development_instances_accept_each_others_tokens():
    work = tempfile.mkdtemp(prefix="spacer-devsecret-")
    a = dev_server(work)
    b = dev_server(work)
    c = None
    try:
        a.start()
        b.start()
        path = os.path.join(work, "var", "jwt_secret")
        check(os.path.exists(path), "no %s" % path)
        eq(0o600, stat.S_IMODE(os.stat(path).st_mode), "the secret file's mode")
        with open(path) as f:
            secret = f.read().strip()
        check(len(secret) >= 32, "a short secret: %r" % secret)

        from_a = a.login("client1@example.com", PASSWORD)
        from_b = b.login("owner1@example.com", PASSWORD)
        r = b.get("/api/users/profile", token=from_a)
        eq(200, r.status, "a's token on b: %r" % r)
        eq("client1@example.com", r.json["email"])
        r = a.get("/api/users/profile", token=from_b)
        eq(200, r.status, "b's token on a: %r" % r)
        eq("owner1@example.com", r.json["email"])

        # a restart keeps the secret: the token made before it still works
        a.close()
        c = dev_server(work).start()
        eq(200, c.get("/api/users/profile", token=from_a).status, "after a restart")
        with open(path) as f:
            eq(secret, f.read().strip(), "the kept secret changed")

        # an instance with its own secret does not accept them
        d = Server(workers=1, cwd=work, env={"JWT_SECRET_KEY": "x" * 40})
        try:
            d.start()
            error_body(d.get("/api/users/profile", token=from_a), 401, "invalid_token")
        finally:
            d.close()
    finally:
        for s in (a, b, c):
            if s is not None:
                s.close()
        shutil.rmtree(work, ignore_errors=True)


@test
def production_without_a_secret_refuses_to_start_even_with_a_kept_one():
    work = tempfile.mkdtemp(prefix="spacer-devsecret-")
    try:
        os.makedirs(os.path.join(work, "var"))
        with open(os.path.join(work, "var", "jwt_secret"), "w") as f:
            f.write("0123456789abcdef0123456789abcdef0123456789abcdef\n")
        s = Server(workers=1, cwd=work, env={"SPACER_SERVER_ENV": "production"})
        for name in ("JWT_SECRET_KEY", "SPACER_AUTH_JWT_SECRET", "SECRET_KEY"):
            s.env.pop(name, None)
        try:
            s.start(wait=False)
            try:
                rc = s.proc.wait(15)
            except subprocess.TimeoutExpired:
                raise AssertionError("production started without a configured secret")
            check(rc != 0, "exit status 0")
            check("no JWT secret in production" in s.logs(), s.logs())
        finally:
            s.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
