"""Accounts: registration, login and its throttling, tokens (forged, old deployment's,
deleted user's), profile, and the admin's user management, on canonical and compat paths.

Failed logins are counted per client address, and every test connects from 127.0.0.1: so
the tests that fail logins on purpose do it on their own server (throttled()) that trusts
X-Forwarded-For, each from made-up addresses, and the shared server's 127.0.0.1 stays clean.
"""
import atexit
import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from harness import BIN, ROOT, Server, check, eq, error_body, server, test

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@spacer.com", "Admin123!"
LEGACY_EMAIL, LEGACY_PASSWORD = "legacy@example.com", "password123"
PROFILE_KEYS = {"id", "name", "email", "role", "is_verified", "created_at"}
LOGIN_USER_KEYS = {"id", "name", "email", "role"}
PASSWORD = "correct horse"
SECRET = os.environ.get("JWT_SECRET_KEY", "")
IP_LIMIT = 3  # failures per address on the throttled() server


def unique_email(tag="user"):
    return "%s-%s@example.com" % (tag, uuid.uuid4().hex[:12])


_ip_counter = [0]
_ip_base = uuid.uuid4().int


def fake_ip():
    """A client address no other test (or earlier run) uses."""
    _ip_counter[0] += 1
    n = (_ip_base + _ip_counter[0] * 7919) % (254 * 254 * 254)
    return "10.%d.%d.%d" % (n // (254 * 254) + 1, n // 254 % 254 + 1, n % 254 + 1)


def from_ip(ip):
    return {"X-Forwarded-For": ip}


def no_secrets(r):
    """No response shows a password hash."""
    check("password_hash" not in r.text, "response shows password_hash: %r" % r)
    check("$2a$" not in r.text and "$2b$" not in r.text and "$2y$" not in r.text,
          "response shows a bcrypt hash: %r" % r)
    return r


def register(s, role=None, email=None, path="/api/users/register", name="Test User"):
    email = email or unique_email(role or "client")
    body = {"name": name, "email": email, "password": PASSWORD}
    if role:
        body["role"] = role
    r = no_secrets(s.post(path, body))
    eq(201, r.status, "register %r" % r)
    return email, r.json["user"]


def login(s, email, password=PASSWORD, path="/api/users/login", headers=None):
    return no_secrets(s.post(path, {"email": email, "password": password}, headers=headers))


def token_of(s, email, password=PASSWORD, headers=None):
    r = login(s, email, password, headers=headers)
    eq(200, r.status, "login %s: %r" % (email, r))
    return r.json["token"]


def new_user(s, role=None, headers=None):
    """(email, user, token) of a fresh account."""
    email, user = register(s, role)
    return email, user, token_of(s, email, headers=headers)


_admin = {}


def admin_token():
    if "token" not in _admin:
        _admin["token"] = token_of(server(), ADMIN_EMAIL, ADMIN_PASSWORD)
    return _admin["token"]


def admin_id():
    if "id" not in _admin:
        r = login(server(), ADMIN_EMAIL, ADMIN_PASSWORD)
        _admin["id"] = r.json["user"]["id"]
    return _admin["id"]


_throttled = {}


def throttled():
    """A server of its own that trusts X-Forwarded-For, with IP_LIMIT failures per address."""
    if "s" not in _throttled:
        s = Server(workers=2, env={"SPACER_HTTP_TRUST_PROXY": "on",
                                   "SPACER_LOGIN_MAX_FAILURES_PER_IP": str(IP_LIMIT)})
        atexit.register(s.close)
        _throttled["s"] = s.start()
    return _throttled["s"]


# JWTs made here, as the old deployment (or an attacker) would ----------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload, header=None, alg="HS256", secret=None, digest=hashlib.sha256):
    header = header or {"alg": alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(payload).encode()))
    if alg == "none":
        return signing_input + "."
    key = (SECRET if secret is None else secret).encode()
    return signing_input + "." + b64url(hmac.new(key, signing_input.encode(), digest).digest())


def claims(user_id, **over):
    now = int(time.time())
    c = {"sub": str(user_id), "type": "access", "iat": now, "nbf": now, "exp": now + 3600,
         "jti": str(uuid.uuid4())}
    c.update(over)
    return c


def flask_claims(user_id):
    """Flask-JWT-Extended's access token: no role claim."""
    now = int(time.time())
    return {"fresh": False, "iat": now, "jti": str(uuid.uuid4()), "type": "access",
            "sub": str(user_id), "nbf": now, "csrf": str(uuid.uuid4()), "exp": now + 900}


# Registration -----------------------------------------------------------------------------

