"""Bookings: requests and their rules, instant booking, the lists by role, who may see and
answer what, approve / decline / cancel (with the refund policy), 50 concurrent approvals of
one slot, prices kept at creation, and times in the space's zone (daylight saving included),
on canonical and compat paths.

Every test books its own uniquely named spaces, so nothing depends on other tests.
"""
import datetime
import random
import string
import threading

from harness import Server, check, eq, error_body, server, test

PASSWORD = "password123"
BOOKING_KEYS = {"id", "client_id", "space_id", "start_datetime", "end_datetime",
                "duration_hours", "guests", "notes", "total_price", "currency",
                "price_breakdown", "status", "decline_reason", "created_at", "updated_at",
                "space"}
EMBED_KEYS = {"id", "title", "location", "main_image_url"}

_tokens = {}
_lock = threading.Lock()


def token(who):
    """who: owner1, owner2, client1..3, admin."""
    with _lock:
        if who not in _tokens:
            if who == "admin":
                _tokens[who] = server().login("admin@spacer.com", "Admin123!")
            else:
                _tokens[who] = server().login("%s@example.com" % who, PASSWORD)
        return _tokens[who]


_ids = {}


def user_id(who):
    if who not in _ids:
        r = server().get("/api/users/profile", token=token(who))
        eq(200, r.status, "profile")
        _ids[who] = r.json["id"]
    return _ids[who]


def word(n=10):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def day(days):
    return datetime.datetime.utcnow().date() + datetime.timedelta(days=days)


def local(days, hour, minute=0):
    """A naive local time `days` from today, e.g. 2026-12-09T10:00."""
    return "%sT%02d:%02d" % (day(days).isoformat(), hour, minute)


def utc_in(hours):
    """An instant `hours` from now, with an offset (Z)."""
    t = datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def instant(text):
    """An ISO 8601 time with offset -> aware UTC datetime."""
    return datetime.datetime.fromisoformat(text).astimezone(datetime.timezone.utc)


def make_space(who="owner1", **over):
    body = {
        "title": "Booking Test " + word(6),
        "description": "A space made by the booking tests.",
        "location": "Bookville " + word(6),
        "capacity": 10,
        "price_per_hour": 500,
        "price_per_day": 0,
        "main_image_url": "https://img.example/%s.jpg" % word(4),
    }
    body.update(over)
    r = server().post("/api/spaces/spaces", body, token=token(who))
    eq(201, r.status, "create space: %r" % r)
    return r.json["space"]


def request(space_id, start, end, who="client1", path="/api/bookings/bookings", **extra):
    body = {"space_id": space_id, "start_datetime": start, "end_datetime": end}
    body.update(extra)
    return server().post(path, body, token=token(who))


def book(space_id, start, end, who="client1", **extra):
    r = request(space_id, start, end, who, **extra)
    eq(201, r.status, "create booking: %r" % r)
    return r.json["booking"]


def get(booking_id, who):
    return server().get("/api/bookings/bookings/%d" % booking_id, token=token(who))


def act(booking_id, action, who, body=None, compat=False):
    if compat:
        path = "/api/owner/bookings/%d/%s" % (booking_id, action)
    else:
        path = "/api/bookings/bookings/%d/%s" % (booking_id, action)
    return server().patch(path, body, token=token(who))


def fields_of(r):
    body = error_body(r, 422, "validation_failed")
    check(isinstance(body.get("fields"), dict), "no fields: %r" % r)
    return body["fields"]


def ids_of(r):
    eq(200, r.status, repr(r))
    check(isinstance(r.json, list), "not an array: %r" % r)
    return [x["id"] for x in r.json]


# Creating -------------------------------------------------------------------------------

