"""Conditional GET and the answer cache: ETag / If-None-Match -> 304 on the public space
reads, cached answers dropped when the database announces a change (from this instance or
another one on the same database), private answers never shared between users, and the
users behind tokens kept current (a deleted or demoted user loses access at once).

Waits are bounded polls for a notification to arrive (milliseconds in practice); the
second instance keeps answers for 300 s, so only a notification can make it see a change.
"""
import os
import random
import re
import string
import subprocess
import time

from harness import Server, check, eq, error_body, server, test

PASSWORD = "password123"
ADMIN = ("admin@spacer.com", "Admin123!")


def word(n=10):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def metric(s, name):
    r = s.get("/metrics")
    eq(200, r.status, "metrics")
    m = re.search(r"^%s (\d+)$" % name, r.text, re.M)
    check(m, "no %s in /metrics" % name)
    return int(m.group(1))


def new_user(s, role="client"):
    email = "cache-%s@example.com" % word(12)
    r = s.post("/api/users/register", {"name": "Cache " + role, "email": email,
                                       "password": PASSWORD, "role": role})
    eq(201, r.status, "register %r" % r)
    return r.json["user"]["id"], s.login(email, PASSWORD)


def new_space(s, token, title):
    r = s.post("/api/spaces/spaces", {
        "title": title, "description": "a room for tests of the cache", "location": "Nairobi",
        "capacity": 10, "price_per_hour": "500.00", "price_per_day": 3000,
        "amenities": ["wifi", "projector"],
    }, token=token)
    eq(201, r.status, "create space %r" % r)
    return r.json["space"]["id"]