@test
def register_canonical_201_with_the_user():
    s = server()
    email = unique_email("Reg")
    r = no_secrets(s.post("/api/users/register",
                          {"name": "  Wanjiru  ", "email": "  " + email.upper() + " ",
                           "password": PASSWORD}))
    eq(201, r.status, "status of %r" % r)
    eq({"message", "user"}, set(r.json))
    user = r.json["user"]
    eq(PROFILE_KEYS, set(user))
    eq(email.lower(), user["email"])
    eq("Wanjiru", user["name"])
    eq("client", user["role"])
    eq(False, user["is_verified"])
    check(isinstance(user["id"], int) and user["id"] > 0, user)
    check("T" in user["created_at"] and ("+" in user["created_at"] or "Z" in user["created_at"]),
          user["created_at"])
    eq(200, login(s, email.lower()).status)


@test
def register_compat_path_and_owner_role():
    s = server()
    email = unique_email("owner")
    r = no_secrets(s.post("/api/register", {"name": "Owner", "email": email,
                                            "password": PASSWORD, "role": "owner"}))
    eq(201, r.status, "status of %r" % r)
    eq({"message", "user"}, set(r.json))
    eq("owner", r.json["user"]["role"])
    r = login(s, email, path="/api/login")
    eq(200, r.status)
    eq("owner", r.json["user"]["role"])


@test
def register_duplicate_email_is_409_on_both_paths():
    s = server()
    email, _ = register(s)
    r = s.post("/api/users/register", {"name": "Again", "email": email.upper(),
                                       "password": PASSWORD})
    body = error_body(r, 409)
    check("email" in body.get("fields", {}), body)
    r = s.post("/api/register", {"name": "Again", "email": " " + email + " ",
                                 "password": PASSWORD})
    body = error_body(r, 409)
    eq(body["error"], body.get("message"), "compat errors carry message")


@test
def register_same_email_at_once_gives_one_201():
    s = server()
    email = unique_email("race")
    results = []
    lock = threading.Lock()

    def go():
        r = s.post("/api/users/register", {"name": "Racer", "email": email, "password": PASSWORD})
        with lock:
            results.append(r.status)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    eq(1, results.count(201), "201s in %r" % results)
    eq(7, results.count(409), "409s in %r" % results)


@test
def register_validation_is_422_naming_the_field():
    s = server()
    cases = [
        ({"name": "X", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"name": "X", "email": "a@b", "password": PASSWORD}, "email"),
        ({"name": "X", "password": PASSWORD}, "email"),
        ({"name": "X", "email": unique_email(), "password": "seven77"}, "password"),
        ({"name": "X", "email": unique_email(), "password": "x" * 73}, "password"),
        # 37 characters but 74 bytes: the limit is bcrypt's, in bytes
        ({"name": "X", "email": unique_email(), "password": "\u00e9" * 37}, "password"),
        ({"name": "X", "email": unique_email()}, "password"),
        ({"email": unique_email(), "password": PASSWORD}, "name"),
        ({"name": "   ", "email": unique_email(), "password": PASSWORD}, "name"),
        ({"name": "X", "email": unique_email(), "password": PASSWORD, "role": "admin"}, "role"),
        ({"name": "X", "email": unique_email(), "password": PASSWORD, "role": "superuser"}, "role"),
        ({"name": "X", "email": unique_email(), "password": PASSWORD, "is_verified": True},
         "is_verified"),
        ({"name": "X", "email": unique_email(), "password": PASSWORD, "id": 1}, "id"),
        ({"name": "X", "email": unique_email(), "password": PASSWORD, "password_hash": "x"},
         "password_hash"),
    ]
    for body, field in cases:
        r = s.post("/api/users/register", body)
        got = error_body(r, 422, "validation_failed")
        check(field in got.get("fields", {}), "%r: fields %r" % (body, got.get("fields")))
    # the limits themselves are fine: 8 and 72 bytes
    for pw in ["12345678", "x" * 72, "\u00e9" * 36]:
        email = unique_email("len")
        r = s.post("/api/users/register", {"name": "X", "email": email, "password": pw})
        eq(201, r.status, "password of %d bytes: %r" % (len(pw.encode()), r))
        eq(200, login(s, email, pw).status)


@test
def registration_cannot_create_an_admin_on_any_path():
    s = server()
    for path in ["/api/users/register", "/api/register"]:
        email = unique_email("wannabe")
        for role in ["admin", "ADMIN", " admin "]:
            r = s.post(path, {"name": "X", "email": email, "password": PASSWORD, "role": role})
            body = error_body(r, 422)
            check("role" in body["fields"], body)
        r = s.get("/api/users", token=admin_token())  # every user: nothing was created
        check(all(u["email"] != email for u in r.json), "a user was created: %r" % email)