@test
def create_booking_201_with_the_booking_shape_and_stored_price():
    sp = make_space(price_per_hour=500)
    r = request(sp["id"], local(10, 10), local(10, 12), guests="4", notes="Team offsite")
    eq(201, r.status, repr(r))
    eq({"message", "booking"}, set(r.json.keys()))
    b = r.json["booking"]
    eq(BOOKING_KEYS, set(b.keys()))
    eq(EMBED_KEYS, set(b["space"].keys()))
    eq({"id": sp["id"], "title": sp["title"], "location": sp["location"],
        "main_image_url": sp["main_image_url"]}, b["space"])
    eq("pending", b["status"])
    eq(user_id("client1"), b["client_id"])
    eq(sp["id"], b["space_id"])
    eq(local(10, 10) + ":00+03:00", b["start_datetime"])
    eq(local(10, 12) + ":00+03:00", b["end_datetime"])
    eq(2.0, b["duration_hours"])
    eq(4, b["guests"])
    eq("Team offsite", b["notes"])
    eq(1160.0, b["total_price"])
    eq("KES", b["currency"])
    eq(None, b["decline_reason"])
    pb = b["price_breakdown"]
    eq((1000.0, 160.0, 1160.0), (pb["subtotal"], pb["tax"], pb["total"]))
    eq([{"code": "hours", "description": "2 hours × KES 500.00", "quantity": 2,
         "unit_amount": 500.0, "amount": 1000.0}], pb["lines"])
    eq(b, get(b["id"], "client1").json)


@test
def the_price_is_kept_when_the_space_changes_its_price():
    s = server()
    sp = make_space(price_per_hour=500)
    b = book(sp["id"], local(11, 10), local(11, 12))
    r = s.patch("/api/spaces/spaces/%d" % sp["id"], {"price_per_hour": 900}, token=token("owner1"))
    eq(200, r.status)
    eq(1160.0, get(b["id"], "client1").json["total_price"])
    b2 = book(sp["id"], local(12, 10), local(12, 12))
    eq(2088.0, b2["total_price"])           # 2 x 900 + 16%
    r = s.get("/api/spaces/spaces/%d/quote?start=%s&end=%s" % (sp["id"], local(13, 10), local(13, 12)))
    eq(2088.0, r.json["total"])
    eq(1160.0, approve_ok(b["id"])["total_price"])


def approve_ok(booking_id, who="owner1", compat=False):
    r = act(booking_id, "approve", who, compat=compat)
    eq(200, r.status, "approve: %r" % r)
    eq("Booking approved", r.json["message"])
    return r.json["booking"]


@test
def compat_post_ignores_read_only_fields():
    sp = make_space()
    r = request(sp["id"], local(14, 10), local(14, 13), path="/api/bookings", status="confirmed",
                total_price="1", client_id=user_id("client2"), id=1, created_at="2020-01-01")
    eq(201, r.status, repr(r))
    b = r.json["booking"]
    eq("pending", b["status"])
    eq(1740.0, b["total_price"])
    eq(user_id("client1"), b["client_id"])
    eq(3.0, b["duration_hours"])


@test
def canonical_post_rejects_read_only_fields():
    sp = make_space()
    for field, value in [("status", "confirmed"), ("total_price", 1), ("client_id", 1),
                         ("id", 1), ("created_at", "2020-01-01T00:00:00Z")]:
        f = fields_of(request(sp["id"], local(14, 10), local(14, 12), **{field: value}))
        eq("may not be set", f.get(field), field)


@test
def create_booking_roles():
    s = server()
    sp = make_space()
    body = {"space_id": sp["id"], "start_datetime": local(15, 10), "end_datetime": local(15, 12)}
    error_body(s.post("/api/bookings/bookings", body), 401)
    error_body(s.post("/api/bookings", body), 401)
    error_body(s.post("/api/bookings/bookings", body, token="not.a.token"), 401)
    for who in ("owner1", "owner2", "admin"):
        error_body(s.post("/api/bookings/bookings", body, token=token(who)), 403, "forbidden")
    r = s.post("/api/bookings", body, token=token("owner1"))
    error_body(r, 403)
    check(r.json.get("message"), "compat error without message")