def until(fn, what, timeout=5.0):
    """Polls fn() until it returns a true value (bounded); that value."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("not within %.0f s: %s" % (timeout, what))
        time.sleep(0.02)


def warm(s, conn, path):
    """GETs path on one connection (one worker) until it is a cache hit: the ETag."""
    def hit():
        before = metric(s, "spacer_cache_hits_total")
        r = s.get(path, conn=conn)
        eq(200, r.status, "GET %s" % path)
        return r.header("etag") if metric(s, "spacer_cache_hits_total") > before else None
    return until(hit, "a cache hit on " + path)


PUBLIC = ["/api/spaces/spaces?q={w}", "/api/spaces?q={w}", "/api/spaces/spaces/{id}",
          "/api/spaces/{id}", "/api/spaces/spaces/{id}/availability",
          "/api/spaces/spaces/{id}/quote?start=2030-01-08T10:00&end=2030-01-08T12:00"]


@test
def public_reads_carry_an_etag_and_answer_304_when_it_matches():
    s = server()
    _, owner = new_user(s, "owner")
    w = word()
    sid = new_space(s, owner, "Cache etag " + w)
    for p in PUBLIC:
        path = p.format(w=w, id=sid)
        r = s.get(path)
        eq(200, r.status, path)
        etag = r.header("etag")
        check(etag and re.fullmatch(r'"[0-9a-f]{16}"', etag), "%s: ETag %r" % (path, etag))
        for inm in [etag, "W/" + etag, '"nope", ' + etag, "*"]:
            r2 = s.get(path, headers={"If-None-Match": inm})
            eq(304, r2.status, "%s with If-None-Match %s" % (path, inm))
            eq(b"", r2.raw, "a 304 has no body")
            eq(etag, r2.header("etag"), "the 304's ETag")
            check(r2.header("x-request-id"), "no X-Request-Id on the 304")
        r3 = s.get(path, headers={"If-None-Match": '"0000000000000000"'})
        eq(200, r3.status, "another tag")
        eq(r.json, r3.json, "the same answer")
        eq(etag, r3.header("etag"), "the same tag for the same answer")
    # The list's headers (totals, links) are part of the cached answer.
    r = s.get("/api/spaces/spaces?q=%s&per_page=1" % w)
    eq("1", r.header("x-total-count"))
    check('rel="first"' in (r.header("link") or ""), "Link: %r" % r.header("link"))


@test
def a_change_on_this_instance_is_seen_at_once():
    s = server()
    _, owner = new_user(s, "owner")
    w = word()
    sid = new_space(s, owner, "Cache before " + w)
    conns = [s.connection(), s.connection()]  # with two workers, likely one each
    try:
        tags = {}
        for path in ["/api/spaces/spaces?q=%s" % w, "/api/spaces/spaces/%d" % sid]:
            tags[path] = warm(s, conns[0], path)
            s.get(path, conn=conns[1])
        r = s.patch("/api/spaces/spaces/%d" % sid, {"title": "Cache after " + w}, token=owner)
        eq(200, r.status, "patch %r" % r)
        for c in conns:
            for path, etag in tags.items():
                r = s.get(path, headers={"If-None-Match": etag}, conn=c)
                eq(200, r.status, "%s after the change" % path)
                body = r.json[0] if isinstance(r.json, list) else r.json
                eq("Cache after " + w, body["title"], path)
                check(r.header("etag") != etag, "a new ETag")
    finally:
        for c in conns:
            c.close()


@test
def private_answers_are_never_shared_between_users():
    s = server()
    a_id, a = new_user(s)
    b_id, b = new_user(s)
    _, owner = new_user(s, "owner")
    sid = new_space(s, owner, "Cache private " + word())
    for day, tok in [(40, a), (41, b)]:
        r = s.post("/api/bookings/bookings", {"space_id": sid,
                                              "start_datetime": "2031-03-%02dT10:00" % (day - 30),
                                              "end_datetime": "2031-03-%02dT12:00" % (day - 30)},
                   token=tok)
        eq(201, r.status, "booking %r" % r)
    hits = metric(s, "spacer_cache_hits_total")
    conn = s.connection()
    try:
        for _ in range(3):
            for uid, tok in [(a_id, a), (b_id, b)]:
                r = s.get("/api/users/profile", token=tok, conn=conn)
                eq(200, r.status)
                eq(uid, r.json["id"], "the caller's own profile")
                r = s.get("/api/bookings/bookings", token=tok, conn=conn)
                eq(200, r.status)
                eq(1, len(r.json), "one booking")
                eq(uid, r.json[0]["client_id"], "only own bookings")
                check(r.header("etag") is None, "no ETag on a private list")
                r = s.get("/api/payments/payments", token=tok, conn=conn)
                eq(200, r.status, "payments %r" % r)
                check(all(p["client_id"] == uid for p in r.json), "only own payments")
                check(r.header("etag") is None, "no ETag on private payments")
    finally:
        conn.close()
    eq(hits, metric(s, "spacer_cache_hits_total"), "no private answer came from the cache")


@test
def verified_tokens_are_counted_in_metrics():
    s = server()
    _, tok = new_user(s)  # a token no worker has seen
    time.sleep(1.2)  # workers publish their counts once a second: what came before is in
    hits = metric(s, "spacer_token_cache_hits_total")
    misses = metric(s, "spacer_token_cache_misses_total")
    conn = s.connection()
    try:
        for _ in range(4):  # one keep-alive connection: one worker
            r = s.get("/api/users/profile", token=tok, conn=conn)
            eq(200, r.status, "profile %r" % r)
    finally:
        conn.close()
    until(lambda: metric(s, "spacer_token_cache_hits_total") >= hits + 3 or None,
          "three hits of the token cache in /metrics")
    eq(misses + 1, metric(s, "spacer_token_cache_misses_total"),
       "the token verified in full once")


@test
def a_route_that_needs_a_token_cannot_be_cached():
    srv = Server(workers=1, extra_routes='''
spacer.get("/test/private-cached", { auth = true, cache = { "bookings" } }, function(req)
  return 200, { id = req.user.id }
end)
''')
    try:
        srv.start(wait=False)
        srv.proc.wait(15)
        check(srv.proc.returncode != 0, "the server must refuse to start")
        check("cannot be cached" in srv.logs(), "the reason: %s" % srv.logs())
    finally:
        srv.close()


@test
def a_write_on_one_instance_reaches_the_cache_of_another():
    s = server()
    other = Server(workers=2, env={"SPACER_CACHE_TTL": "300"}).start()
    conn = other.connection()
    try:
        _, owner = new_user(s, "owner")
        w = word()
        sid = new_space(s, owner, "Cache two " + w)
        list_path, one_path = "/api/spaces/spaces?q=%s" % w, "/api/spaces/%d" % sid
        warm(other, conn, list_path)
        warm(other, conn, one_path)
        invalidations = metric(other, "spacer_cache_invalidations_total")
        r = s.patch("/api/spaces/spaces/%d" % sid, {"capacity": 77}, token=owner)
        eq(200, r.status, "patch on the first instance")
        until(lambda: other.get(list_path, conn=conn).json[0]["capacity"] == 77,
              "the second instance's cached list shows the change")
        until(lambda: other.get(one_path, conn=conn).json["capacity"] == 77,
              "the second instance's cached space shows the change")
        check(metric(other, "spacer_cache_invalidations_total") > invalidations,
              "the notification is counted")
        # A new space appears in the other instance's cached list too.
        warm(other, conn, list_path)
        new_space(s, owner, "Cache two more " + w)
        until(lambda: len(other.get(list_path, conn=conn).json) == 2,
              "the new space in the second instance's list")
    finally:
        conn.close()
        other.close()


@test
def two_instances_give_one_answer_one_etag():
    """Behind a load balancer a client's If-None-Match reaches any instance: each must tag the
    same answer alike (JSON objects are written in key order, not in Lua's per-process table
    order)."""
    s = server()
    other = Server(workers=2).start()
    try:
        _, owner = new_user(s, "owner")
        w = word()
        sid = new_space(s, owner, "Cache alike " + w)
        for path in ["/api/spaces/spaces?q=%s&per_page=5" % w, "/api/spaces/spaces/%d" % sid,
                     "/api/spaces?q=%s" % w]:
            a, b = s.get(path), other.get(path)
            eq(200, a.status, path)
            eq(a.raw, b.raw, "%s: the same bytes from both instances" % path)
            check(a.header("etag"), "%s: an ETag" % path)
            eq(a.header("etag"), b.header("etag"), "%s: the same ETag from both instances" % path)
            eq(304, other.get(path, headers={"If-None-Match": a.header("etag")}).status,
               "%s: the first instance's tag is fresh on the second" % path)
    finally:
        other.close()


@test
def the_cache_can_be_turned_off_and_etags_stay():
    srv = Server(workers=1, env={"SPACER_CACHE_ENABLED": "off"}).start()
    try:
        path = "/api/spaces?q=" + word()
        r = srv.get(path)
        eq(200, r.status)
        etag = r.header("etag")
        check(etag, "an ETag without the cache")
        eq(304, srv.get(path, headers={"If-None-Match": etag}).status, "304 without the cache")
        for _ in range(3):
            srv.get(path)
        eq(0, metric(srv, "spacer_cache_hits_total"), "no hits with the cache off")
    finally:
        srv.close()


@test
def a_deleted_or_demoted_user_loses_access_at_once_on_both_instances():
    s = server()
    other = Server(workers=2, env={"SPACER_CACHE_TTL": "300"}).start()
    conns = {srv: [srv.connection(), srv.connection()] for srv in (s, other)}
    try:
        admin = s.login(*ADMIN)
        uid, tok = new_user(s, "owner")
        r = s.get("/api/users/users/%d" % uid, token=admin)
        eq(200, r.status)
        user = r.json
        promoted = {"name": user["name"], "email": user["email"], "role": "admin",
                    "is_verified": True}
        eq(200, s.patch("/api/users/users/%d" % uid, promoted, token=admin).status, "promote")

        def status(srv, conn, path):
            return srv.get(path, token=tok, conn=conn).status

        for srv, cs in conns.items():  # the user's row is now in the workers' copies
            for c in cs:
                for _ in range(3):
                    eq(200, status(srv, c, "/api/users/users"), "an admin's route")
        demoted = dict(promoted, role="client")
        eq(200, s.patch("/api/users/users/%d" % uid, demoted, token=admin).status, "demote")
        for c in conns[s]:
            eq(403, status(s, c, "/api/users/users"), "demoted: at once on this instance")
        for c in conns[other]:
            until(lambda: status(other, c, "/api/users/users") == 403,
                  "demoted on the other instance")
            eq(200, status(other, c, "/api/users/profile"), "still a user")
        eq(200, s.delete("/api/users/users/%d" % uid, token=admin).status, "delete")
        for c in conns[s]:
            eq(401, status(s, c, "/api/users/profile"), "deleted: at once on this instance")
        for c in conns[other]:
            until(lambda: status(other, c, "/api/users/profile") == 401,
                  "deleted on the other instance")
    finally:
        for cs in conns.values():
            for c in cs:
                c.close()
        other.close()


@test
def a_listed_booking_is_the_booking_shown_alone():
    # Lists write rows straight to JSON from SQL; one booking is shaped in Lua (routes/
    # bookings.lua keeps both): the same booking must look the same both ways.
    s = server()
    _, client = new_user(s)
    _, owner = new_user(s, "owner")
    sid = new_space(s, owner, "Cache shapes " + word())
    r = s.post("/api/bookings/bookings", {"space_id": sid, "start_datetime": "2031-05-06T09:30",
                                          "end_datetime": "2031-05-06T11:10", "guests": 3,
                                          "notes": "line\n\"two\""}, token=client)
    eq(201, r.status, "booking %r" % r)
    created = r.json["booking"]
    listed = s.get("/api/bookings/bookings", token=client).json
    eq([created], listed, "the list")
    eq(created, s.get("/api/bookings/bookings/%d" % created["id"], token=client).json, "one")
    check(s.get("/api/bookings", token=client).raw.find(b'"total_price":') > 0, "compat path")
    eq(created, s.get("/api/owner/bookings", token=owner).json[0], "the owner's list")


def psql(sql):
    r = subprocess.run(["psql", os.environ["DATABASE_URL"], "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr)
    return r.stdout


@test
def a_lost_notification_connection_forgets_the_cache_when_it_is_back():
    # A change made while a worker cannot hear notifications is never announced to it: when
    # its LISTEN connection is back, it must drop everything it kept.
    srv = Server(workers=1, env={"SPACER_CACHE_TTL": "300"}).start()
    conn = srv.connection()
    try:
        _, owner = new_user(server(), "owner")
        w = word()
        sid = new_space(server(), owner, "Cache lost " + w)
        path = "/api/spaces/spaces/%d" % sid
        warm(srv, conn, path)
        flushes = metric(srv, "spacer_cache_invalidations_total")
        # Unannounced (as if its notification were lost), then the connection is cut.
        psql("ALTER TABLE spaces DISABLE TRIGGER spaces_notify_change;"
             " UPDATE spaces SET title = 'Cache lost after %s' WHERE id = %d;"
             " ALTER TABLE spaces ENABLE TRIGGER spaces_notify_change" % (w, sid))
        eq("Cache lost " + w, srv.get(path, conn=conn).json["title"], "still the kept answer")
        psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE application_name = 'spacer-listen'")
        # While it is down nothing is served from the cache; once it is back, all is dropped.
        until(lambda: metric(srv, "spacer_cache_invalidations_total") > flushes,
              "the connection back, and the flush counted")
        eq("Cache lost after " + w, srv.get(path, conn=conn).json["title"], "the new title")
        warm(srv, conn, path)  # and the cache works again
        hits, misses = (metric(srv, "spacer_cache_%s_total" % k) for k in ("hits", "misses"))
        eq(200, srv.get(path, conn=conn).status)
        eq((hits + 1, misses), (metric(srv, "spacer_cache_hits_total"),
                                metric(srv, "spacer_cache_misses_total")), "one hit, no miss")
    finally:
        conn.close()
        srv.close()