@test
def register_compat_ignores_read_only_fields():
    s = server()
    email = unique_email("compat")
    r = no_secrets(s.post("/api/register", {"name": "C", "email": email, "password": PASSWORD,
                                            "id": 1, "is_verified": True,
                                            "created_at": "2020-01-01T00:00:00Z"}))
    eq(201, r.status, "status of %r" % r)
    check(r.json["user"]["id"] != 1, r.json)
    eq(False, r.json["user"]["is_verified"])
    check(not r.json["user"]["created_at"].startswith("2020"), r.json)


# Login ------------------------------------------------------------------------------------

@test
def login_canonical_and_compat_200():
    s = server()
    email, user = register(s, name="Login Person")
    for path in ["/api/users/login", "/api/login"]:
        r = login(s, " " + email.upper() + " ", path=path)
        eq(200, r.status, "%s: %r" % (path, r))
        eq({"message", "token", "user"}, set(r.json))
        eq("Login successful", r.json["message"])
        eq(LOGIN_USER_KEYS, set(r.json["user"]))
        eq({"id": user["id"], "name": "Login Person", "email": email, "role": "client"},
           r.json["user"])
        me = no_secrets(s.get("/api/users/profile", token=r.json["token"]))
        eq(200, me.status)
        eq(user["id"], me.json["id"])


@test
def seeded_accounts_log_in():
    s = server()
    r = login(s, LEGACY_EMAIL, LEGACY_PASSWORD)
    eq(200, r.status, "legacy (hash made by Python's bcrypt): %r" % r)
    eq("client", r.json["user"]["role"])
    r = login(s, ADMIN_EMAIL, ADMIN_PASSWORD, path="/api/login")
    eq(200, r.status, "admin: %r" % r)
    eq("admin", r.json["user"]["role"])
    eq(200, s.get("/api/users/users", token=r.json["token"]).status)


@test
def wrong_credentials_are_401_invalid_credentials():
    s = throttled()
    email, _ = register(s)
    r = login(s, email, "wrong password", headers=from_ip(fake_ip()))
    body = error_body(r, 401)
    eq("Invalid credentials", body["error"])
    check("message" not in body, "canonical errors have no message: %r" % body)
    r = login(s, email, "wrong password", path="/api/login", headers=from_ip(fake_ip()))
    body = error_body(r, 401)
    eq("Invalid credentials", body["error"])
    eq("Invalid credentials", body["message"])
    r = login(s, unique_email("nobody"), PASSWORD, headers=from_ip(fake_ip()))
    eq("Invalid credentials", error_body(r, 401)["error"])
    r = login(s, email, PASSWORD + "x" * 80, headers=from_ip(fake_ip()))
    eq("Invalid credentials", error_body(r, 401)["error"])


@test
def login_validation_is_422():
    s = server()
    for body in [{}, {"email": "a@example.com"}, {"password": "x"}, {"email": 5, "password": "x"}]:
        error_body(s.post("/api/users/login", body), 422)


@test
def five_failures_for_one_email_then_429_with_retry_after():
    s = throttled()
    email, _ = register(s)
    for i in range(5):
        r = login(s, email, "wrong %d" % i, headers=from_ip(fake_ip()))
        error_body(r, 401)
    for path in ["/api/users/login", "/api/login"]:
        # even the right password, from a fresh address: checked before any bcrypt
        r = login(s, email.upper(), PASSWORD, path=path, headers=from_ip(fake_ip()))
        error_body(r, 429)
        wait = int(r.header("retry-after"))
        check(880 <= wait <= 900, "Retry-After %d: the oldest failure leaves in ~15 minutes" % wait)
    # other accounts are not affected
    other, _ = register(s)
    eq(200, login(s, other, headers=from_ip(fake_ip())).status)


@test
def a_successful_login_resets_the_email_count():
    s = throttled()
    email, _ = register(s)
    for round_ in range(3):
        for i in range(4):
            error_body(login(s, email, "wrong %d" % i, headers=from_ip(fake_ip())), 401)
        r = login(s, email, headers=from_ip(fake_ip()))
        eq(200, r.status, "round %d: after 4 failures and successes before: %r" % (round_, r))
    for i in range(5):
        error_body(login(s, email, "wrong %d" % i, headers=from_ip(fake_ip())), 401)
    error_body(login(s, email, headers=from_ip(fake_ip())), 429)


@test
def failures_from_one_address_then_429_for_every_email():
    s = throttled()
    ip = fake_ip()
    for _ in range(IP_LIMIT):
        error_body(login(s, unique_email("probe"), PASSWORD, headers=from_ip(ip)), 401)
    email, _ = register(s)
    r = login(s, email, headers=from_ip(ip))
    error_body(r, 429)
    check(1 <= int(r.header("retry-after")) <= 900, r.headers)
    # a success elsewhere does not reset the address, and another address is fine
    eq(200, login(s, email, headers=from_ip(fake_ip())).status)
    error_body(login(s, email, headers=from_ip(ip)), 429)