@test
def create_booking_rules_are_422_naming_the_field():
    s = server()
    sp = make_space(capacity=5)
    sid = sp["id"]
    f = fields_of(s.post("/api/bookings/bookings", {}, token=token("client1")))
    for name in ("space_id", "start_datetime", "end_datetime"):
        check(name in f, "%s: %r" % (name, f))
    f = fields_of(s.post("/api/bookings/bookings", None, token=token("client1")))
    check("space_id" in f, "empty body: %r" % f)
    cases = [
        ((sid, local(16, 12), local(16, 10)), {}, "end_datetime"),          # end before start
        ((sid, local(16, 10), local(16, 10)), {}, "end_datetime"),          # empty
        ((sid, utc_in(-48), utc_in(-46)), {}, "start_datetime"),            # in the past
        ((sid, utc_in(0.2), utc_in(2)), {}, "start_datetime"),              # notice < 60 min
        ((sid, local(16, 10), local(16, 10, 30)), {}, "end_datetime"),      # < 60 minutes
        ((sid, local(16, 10), local(16 + 31, 10)), {}, "end_datetime"),     # > 720 hours
        ((sid, local(16, 10), local(16, 12)), {"guests": 6}, "guests"),     # over capacity
        ((sid, local(16, 10), local(16, 12)), {"guests": 0}, "guests"),
        ((sid, local(16, 10), local(16, 12)), {"guests": "many"}, "guests"),
        ((sid, "tomorrow", local(16, 12)), {}, "start_datetime"),
        ((sid, local(16, 10), "2027-02-30T10:00"), {}, "end_datetime"),
        ((sid, local(16, 10), local(16, 12)), {"notes": 12}, "notes"),
        ((999999999, local(16, 10), local(16, 12)), {}, "space_id"),
        (("abc", local(16, 10), local(16, 12)), {}, "space_id"),
    ]
    for (space_id, start, end), extra, field in cases:
        for path in ("/api/bookings/bookings", "/api/bookings"):
            f = fields_of(request(space_id, start, end, path=path, **extra))
            check(field in f, "%s %s..%s %r: %r" % (path, start, end, extra, f))
    # guests at capacity is fine; a numeric string too
    eq(5, book(sid, local(16, 10), local(16, 12), guests="5")["guests"])
    r = s.post("/api/bookings/bookings", raw=b"{nope", token=token("client1"),
               headers={"Content-Type": "application/json"})
    error_body(r, 400)


@test
def an_unavailable_space_is_409():
    sp = make_space(is_available=False)
    for path in ("/api/bookings/bookings", "/api/bookings"):
        r = request(sp["id"], local(17, 10), local(17, 12), path=path)
        error_body(r, 409, "space_unavailable")


@test
def instant_book_confirms_and_the_constraint_answers_overlaps():
    s = server()
    sp = make_space(instant_book=True)
    r = request(sp["id"], local(18, 10), local(18, 12))
    eq(201, r.status)
    first = r.json["booking"]
    eq("confirmed", first["status"])
    eq("Booking confirmed", r.json["message"])
    for start, end in [(local(18, 11), local(18, 13)), (local(18, 9), local(18, 11)),
                       (local(18, 10), local(18, 12)), (local(18, 8), local(18, 14))]:
        r = request(sp["id"], start, end, who="client2")
        body = error_body(r, 409, "slot_taken")
        eq(first["id"], body.get("conflicting_booking_id"))
        check(str(first["id"]) in body["error"], "message does not name the booking: %r" % r)
    r = request(sp["id"], local(18, 11), local(18, 12), who="client3", path="/api/bookings")
    body = error_body(r, 409, "slot_taken")
    eq(first["id"], body.get("conflicting_booking_id"))
    eq(body["error"], body.get("message"))
    # adjacent slots are free
    eq("confirmed", book(sp["id"], local(18, 12), local(18, 14), who="client2")["status"])
    eq("confirmed", book(sp["id"], local(18, 8), local(18, 10), who="client3")["status"])
    r = s.get("/api/spaces/spaces/%d/availability?from=%s&to=%s"
              % (sp["id"], local(18, 0), local(19, 0)))
    eq(3, len(r.json))


# Lists and visibility --------------------------------------------------------------------

@test
def lists_are_scoped_by_role():
    s = server()
    sp1 = make_space("owner1")
    sp2 = make_space("owner2")
    a = book(sp1["id"], local(20, 10), local(20, 12), who="client1")
    b = book(sp1["id"], local(20, 10), local(20, 12), who="client2")
    c = book(sp2["id"], local(20, 10), local(20, 12), who="client1")
    mine = ids_of(s.get("/api/bookings/bookings?per_page=100", token=token("client1")))
    check(a["id"] in mine and c["id"] in mine and b["id"] not in mine, "client1: %r" % mine)
    check(int(s.get("/api/bookings/bookings", token=token("client1")).header("x-total-count"))
          >= 2, "total")
    mine = ids_of(s.get("/api/bookings/bookings?per_page=100", token=token("client2")))
    check(b["id"] in mine and a["id"] not in mine and c["id"] not in mine, "client2: %r" % mine)
    own = ids_of(s.get("/api/bookings/bookings?per_page=100", token=token("owner1")))
    check(a["id"] in own and b["id"] in own and c["id"] not in own, "owner1: %r" % own)
    own = ids_of(s.get("/api/bookings/bookings?per_page=100", token=token("owner2")))
    check(c["id"] in own and a["id"] not in own, "owner2: %r" % own)
    every = ids_of(s.get("/api/bookings/bookings?per_page=100", token=token("admin")))
    check({a["id"], b["id"], c["id"]} <= set(every), "admin: %r" % every)
    # compat paths: the same scopes, unpaged
    r = s.get("/api/bookings", token=token("client1"))
    check(a["id"] in ids_of(r) and b["id"] not in ids_of(r), "compat client")
    eq(None, r.header("link"))
    r = s.get("/api/owner/bookings", token=token("owner1"))
    check(a["id"] in ids_of(r) and c["id"] not in ids_of(r), "compat owner")
    r = s.get("/api/admin/bookings", token=token("admin"))
    check({a["id"], b["id"], c["id"]} <= set(ids_of(r)), "compat admin")
    error_body(s.get("/api/owner/bookings", token=token("client1")), 403)
    error_body(s.get("/api/admin/bookings", token=token("owner1")), 403)
    error_body(s.get("/api/admin/bookings", token=token("client1")), 403)
    error_body(s.get("/api/bookings/bookings"), 401)
    error_body(s.get("/api/bookings"), 401)
    # rows carry the space
    row = [x for x in s.get("/api/bookings", token=token("client1")).json if x["id"] == a["id"]][0]
    eq(sp1["title"], row["space"]["title"])
    eq(BOOKING_KEYS, set(row.keys()))