# Tokens -----------------------------------------------------------------------------------

@test
def forged_and_broken_tokens_are_401():
    s = server()
    check(len(SECRET) >= 32, "JWT_SECRET_KEY must be set for these tests")
    uid = admin_id()
    good = jwt(claims(uid, role="admin"))
    eq(200, s.get("/api/users/users", token=good).status, "the well-made token (control)")
    now = int(time.time())
    forged = {
        "alg none": jwt(claims(uid, role="admin"), alg="none"),
        "alg none, no dot": jwt(claims(uid, role="admin"), alg="none")[:-1],
        "HS512, same secret": jwt(claims(uid, role="admin"), alg="HS512", digest=hashlib.sha512),
        "RS256 header": jwt(claims(uid, role="admin"), header={"alg": "RS256", "typ": "JWT"}),
        "bad signature": jwt(claims(uid, role="admin"), secret="x" * 40),
        "altered payload": good.split(".")[0] + "." +
        b64url(json.dumps(claims(uid + 1, role="admin")).encode()) + "." + good.split(".")[2],
        "expired": jwt(claims(uid, iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        "nbf in the future": jwt(claims(uid, nbf=now + 3600, exp=now + 7200)),
        "type refresh": jwt(claims(uid, type="refresh")),
        "no exp": jwt({k: v for k, v in claims(uid).items() if k != "exp"}),
        "no such user": jwt(claims(2 ** 53 - 1)),
        "garbage": "garbage",
        "three garbage parts": "a.b.c",
        "empty parts": "..",
    }
    for name, token in forged.items():
        for path in ["/api/users/profile", "/api/users/users", "/api/profile"]:
            r = s.get(path, token=token)
            error_body(r, 401)
            check(r.status == 401, "%s on %s: %r" % (name, path, r))
    for value in ["Bearer", "Basic " + base64.b64encode(b"a:b").decode(), good]:
        r = s.get("/api/users/profile", headers={"Authorization": value})
        error_body(r, 401)


@test
def old_deployment_token_works_with_the_role_from_the_row():
    s = server()
    legacy = login(s, LEGACY_EMAIL, LEGACY_PASSWORD).json["user"]
    token = jwt(flask_claims(legacy["id"]))
    r = no_secrets(s.get("/api/users/profile", token=token))
    eq(200, r.status, "legacy token: %r" % r)
    eq(LEGACY_EMAIL, r.json["email"])
    eq("client", r.json["role"])
    error_body(s.get("/api/users/users", token=token), 403)
    # the admin's old token: admin rights come from the row, not from a claim
    admin = jwt(flask_claims(admin_id()))
    r = s.get("/api/users/users", token=admin)
    eq(200, r.status, "admin's legacy token: %r" % r)
    # a role claim cannot lift a client either
    lifted = jwt(dict(flask_claims(legacy["id"]), role="admin"))
    error_body(s.get("/api/users/users", token=lifted), 403)


@test
def token_of_a_deleted_user_is_401():
    s = server()
    _, user, token = new_user(s)
    for _ in range(6):  # on fresh connections: every worker has verified and kept the token
        eq(200, s.get("/api/users/profile", token=token, headers={"Connection": "close"}).status)
    r = s.delete("/api/users/users/%d" % user["id"], token=admin_token())
    eq(200, r.status, "delete: %r" % r)
    error_body(s.get("/api/users/profile", token=token), 401)
    error_body(s.get("/api/profile", token=token), 401)


@test
def a_kept_token_is_refused_at_its_expiry():
    # A worker keeps the tokens it has verified; their exp is still read against the clock.
    srv = Server(workers=1, env={"SPACER_AUTH_LEEWAY": "0"}).start()
    try:
        uid = admin_id()
        exp = int(time.time()) + 4
        token = jwt(claims(uid, exp=exp))
        for _ in range(3):  # verified, then answered from the worker's copy
            r = srv.get("/api/users/profile", token=token)
            eq(200, r.status, "before its expiry: %r" % r)
        while time.time() < exp + 1:
            time.sleep(0.2)
        for _ in range(2):
            r = srv.get("/api/users/profile", token=token)
            error_body(r, 401, "invalid_token")
            check("token expired" in r.json["error"], "reason: %r" % r.json)
        # a token of the same user, the same header and payload, another signature
        good = jwt(claims(uid))
        eq(200, srv.get("/api/users/profile", token=good).status)
        head, payload, sig = good.split(".")
        other = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        r = srv.get("/api/users/profile", token=head + "." + payload + "." + other)
        error_body(r, 401, "invalid_token")
        eq(200, srv.get("/api/users/profile", token=good).status)
    finally:
        srv.close()


@test
def no_token_is_401():
    s = server()
    for method, path in [("GET", "/api/users/profile"), ("GET", "/api/profile"),
                         ("PATCH", "/api/users/profile"), ("PUT", "/api/profile"),
                         ("PATCH", "/api/profile"), ("GET", "/api/users/users"),
                         ("GET", "/api/users"), ("GET", "/api/users/users/1"),
                         ("PATCH", "/api/users/users/1"), ("DELETE", "/api/users/users/1"),
                         ("GET", "/api/users/1"), ("PUT", "/api/users/1"),
                         ("DELETE", "/api/users/1")]:
        body = {"name": "x"} if method in ("PATCH", "PUT") else None
        error_body(s.request(method, path, body=body), 401)


@test
def logout_is_200_on_both_paths():
    s = server()
    _, _, token = new_user(s)
    for path in ["/api/users/logout", "/api/logout"]:
        r = s.post(path, token=token)
        eq(200, r.status, "%s: %r" % (path, r))
        check("stateless" in r.json["message"], r.json)
        r = s.post(path)
        eq(200, r.status)
    eq(200, s.get("/api/users/profile", token=token).status, "tokens are stateless")


# Profile ----------------------------------------------------------------------------------

@test
def profile_on_both_paths():
    s = server()
    email, user, token = new_user(s)
    for path in ["/api/users/profile", "/api/profile"]:
        r = no_secrets(s.get(path, token=token))
        eq(200, r.status)
        eq(PROFILE_KEYS, set(r.json))
        eq(user, r.json)
        eq(email, r.json["email"])


@test
def profile_name_change_on_every_path():
    s = server()
    _, user, token = new_user(s)
    for method, path, name in [("PATCH", "/api/users/profile", "First"),
                               ("PATCH", "/api/profile", "Second"),
                               ("PUT", "/api/profile", "Third")]:
        r = no_secrets(s.request(method, path, body={"name": "  %s " % name}, token=token))
        eq(200, r.status, "%s %s: %r" % (method, path, r))
        eq({"message", "user"}, set(r.json))
        eq(PROFILE_KEYS, set(r.json["user"]))
        eq(name, r.json["user"]["name"])
        eq(name, s.get("/api/users/profile", token=token).json["name"])
    r = s.patch("/api/users/profile", {}, token=token)
    eq(200, r.status, "an empty change: %r" % r)
    eq(user["id"], r.json["user"]["id"])
    error_body(s.patch("/api/users/profile", {"name": ""}, token=token), 422)
    error_body(s.patch("/api/users/profile", {"name": None}, token=token), 422)
    error_body(s.patch("/api/users/profile", {"name": "x" * 201}, token=token), 422)


@test
def profile_mass_assignment_is_422_and_ignored_on_compat():
    s = server()
    _, user, token = new_user(s)
    for field, value in [("role", "admin"), ("id", 1), ("is_verified", True),
                         ("created_at", "2020-01-01T00:00:00Z"),
                         ("updated_at", "2020-01-01T00:00:00Z"), ("email", unique_email()),
                         ("password_hash", "$2b$04$" + "a" * 53)]:
        r = s.patch("/api/users/profile", {"name": "Hacker", field: value}, token=token)
        body = error_body(r, 422, "validation_failed")
        check(field in body["fields"], "%s: %r" % (field, body))
    me = s.get("/api/users/profile", token=token).json
    eq(user, me, "nothing was applied")
    # the old web app sends the whole profile back: read-only fields are ignored
    for method in ["PUT", "PATCH"]:
        r = no_secrets(s.request(method, "/api/profile", token=token, body={
            "name": "Edited", "role": "admin", "id": 1, "is_verified": True,
            "email": unique_email(), "created_at": "2020-01-01T00:00:00Z"}))
        eq(200, r.status, "%s compat: %r" % (method, r))
        me = s.get("/api/users/profile", token=token).json
        eq("Edited", me["name"])
        eq("client", me["role"], "role stayed")
        eq(user["id"], me["id"])
        eq(False, me["is_verified"])
        eq(user["email"], me["email"])
        eq(user["created_at"], me["created_at"])
    error_body(s.get("/api/users/users", token=token), 403)


@test
def profile_password_change_needs_the_current_password():
    s = throttled()  # a wrong current password counts as a failed login of the address
    ip = from_ip(fake_ip())
    email, _, token = new_user(s, headers=ip)
    new = "a brand new secret"
    body = error_body(s.patch("/api/users/profile", {"password": new}, token=token, headers=ip),
                      422)
    check("current_password" in body["fields"], body)
    body = error_body(s.patch("/api/users/profile", {"password": new, "current_password": "nope"},
                              token=token, headers=ip), 422)
    check("current_password" in body["fields"], body)
    body = error_body(s.patch("/api/users/profile", {"password": "short",
                                                     "current_password": PASSWORD},
                              token=token, headers=ip), 422)
    check("password" in body["fields"], body)
    body = error_body(s.patch("/api/users/profile", {"password": "y" * 73,
                                                     "current_password": PASSWORD},
                              token=token, headers=ip), 422)
    check("password" in body["fields"], body)
    r = no_secrets(s.patch("/api/users/profile", {"password": new, "current_password": PASSWORD},
                           token=token, headers=ip))
    eq(200, r.status, "change: %r" % r)
    error_body(login(s, email, PASSWORD, headers=from_ip(fake_ip())), 401)
    eq(200, login(s, email, new, headers=from_ip(fake_ip())).status)


# Admin ------------------------------------------------------------------------------------

@test
def client_and_owner_on_admin_routes_are_403():
    s = server()
    for role in ["client", "owner"]:
        _, user, token = new_user(s, role)
        for method, path in [("GET", "/api/users/users"), ("GET", "/api/users"),
                             ("GET", "/api/users/users/%d" % user["id"]),
                             ("PATCH", "/api/users/users/%d" % user["id"]),
                             ("DELETE", "/api/users/users/%d" % user["id"]),
                             ("GET", "/api/users/%d" % user["id"]),
                             ("PUT", "/api/users/%d" % user["id"]),
                             ("DELETE", "/api/users/%d" % user["id"])]:
            body = {"role": "admin"} if method in ("PATCH", "PUT") else None
            error_body(s.request(method, path, body=body, token=token), 403)
        eq(role, s.get("/api/users/profile", token=token).json["role"], "nothing changed")


def link_targets(header):
    """{rel: (path, query dict)} of an RFC 8288 Link header."""
    out = {}
    for part in header.split(","):
        target, _, params = part.strip().partition(";")
        check(target.startswith("<") and target.endswith(">"), "Link part %r" % part)
        rel = params.strip()
        check(rel.startswith('rel="') and rel.endswith('"'), "Link params %r" % params)
        url = urlsplit(target[1:-1])
        out[rel[5:-1]] = (url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
    return out


@test
def admin_list_is_an_array_with_pagination_headers():
    s = server()
    token = admin_token()
    for _ in range(3):
        register(s)
    r = no_secrets(s.get("/api/users/users?per_page=2", token=token))
    eq(200, r.status)
    check(isinstance(r.json, list) and len(r.json) == 2, r)
    for u in r.json:
        eq(PROFILE_KEYS, set(u))
    total = int(r.header("x-total-count"))
    check(total >= 4, total)
    last = (total + 1) // 2
    links = link_targets(r.header("link"))
    eq({"first", "next", "last"}, set(links))
    eq(("/api/users/users", {"page": "1", "per_page": "2"}), links["first"])
    eq(("/api/users/users", {"page": "2", "per_page": "2"}), links["next"])
    eq(("/api/users/users", {"page": str(last), "per_page": "2"}), links["last"])
    r2 = s.get("/api/users/users?page=2&per_page=2", token=token)
    eq(200, r2.status)
    eq(2, len(r2.json))
    check(not {u["id"] for u in r.json} & {u["id"] for u in r2.json}, "pages overlap")
    eq({"first", "prev", "next", "last"} if last > 2 else {"first", "prev", "last"},
       set(link_targets(r2.header("link"))))
    r3 = s.get("/api/users/users?page=%d&per_page=2" % last, token=token)
    eq(total - 2 * (last - 1), len(r3.json))
    check("next" not in link_targets(r3.header("link")), r3.headers)
    beyond = s.get("/api/users/users?page=%d&per_page=2" % (last + 5), token=token)
    eq(200, beyond.status)
    eq([], beyond.json)
    # the default page is 20 and the query's other parameters stay in the links
    r = s.get("/api/users/users?role=client&per_page=1", token=token)
    eq(1, len(r.json))
    eq("client", r.json[0]["role"])
    links = link_targets(r.header("link"))
    eq("client", links["next"][1]["role"])
    r = s.get("/api/users/users", token=token)
    eq(min(20, total), len(r.json))
    ids = [u["id"] for u in r.json]
    eq(sorted(ids), ids, "ordered by id")


@test
def admin_list_bad_parameters_are_422():
    s = server()
    token = admin_token()
    for query, field in [("per_page=101", "per_page"), ("per_page=0", "per_page"),
                         ("page=0", "page"), ("page=-1", "page"), ("page=abc", "page"),
                         ("per_page=1.5", "per_page"), ("role=superuser", "role")]:
        for path in ["/api/users/users", "/api/users"]:
            body = error_body(s.get("%s?%s" % (path, query), token=token), 422)
            check(field in body["fields"], "%s?%s: %r" % (path, query, body))
    eq(200, s.get("/api/users/users?per_page=100", token=token).status)


@test
def compat_list_is_every_row_unless_paged():
    s = server()
    token = admin_token()
    register(s)
    r = no_secrets(s.get("/api/users", token=token))
    eq(200, r.status)
    check(isinstance(r.json, list), r)
    total = int(r.header("x-total-count"))
    check(total > 20, "the seed and these tests make more than one page: %d" % total)
    eq(min(total, 1000), len(r.json))
    r = s.get("/api/users?per_page=2", token=token)
    eq(2, len(r.json))
    eq(("/api/users", {"page": "2", "per_page": "2"}), link_targets(r.header("link"))["next"])
    r = s.get("/api/users?page=1", token=token)
    eq(min(20, total), len(r.json))


@test
def compat_list_cap_comes_from_the_compat_section():
    s = Server(workers=1, env={"SPACER_COMPAT_MAX_LIST": "3"}).start()
    try:
        token = token_of(s, ADMIN_EMAIL, ADMIN_PASSWORD)
        r = s.get("/api/users", token=token)
        eq(200, r.status)
        eq(3, len(r.json))
        check(int(r.header("x-total-count")) > 3, r.headers)
    finally:
        s.close()


@test
def admin_reads_a_user_on_both_paths_and_404():
    s = server()
    token = admin_token()
    _, user = register(s)
    for path in ["/api/users/users/%d", "/api/users/%d"]:
        r = no_secrets(s.get(path % user["id"], token=token))
        eq(200, r.status)
        eq(user, r.json)
        error_body(s.get(path % 999999999, token=token), 404)


@test
def admin_updates_a_user():
    s = server()
    token = admin_token()
    email, user = register(s)
    new_email = unique_email("moved")
    r = no_secrets(s.patch("/api/users/users/%d" % user["id"], {
        "name": "Renamed", "email": " " + new_email.upper(), "role": "owner",
        "is_verified": True}, token=token))
    eq(200, r.status, "patch: %r" % r)
    eq({"message", "user"}, set(r.json))
    eq({"id": user["id"], "name": "Renamed", "email": new_email, "role": "owner",
        "is_verified": True, "created_at": user["created_at"]}, r.json["user"])
    eq("owner", login(s, new_email).json["user"]["role"])
    # the compat PUT, with the whole object and read-only fields
    r = no_secrets(s.put("/api/users/%d" % user["id"], {
        "id": 1, "name": "Put", "email": new_email, "role": "client", "is_verified": "false",
        "created_at": "2020-01-01T00:00:00Z"}, token=token))
    eq(200, r.status, "put: %r" % r)
    eq("Put", r.json["user"]["name"])
    eq("client", r.json["user"]["role"])
    eq(False, r.json["user"]["is_verified"])
    eq(user["id"], r.json["user"]["id"])
    # canonical: read-only fields are a 422; a taken email a 409; bad values 422
    for field, value in [("id", 5), ("created_at", "2020-01-01T00:00:00Z"),
                         ("password", "a new password"), ("password_hash", "x")]:
        body = error_body(s.patch("/api/users/users/%d" % user["id"], {field: value},
                                  token=token), 422)
        check(field in body["fields"], body)
    for body_, field in [({"role": "superuser"}, "role"), ({"email": "nope"}, "email"),
                         ({"is_verified": "maybe"}, "is_verified"), ({"name": ""}, "name")]:
        body = error_body(s.patch("/api/users/users/%d" % user["id"], body_, token=token), 422)
        check(field in body["fields"], body)
    other, _ = register(s)
    for method, path in [("PATCH", "/api/users/users/%d"), ("PUT", "/api/users/%d")]:
        body = error_body(s.request(method, path % user["id"], body={"email": other.upper()},
                                    token=token), 409)
        check("email" in body.get("fields", {}), body)
    error_body(s.patch("/api/users/users/999999999", {"name": "x"}, token=token), 404)
    error_body(s.put("/api/users/999999999", {"name": "x"}, token=token), 404)


@test
def admin_promotion_gives_admin_rights_at_once():
    s = server()
    token = admin_token()
    _, user, user_token = new_user(s)
    error_body(s.get("/api/users/users", token=user_token), 403)
    eq(200, s.patch("/api/users/users/%d" % user["id"], {"role": "admin"}, token=token).status)
    eq(200, s.get("/api/users/users", token=user_token).status, "the same token, now admin")
    # a non-last admin may step down, and loses the rights at once
    r = s.patch("/api/users/users/%d" % user["id"], {"role": "client"}, token=user_token)
    eq(200, r.status, "self-demotion with another admin left: %r" % r)
    error_body(s.get("/api/users/users", token=user_token), 403)
    eq(200, s.delete("/api/users/users/%d" % user["id"], token=token).status)


@test
def admin_deletes_a_user_then_404():
    s = server()
    token = admin_token()
    for path in ["/api/users/users/%d", "/api/users/%d"]:
        _, user = register(s)
        r = no_secrets(s.delete(path % user["id"], token=token))
        eq(200, r.status, "delete: %r" % r)
        eq({"message"}, set(r.json))
        error_body(s.get(path % user["id"], token=token), 404)
        error_body(s.delete(path % user["id"], token=token), 404)


@test
def a_user_who_still_owns_spaces_cannot_be_deleted():
    s = server()
    token = admin_token()
    owners = s.get("/api/users/users?role=owner&per_page=100", token=token).json
    owner = [u for u in owners if u["email"] == "owner1@example.com"]
    eq(1, len(owner), "the seed's owner1")
    for path in ["/api/users/users/%d", "/api/users/%d"]:
        body = error_body(s.delete(path % owner[0]["id"], token=token), 409, "user_in_use")
        if path == "/api/users/%d":
            eq(body["error"], body["message"])
    eq(200, s.get("/api/users/users/%d" % owner[0]["id"], token=token).status)


def admins(s, token):
    r = s.get("/api/users/users?role=admin&per_page=100", token=token)
    eq(200, r.status, "list admins: %r" % r)
    return r.json


def restore_seed_admin():
    """The seed's admin, as the seed made it, whatever a failed test left behind."""
    subprocess.run([BIN, "create-admin", "--email", ADMIN_EMAIL, "--name", "Admin"],
                   cwd=ROOT, input=ADMIN_PASSWORD + "\n", capture_output=True, text=True,
                   timeout=30)
    _admin.clear()


@test
def the_last_admin_cannot_delete_or_demote_themselves():
    s = server()
    token = admin_token()
    listed = admins(s, token)
    eq([ADMIN_EMAIL], [u["email"] for u in listed], "precondition: the seed's admin is the only one")
    me = admin_id()
    for method, path, body in [("PATCH", "/api/users/users/%d", {"role": "client"}),
                               ("PUT", "/api/users/%d", {"role": "owner"}),
                               ("DELETE", "/api/users/users/%d", None),
                               ("DELETE", "/api/users/%d", None)]:
        r = s.request(method, path % me, body=body, token=token)
        got = error_body(r, 409, "last_admin")
        check("last admin" in got["error"], got)
    eq("admin", s.get("/api/users/profile", token=token).json["role"])
    # staying admin is fine
    eq(200, s.patch("/api/users/users/%d" % me, {"role": "admin"}, token=token).status)


@test
def two_admins_removing_each_other_at_once_leave_one():
    s = server()
    try:
        for round_ in range(3):
            token = admin_token()
            me = admin_id()
            _, other, other_token = new_user(s)
            eq(200, s.patch("/api/users/users/%d" % other["id"], {"role": "admin"},
                            token=token).status)
            results = {}
            barrier = threading.Barrier(2)
            if round_ == 2:  # never the seed's admin deleted: its rows belong to others' tests
                calls = {"a": ("DELETE", other["id"], token, None),
                         "b": ("PATCH", me, other_token, {"role": "client"})}
            else:
                calls = {"a": ("PATCH", other["id"], token, {"role": "client"}),
                         "b": ("PATCH", me, other_token, {"role": "client"})}

            def go(key):
                method, target, tok, body = calls[key]
                barrier.wait(5)
                results[key] = s.request(method, "/api/users/users/%d" % target, body=body,
                                         token=tok)

            threads = [threading.Thread(target=go, args=(k,)) for k in calls]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            statuses = sorted(r.status for r in results.values())
            eq(200, statuses[0], "round %d: %r" % (round_, results))
            check(statuses[1] in (401, 403, 409), "round %d: %r" % (round_, results))
            winner = "a" if results["a"].status == 200 else "b"
            left = token if winner == "a" else other_token
            remaining = admins(s, left)
            eq(1, len(remaining), "round %d: admins left %r" % (round_, remaining))
            if winner == "b":  # the seed's admin lost: put it back
                eq(200, s.patch("/api/users/users/%d" % me, {"role": "admin"},
                                token=other_token).status)
            if s.get("/api/users/users/%d" % other["id"], token=admin_token()).status == 200:
                eq(200, s.delete("/api/users/users/%d" % other["id"], token=admin_token()).status)
    finally:
        r = login(s, ADMIN_EMAIL, ADMIN_PASSWORD)
        if r.status != 200 or r.json["user"]["role"] != "admin":
            restore_seed_admin()
    eq([ADMIN_EMAIL], [u["email"] for u in admins(s, admin_token())])


@test
def no_user_object_shows_a_password_hash():
    s = server()
    token = admin_token()
    for path in ["/api/users/users?per_page=100", "/api/users", "/api/users/profile",
                 "/api/profile"]:
        no_secrets(s.get(path, token=token))
    r = s.get("/api/users/users?per_page=100", token=token)
    for u in r.json:
        eq(PROFILE_KEYS, set(u))