@test
def list_filter_status_and_paging():
    s = server()
    sp = make_space("owner2", instant_book=True)
    confirmed = book(sp["id"], local(21, 10), local(21, 11), who="client3")
    r = s.get("/api/bookings/bookings?status=confirmed&per_page=100", token=token("client3"))
    got = r.json
    check(confirmed["id"] in ids_of(r), "confirmed missing")
    check(all(x["status"] == "confirmed" for x in got), "status filter")
    r = s.get("/api/bookings/bookings?status=CONFIRMED&per_page=100", token=token("client3"))
    eq(200, r.status)
    r = s.get("/api/bookings/bookings?status=pending&per_page=100", token=token("client3"))
    check(confirmed["id"] not in ids_of(r), "filter leaks")
    for q, field in [("status=bogus", "status"), ("per_page=101", "per_page"),
                     ("page=0", "page")]:
        for path in ("/api/bookings/bookings?", "/api/bookings?", "/api/owner/bookings?"):
            who = "owner2" if "owner" in path else "client3"
            check(field in fields_of(s.get(path + q, token=token(who))), path + q)
    for i in range(3):
        book(sp["id"], local(22, 8 + 2 * i), local(22, 9 + 2 * i), who="client3")
    r = s.get("/api/bookings/bookings?status=confirmed&per_page=2", token=token("client3"))
    eq(2, len(r.json))
    total = int(r.header("x-total-count"))
    check(total >= 4, "total %d" % total)
    check('rel="next"' in r.header("link"), r.header("link"))
    # newest first
    check(r.json[0]["id"] > r.json[1]["id"], "order")
    last = (total + 1) // 2
    r = s.get("/api/bookings/bookings?status=confirmed&per_page=2&page=%d" % (last + 1),
              token=token("client3"))
    eq([], r.json)
    eq(str(total), r.header("x-total-count"))


@test
def a_booking_that_is_not_yours_is_404():
    s = server()
    sp = make_space("owner1")
    b = book(sp["id"], local(23, 10), local(23, 12), who="client1")
    eq(200, get(b["id"], "client1").status)
    eq(200, get(b["id"], "owner1").status)
    eq(200, get(b["id"], "admin").status)
    error_body(get(b["id"], "client2"), 404, "not_found")
    error_body(get(b["id"], "owner2"), 404, "not_found")
    error_body(get(999999999, "admin"), 404)
    error_body(s.get("/api/bookings/bookings/%d" % b["id"]), 401)
    # nor may strangers act on it
    error_body(act(b["id"], "approve", "owner2"), 404)
    error_body(act(b["id"], "decline", "owner2"), 404)
    error_body(act(b["id"], "approve", "owner2", compat=True), 404)
    error_body(act(b["id"], "cancel", "client2"), 404)
    error_body(act(b["id"], "cancel", "owner2"), 404)
    # a client never approves or declines, even their own
    error_body(act(b["id"], "approve", "client1"), 403)
    error_body(act(b["id"], "decline", "client1"), 403)
    error_body(act(b["id"], "approve", "client2", compat=True), 403)
    error_body(act(999999999, "approve", "owner1"), 404)
    eq("pending", get(b["id"], "client1").json["status"])


# Approving, declining, cancelling --------------------------------------------------------

@test
def approve_confirms_and_declines_overlapping_requests():
    sp = make_space("owner1")
    a = book(sp["id"], local(24, 10), local(24, 12), who="client1")
    b = book(sp["id"], local(24, 11), local(24, 13), who="client2")
    c = book(sp["id"], local(24, 12), local(24, 14), who="client3")     # adjacent to a
    d = book(sp["id"], local(25, 10), local(25, 12), who="client2")     # another day
    got = approve_ok(a["id"], compat=True)           # the web app: no body at all
    eq("confirmed", got["status"])
    eq(BOOKING_KEYS, set(got.keys()))
    r = get(b["id"], "client2").json
    eq("declined", r["status"])
    eq("slot no longer available", r["decline_reason"])
    eq("pending", get(c["id"], "client3").json["status"])
    eq("pending", get(d["id"], "client2").json["status"])
    # approving again, or the declined one: 409
    error_body(act(a["id"], "approve", "owner1"), 409, "invalid_status")
    error_body(act(b["id"], "approve", "owner1"), 409, "invalid_status")
    # the adjacent one can be approved; an admin may approve
    eq("confirmed", approve_ok(c["id"], who="admin")["status"])
    # a new request overlapping a confirmed booking can be made, not approved
    e = book(sp["id"], local(24, 9), local(24, 10, 30), who="client3")
    r = act(e["id"], "approve", "owner1")
    body = error_body(r, 409, "slot_taken")
    eq(a["id"], body.get("conflicting_booking_id"))
    eq("pending", get(e["id"], "client3").json["status"])


@test
def decline_with_and_without_a_reason():
    sp = make_space("owner1")
    a = book(sp["id"], local(26, 10), local(26, 12))
    b = book(sp["id"], local(26, 14), local(26, 16))
    r = act(a["id"], "decline", "owner1", {"reason": "Closed for a private event"})
    eq(200, r.status, repr(r))
    eq("Booking declined", r.json["message"])
    eq("declined", r.json["booking"]["status"])
    eq("Closed for a private event", r.json["booking"]["decline_reason"])
    r = act(b["id"], "decline", "owner1", compat=True)
    eq(200, r.status, repr(r))
    eq(None, r.json["booking"]["decline_reason"])
    error_body(act(a["id"], "decline", "owner1"), 409, "invalid_status")
    error_body(act(a["id"], "approve", "owner1"), 409, "invalid_status")
    error_body(act(a["id"], "cancel", "client1"), 409, "invalid_status")
    check("reason" in fields_of(act(a["id"], "decline", "owner1", {"reason": 5})), "reason type")
    # a confirmed booking cannot be declined
    c = book(sp["id"], local(27, 10), local(27, 12))
    approve_ok(c["id"])
    error_body(act(c["id"], "decline", "admin"), 409, "invalid_status")


@test
def cancel_and_the_refund_policy():
    s = server()
    sp = make_space("owner1", price_per_hour=1000)
    # a pending request: everything back
    p = book(sp["id"], local(28, 10), local(28, 12))
    r = act(p["id"], "cancel", "client1")
    eq(200, r.status, repr(r))
    eq("cancelled", r.json["booking"]["status"])
    eq({"percent": 100, "amount": 2320.0, "currency": "KES"}, r.json["refund"])
    error_body(act(p["id"], "cancel", "client1"), 409, "invalid_status")
    # confirmed, with notice >= 48h: 100%; >= 24h: 50%; less: nothing
    for hours_ahead, percent, amount in [(24 * 5, 100, 2320.0), (30, 50, 1160.0), (3, 0, 0.0)]:
        b = book(sp["id"], utc_in(hours_ahead), utc_in(hours_ahead + 2))
        approve_ok(b["id"])
        r = act(b["id"], "cancel", "client1")
        eq(200, r.status, repr(r))
        eq(percent, r.json["refund"]["percent"], "%dh ahead" % hours_ahead)
        eq(amount, r.json["refund"]["amount"], "%dh ahead" % hours_ahead)
    # the host cancelling refunds in full, whatever the notice; admins too
    for who in ("owner1", "admin"):
        b = book(sp["id"], utc_in(4), utc_in(6), who="client2")
        approve_ok(b["id"])
        r = act(b["id"], "cancel", who)
        eq(200, r.status, repr(r))
        eq(100, r.json["refund"]["percent"])
        eq("cancelled", get(b["id"], "client2").json["status"])
    # cancelled slots are free again
    b = book(sp["id"], utc_in(3), utc_in(5), who="client3")
    eq("confirmed", approve_ok(b["id"])["status"])
    error_body(s.patch("/api/bookings/bookings/%d/cancel" % b["id"]), 401)


@test
def fifty_concurrent_approvals_of_one_slot_confirm_exactly_one():
    s = server()
    sp = make_space("owner2", capacity=100)
    clients = ["client1", "client2", "client3"]
    ids = []
    for i in range(50):
        # overlapping requests: every one covers 10:00-11:00 of the same day
        start = local(35, 8 + i % 3)
        end = local(35, 11 + i % 2)
        ids.append(book(sp["id"], start, end, who=clients[i % 3])["id"])
    owner = token("owner2")
    results = [None] * len(ids)
    barrier = threading.Barrier(len(ids))

    def approve_one(i):
        conn = s.connection(timeout=30)
        try:
            barrier.wait()
            results[i] = s.request("PATCH", "/api/bookings/bookings/%d/approve" % ids[i],
                                   token=owner, conn=conn)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=approve_one, args=(i,)) for i in range(len(ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = []
    for r in results:
        check(not isinstance(r, Exception) and r is not None, "request failed: %r" % (r,))
        statuses.append(r.status)
    eq(1, statuses.count(200), "approvals that succeeded: %r" % statuses)
    eq(49, statuses.count(409), "conflicts: %r" % statuses)
    for r in results:
        if r.status == 409:
            check(r.json["code"] in ("invalid_status", "slot_taken"), repr(r))
    winner = ids[statuses.index(200)]
    final = {}
    for bid in ids:
        final[bid] = get(bid, "owner2").json
    eq(["confirmed"], [final[winner]["status"]])
    for bid in ids:
        if bid != winner:
            eq("declined", final[bid]["status"], "booking %d" % bid)
            eq("slot no longer available", final[bid]["decline_reason"])
    r = s.get("/api/spaces/spaces/%d/availability?from=%s&to=%s"
              % (sp["id"], local(35, 0), local(36, 0)))
    eq(1, len(r.json))


# Times -------------------------------------------------------------------------------------

@test
def an_impossible_date_is_422_even_with_a_leap_second():
    sp = make_space()
    y = day(0).year + 1
    cases = [
        ("%d-02-27T10:00" % y, "%d-02-30T23:59:60" % y, "end_datetime"),
        ("%d-04-31T23:59:60" % y, "%d-05-01T03:00" % y, "start_datetime"),
        ("%d-04-31T23:59:60+03:00" % y, "%d-05-01T03:00+03:00" % y, "start_datetime"),
    ]
    for start, end, field in cases:
        f = fields_of(request(sp["id"], start, end))
        check(field in f, "%s..%s: %r" % (start, end, f))
        check("ISO 8601" in f[field], "%s..%s: %r" % (start, end, f))
    # a genuine leap second is the next minute's :00, with an offset or without
    b = book(sp["id"], "%d-06-10T09:59:60" % y, "%d-06-10T11:59:60+03:00" % y)
    eq("%d-06-10T10:00:00+03:00" % y, b["start_datetime"])
    eq("%d-06-10T12:00:00+03:00" % y, b["end_datetime"])


@test
def a_naive_time_books_the_local_hour_of_the_space():
    sp = make_space()
    b = book(sp["id"], local(40, 10), local(40, 12))
    eq(local(40, 10) + ":00+03:00", b["start_datetime"])
    d = day(40).isoformat()
    eq(datetime.datetime.fromisoformat(d + "T07:00:00+00:00"), instant(b["start_datetime"]))
    eq(datetime.datetime.fromisoformat(d + "T09:00:00+00:00"), instant(b["end_datetime"]))
    # an offset is honoured and shown in the space's zone
    b = book(sp["id"], d + "T13:00:00Z", d + "T14:30:00+00:00")
    eq(d + "T16:00:00+03:00", b["start_datetime"])
    eq(d + "T17:30:00+03:00", b["end_datetime"])
    eq(1.5, b["duration_hours"])
    eq(1160.0, b["total_price"])      # a started hour counts: 2 hours
    b = book(sp["id"], d + "T20:00+0100", d + "T21:00+01:00")
    eq(d + "T22:00:00+03:00", b["start_datetime"])


@test
def daylight_saving_in_london():
    s = server()
    sp = make_space(timezone="Europe/London", instant_book=True)
    summer = book(sp["id"], "2027-07-14T10:00", "2027-07-14T12:00")
    eq("2027-07-14T10:00:00+01:00", summer["start_datetime"])
    eq(datetime.datetime(2027, 7, 14, 9, 0, tzinfo=datetime.timezone.utc),
       instant(summer["start_datetime"]))
    winter = book(sp["id"], "2027-01-13T10:00", "2027-01-13T12:00")
    eq("2027-01-13T10:00:00+00:00", winter["start_datetime"])
    eq(datetime.datetime(2027, 1, 13, 10, 0, tzinfo=datetime.timezone.utc),
       instant(winter["start_datetime"]))
    # across the change (2027-03-28 01:00 UTC): 00:00 to 03:00 local is only 2 hours
    across = book(sp["id"], "2027-03-28T00:00", "2027-03-28T03:00")
    eq("2027-03-28T00:00:00+00:00", across["start_datetime"])
    eq("2027-03-28T03:00:00+01:00", across["end_datetime"])
    eq(2.0, across["duration_hours"])
    # the stored instants: busy intervals in a UTC window
    r = s.get("/api/spaces/spaces/%d/availability?from=2027-07-14T09:00:00Z&to=2027-07-14T09:30:00Z"
              % sp["id"])
    eq([{"start": "2027-07-14T10:00:00+01:00", "end": "2027-07-14T12:00:00+01:00"}], r.json)
    r = s.get("/api/spaces/spaces/%d/availability?from=2027-01-13T09:00:00Z&to=2027-01-13T09:59:00Z"
              % sp["id"])
    eq([], r.json)
    # the same naive hour in Nairobi is another instant
    nairobi = make_space(instant_book=True)
    b = book(nairobi["id"], "2027-07-14T10:00", "2027-07-14T12:00")
    eq(datetime.datetime(2027, 7, 14, 7, 0, tzinfo=datetime.timezone.utc),
       instant(b["start_datetime"]))


STARTED_ROUTE = r'''
-- test only: a booking whose start has passed (no route can make one)
spacer.post("/test/b6/started-booking", function(req)
  local b = req.body
  local row = spacer.db.one([[
    INSERT INTO bookings (space_id, client_id, start_at, end_at, status, currency,
                          subtotal_minor, tax_minor, total_minor)
    VALUES ($1, $2, now() - interval '1 hour', now() + interval '1 hour', $3::booking_status,
            'KES', 100000, 16000, 116000)
    RETURNING id]], b.space_id, b.client_id, b.status)
  return 201, { id = row.id }
end)
'''


@test
def a_booking_that_has_started_cannot_be_approved_or_cancelled():
    own = Server(workers=1, extra_routes=STARTED_ROUTE).start()
    try:
        o = own.login("owner1@example.com", PASSWORD)
        c = own.login("client1@example.com", PASSWORD)
        r = own.post("/api/spaces/spaces", {"title": "Started " + word(6), "description": "d",
                                            "location": "x", "capacity": 5, "price_per_hour": 500,
                                            "price_per_day": 0}, token=o)
        eq(201, r.status)
        sid = r.json["space"]["id"]
        cid = own.get("/api/users/profile", token=c).json["id"]
        pending = own.post("/test/b6/started-booking",
                           {"space_id": sid, "client_id": cid, "status": "pending"}).json["id"]
        for path in ("/api/bookings/bookings/%d/approve", "/api/owner/bookings/%d/approve"):
            error_body(own.patch(path % pending, token=o), 409, "booking_started")
        eq("pending", own.get("/api/bookings/bookings/%d" % pending, token=c).json["status"])
        # a pending request may still be declined or withdrawn
        eq(200, own.patch("/api/bookings/bookings/%d/decline" % pending, token=o).status)
        confirmed = own.post("/test/b6/started-booking",
                             {"space_id": sid, "client_id": cid, "status": "confirmed"}).json["id"]
        for who in (c, o):
            error_body(own.patch("/api/bookings/bookings/%d/cancel" % confirmed, token=who), 409,
                       "booking_started")
        # a booking under way keeps its space: 409 on delete
        error_body(own.delete("/api/spaces/spaces/%d" % sid, token=o), 409, "space_has_bookings")
    finally:
        own.close()
