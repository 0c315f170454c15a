"""Spaces: the public list (search, filters, paging), one space, an owner's own spaces,
availability, quotes, and create / update / soft delete with ownership, on canonical and
compat paths.

Every test makes its own uniquely named spaces and filters on a word no other space has, so
results do not depend on the seed, on other tests or on their order.
"""
import datetime
import random
import string
import threading
from urllib.parse import quote as urlquote

from harness import Server, check, eq, error_body, server, test

PASSWORD = "password123"
SPACE_KEYS = {"id", "owner_id", "title", "description", "location", "capacity", "amenities",
              "price_per_hour", "price_per_day", "currency", "timezone", "is_available",
              "main_image_url", "instant_book", "created_at", "updated_at"}

_tokens = {}
_lock = threading.Lock()


def token(who):
    """who: owner1, owner2, client1, client2, admin."""
    with _lock:
        if who not in _tokens:
            if who == "admin":
                _tokens[who] = server().login("admin@spacer.com", "Admin123!")
            else:
                _tokens[who] = server().login("%s@example.com" % who, PASSWORD)
        return _tokens[who]


def user_id(who):
    r = server().get("/api/users/profile", token=token(who))
    eq(200, r.status, "profile")
    return r.json["id"]


def word(n=10):
    """A word no other space uses (letters only: one token for full-text search)."""
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def local(days, hour, minute=0):
    """A naive local time `days` from today (UTC date), e.g. 2026-12-09T10:00."""
    d = datetime.datetime.utcnow().date() + datetime.timedelta(days=days)
    return "%sT%02d:%02d" % (d.isoformat(), hour, minute)


def weekday(days_ahead, hour):
    """A naive time on a Tuesday at least days_ahead days from today."""
    d = datetime.datetime.utcnow().date() + datetime.timedelta(days=days_ahead)
    while d.weekday() != 1:
        d += datetime.timedelta(days=1)
    return "%sT%02d:00" % (d.isoformat(), hour)


def space_body(**over):
    body = {
        "title": "Test Space " + word(6),
        "description": "A space made by the API tests.",
        "location": "Testville " + word(6),
        "capacity": 20,
        "price_per_hour": 500,
        "price_per_day": 0,
        "amenities": ["wifi", "projector"],
    }
    body.update(over)
    return body


def make_space(who="owner1", **over):
    r = server().post("/api/spaces/spaces", space_body(**over), token=token(who))
    eq(201, r.status, "create space: %r" % r)
    return r.json["space"]


def book(space_id, start, end, who="client1", **extra):
    body = {"space_id": space_id, "start_datetime": start, "end_datetime": end}
    body.update(extra)
    r = server().post("/api/bookings/bookings", body, token=token(who))
    eq(201, r.status, "create booking: %r" % r)
    return r.json["booking"]


def approve(booking_id, who="owner1"):
    r = server().patch("/api/bookings/bookings/%d/approve" % booking_id, token=token(who))
    eq(200, r.status, "approve: %r" % r)
    return r.json["booking"]


def titles(r):
    return sorted(x["title"] for x in r.json)


def fields_of(r):
    body = error_body(r, 422, "validation_failed")
    check(isinstance(body.get("fields"), dict), "no fields: %r" % r)
    return body["fields"]


# The public list -----------------------------------------------------------------------

@test
def public_list_is_an_array_with_total_and_links():
    s = server()
    tag = word()
    for i in range(5):
        make_space(title="Paged %s %d" % (tag, i), location="Pageton " + tag)
    r = s.get("/api/spaces/spaces?location=%s&per_page=2" % tag)
    eq(200, r.status)
    check(isinstance(r.json, list), "not an array: %r" % r)
    eq(2, len(r.json))
    eq("5", r.header("x-total-count"))
    link = r.header("link")
    check('rel="first"' in link and 'rel="next"' in link and 'rel="last"' in link, link)
    check("page=3" in link and 'rel="prev"' not in link, link)
    check(set(r.json[0].keys()) == SPACE_KEYS, "keys: %r" % sorted(r.json[0].keys()))
    # newest first
    eq(["Paged %s 4" % tag, "Paged %s 3" % tag], [x["title"] for x in r.json])
    r = s.get("/api/spaces/spaces?location=%s&per_page=2&page=3" % tag)
    eq(1, len(r.json))
    check('rel="prev"' in r.header("link") and 'rel="next"' not in r.header("link"), r.header("link"))
    r = s.get("/api/spaces/spaces?location=%s&per_page=2&page=9" % tag)
    eq(200, r.status)
    eq([], r.json)
    eq("5", r.header("x-total-count"))


@test
def public_list_bad_parameters_are_422():
    s = server()
    for query, field in [("per_page=101", "per_page"), ("per_page=0", "per_page"),
                         ("page=0", "page"), ("page=x", "page"),
                         ("min_capacity=abc", "min_capacity"),
                         ("max_price_per_hour=cheap", "max_price_per_hour"),
                         ("max_price_per_hour=-1", "max_price_per_hour"),
                         ("available_from=tomorrow&available_to=2030-01-01T10:00", "available_from"),
                         ("available_from=2030-01-01T10:00", "available_to"),
                         ("available_to=2030-01-01T10:00", "available_from"),
                         ("available_from=2030-01-01T12:00&available_to=2030-01-01T10:00",
                          "available_to")]:
        for path in ("/api/spaces/spaces?", "/api/spaces?"):
            r = s.get(path + query)
            f = fields_of(r)
            check(field in f, "%s%s: fields %r" % (path, query, f))
    r = s.get("/api/spaces?per_page=500")
    error_body(r, 422)
    check(r.json.get("message"), "compat error without message: %r" % r)


@test
def search_and_filters_return_exactly_the_expected_spaces():
    s = server()
    w, loc = word(), word()
    make_space(title="Alpha %s Hall" % w, location="%s North" % loc.capitalize(), capacity=10,
               price_per_hour=500)
    make_space(title="Bravo Room", description="Quiet, with %s views." % w,
               location="%s South" % loc, capacity=50, price_per_hour="2000.00")
    make_space(title="Charlie Closed", location="%s West %s" % (loc, w), capacity=100,
               price_per_hour=1000, is_available=False)
    make_space(title="Delta Deck", location="%s East" % loc, capacity=30, price_per_hour=800)
    make_space(title="Echo Barn", location="Upper %s" % w, capacity=5, price_per_hour=100)

    def q(query):
        r = s.get("/api/spaces/spaces?" + query)
        eq(200, r.status, query)
        eq(str(len(r.json)), r.header("x-total-count"), "total of " + query)
        return titles(r)

    eq(["Alpha %s Hall" % w, "Bravo Room", "Echo Barn"], q("q=" + w))
    eq(["Alpha %s Hall" % w, "Bravo Room", "Echo Barn"], q("q=" + w.upper()))
    eq(["Alpha %s Hall" % w], q("q=" + urlquote("alpha %s" % w)))
    eq(["Alpha %s Hall" % w, "Bravo Room", "Delta Deck"], q("location=" + loc.upper()))
    eq(["Bravo Room", "Delta Deck"], q("location=%s&min_capacity=30" % loc))
    eq(["Alpha %s Hall" % w, "Delta Deck"], q("location=%s&max_price_per_hour=800" % loc))
    eq(["Alpha %s Hall" % w], q("location=%s&max_price_per_hour=799.99" % loc))
    eq(["Alpha %s Hall" % w, "Bravo Room"], q("location=%s&q=%s" % (loc, w)))
    eq([], q("location=%s&min_capacity=1000" % loc))
    # LIKE wildcards are taken literally
    eq([], q("location=" + urlquote("%" + loc[:3] + "_")))
    # compat: the same filters, every row, amenities as one string
    r = s.get("/api/spaces?q=" + w)
    eq(200, r.status)
    eq(["Alpha %s Hall" % w, "Bravo Room", "Echo Barn"], titles(r))
    eq("wifi,projector", r.json[0]["amenities"])
    eq("3", r.header("x-total-count"))


@test
def availability_filter_leaves_out_spaces_with_a_confirmed_overlap():
    s = server()
    loc = word()
    busy = make_space(title="Busy " + loc, location=loc, instant_book=True)
    pend = make_space(title="Pending " + loc, location=loc)
    later = make_space(title="Later " + loc, location=loc, instant_book=True)
    make_space(title="Free " + loc, location=loc)
    london = make_space(title="London " + loc, location=loc, timezone="Europe/London",
                        instant_book=True)
    book(busy["id"], local(20, 10), local(20, 12))
    book(pend["id"], local(20, 10), local(20, 12))            # pending: does not block
    book(later["id"], local(20, 12), local(20, 14))           # adjacent: no overlap
    book(london["id"], local(20, 10), local(20, 11))          # 10:00-11:00 London time

    def avail(frm, to):
        r = s.get("/api/spaces/spaces?location=%s&available_from=%s&available_to=%s"
                  % (loc, urlquote(frm), urlquote(to)))
        eq(200, r.status, "%s..%s: %r" % (frm, to, r))
        return titles(r)

    # Naive times are read in each space's zone: 10:00-12:00 there.
    eq(sorted(["Pending " + loc, "Later " + loc, "Free " + loc]),
       avail(local(20, 10), local(20, 12)))
    eq(sorted(["Pending " + loc, "Free " + loc, "London " + loc]),
       avail(local(20, 11), local(20, 13)))
    eq(sorted(["Busy " + loc, "Pending " + loc, "Later " + loc, "Free " + loc, "London " + loc]),
       avail(local(21, 10), local(21, 12)))
    # With an offset the instant is the same everywhere: 07:00Z-09:00Z is 10-12 in Nairobi.
    d = local(20, 0)[:10]
    eq(sorted(["Pending " + loc, "Later " + loc, "Free " + loc, "London " + loc]),
       avail(d + "T07:00:00Z", d + "T09:00:00Z"))


@test
def availability_filter_in_london_uses_the_spaces_zone():
    s = server()
    loc = word()
    london = make_space(title="L " + loc, location=loc, timezone="Europe/London",
                        instant_book=True)
    b = book(london["id"], "2027-07-14T10:00", "2027-07-14T11:00")   # BST: 09:00Z
    eq("2027-07-14T10:00:00+01:00", b["start_datetime"])

    def avail(frm, to):
        r = s.get("/api/spaces/spaces?location=%s&available_from=%s&available_to=%s"
                  % (loc, urlquote(frm), urlquote(to)))
        eq(200, r.status)
        return titles(r)

    eq([], avail("2027-07-14T10:30", "2027-07-14T10:45"))
    eq(["L " + loc], avail("2027-07-14T11:00", "2027-07-14T12:00"))
    eq([], avail("2027-07-14T09:00:00Z", "2027-07-14T09:30:00Z"))
    eq(["L " + loc], avail("2027-07-14T10:00:00Z", "2027-07-14T10:30:00Z"))


# One space ------------------------------------------------------------------------------

@test
def get_one_space_with_owner_on_both_paths():
    s = server()
    sp = make_space()
    r = s.get("/api/spaces/spaces/%d" % sp["id"])
    eq(200, r.status)
    eq(SPACE_KEYS | {"owner"}, set(r.json.keys()))
    eq({"id": user_id("owner1"), "name": "Owner 1"}, r.json["owner"])
    eq(["wifi", "projector"], r.json["amenities"])
    eq(500.0, r.json["price_per_hour"])
    check(isinstance(r.json["price_per_hour"], float), "price is not a decimal")
    eq("KES", r.json["currency"])
    eq("Africa/Nairobi", r.json["timezone"])
    r = s.get("/api/spaces/%d" % sp["id"])
    eq(200, r.status)
    eq("wifi,projector", r.json["amenities"])
    eq("Owner 1", r.json["owner"]["name"])
    error_body(s.get("/api/spaces/spaces/999999999"), 404, "not_found")
    r = s.get("/api/spaces/999999999")
    error_body(r, 404)
    check(r.json.get("message"), "compat 404 without message")


@test
def an_unavailable_space_is_readable_but_not_listed():
    s = server()
    tag = word()
    sp = make_space(location=tag, is_available=False)
    eq(200, s.get("/api/spaces/spaces/%d" % sp["id"]).status)
    eq([], s.get("/api/spaces/spaces?location=" + tag).json)


# Create ---------------------------------------------------------------------------------

@test
def create_space_201_with_decimal_prices():
    s = server()
    r = s.post("/api/spaces/spaces", space_body(title="Numbers", capacity="12",
                                                 price_per_hour="1500.50", price_per_day="9000",
                                                 amenities=" wifi , stage ", currency="usd",
                                                 timezone="Europe/London", instant_book="true",
                                                 main_image_url="https://img.example/x.jpg"),
               token=token("owner2"))
    eq(201, r.status, repr(r))
    eq({"message", "space"}, set(r.json.keys()))
    sp = r.json["space"]
    eq(SPACE_KEYS, set(sp.keys()))
    eq(12, sp["capacity"])
    eq(1500.5, sp["price_per_hour"])
    eq(9000.0, sp["price_per_day"])
    eq(["wifi", "stage"], sp["amenities"])
    eq("USD", sp["currency"])
    eq("Europe/London", sp["timezone"])
    eq(True, sp["instant_book"])
    eq(True, sp["is_available"])
    eq(user_id("owner2"), sp["owner_id"])
    eq("https://img.example/x.jpg", sp["main_image_url"])
    # a relative upload path is fine; a blank one is no image
    sp2 = make_space("owner2", main_image_url="uploads/hall.jpg")
    eq("uploads/hall.jpg", sp2["main_image_url"])
    eq(None, make_space("owner2", main_image_url="")["main_image_url"])
    # and it is the caller's
    r = s.get("/api/spaces/spaces/mine?per_page=100", token=token("owner2"))
    check(sp["id"] in [x["id"] for x in r.json], "not in mine")


@test
def create_space_requires_its_fields():
    s = server()
    f = fields_of(s.post("/api/spaces/spaces", {}, token=token("owner1")))
    for name in ("title", "description", "location", "capacity", "price_per_hour", "price_per_day"):
        check(name in f, "%s not named: %r" % (name, f))
    cases = [
        ({"capacity": 0}, "capacity"), ({"capacity": -3}, "capacity"),
        ({"capacity": "many"}, "capacity"), ({"capacity": 2.5}, "capacity"),
        ({"price_per_hour": -1}, "price_per_hour"), ({"price_per_hour": "abc"}, "price_per_hour"),
        ({"price_per_hour": "500.123"}, "price_per_hour"), ({"price_per_day": -0.5}, "price_per_day"),
        ({"title": "   "}, "title"), ({"title": "x" * 201}, "title"), ({"title": 12}, "title"),
        ({"currency": "shillings"}, "currency"), ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"is_available": "maybe"}, "is_available"), ({"amenities": [1, 2]}, "amenities"),
        ({"amenities": {"a": 1}}, "amenities"),
        ({"main_image_url": "javascript:alert(1)"}, "main_image_url"),
        ({"main_image_url": "data:image/png;base64,AAAA"}, "main_image_url"),
    ]
    for over, field in cases:
        for path in ("/api/spaces/spaces", "/api/spaces"):
            f = fields_of(s.post(path, space_body(**over), token=token("owner1")))
            check(field in f, "%s %r: fields %r" % (path, over, f))


@test
def create_space_read_only_fields_are_422_canonical_and_ignored_compat():
    s = server()
    for field, value in [("id", 5), ("owner_id", 1), ("created_at", "2020-01-01T00:00:00Z"),
                         ("updated_at", "2020-01-01T00:00:00Z")]:
        f = fields_of(s.post("/api/spaces/spaces", space_body(**{field: value}),
                             token=token("owner1")))
        eq(["may not be set"], [f.get(field)], field)
    r = s.post("/api/spaces", space_body(id=5, owner_id=user_id("owner2"),
                                         created_at="2020-01-01T00:00:00Z",
                                         updated_at="x", capacity="7", price_per_hour="450.00",
                                         price_per_day="0", amenities="wifi,parking"),
               token=token("owner1"))
    eq(201, r.status, repr(r))
    sp = r.json["space"]
    check(sp["id"] != 5, "id applied")
    eq(user_id("owner1"), sp["owner_id"])
    check(not sp["created_at"].startswith("2020"), "created_at applied")
    eq("wifi,parking", sp["amenities"])
    eq(450.0, sp["price_per_hour"])


@test
def create_space_roles():
    s = server()
    error_body(s.post("/api/spaces/spaces", space_body()), 401)
    error_body(s.post("/api/spaces", space_body()), 401)
    error_body(s.post("/api/spaces/spaces", space_body(), token=token("client1")), 403, "forbidden")
    error_body(s.post("/api/spaces", space_body(), token=token("client1")), 403)
    # an admin creates for itself, or for an owner it names
    r = s.post("/api/spaces/spaces", space_body(), token=token("admin"))
    eq(201, r.status)
    eq(user_id("admin"), r.json["space"]["owner_id"])
    r = s.post("/api/spaces/spaces", space_body(owner_id=user_id("owner2")), token=token("admin"))
    eq(201, r.status)
    eq(user_id("owner2"), r.json["space"]["owner_id"])
    f = fields_of(s.post("/api/spaces/spaces", space_body(owner_id=user_id("client1")),
                         token=token("admin")))
    check("owner_id" in f, repr(f))
    f = fields_of(s.post("/api/spaces/spaces", space_body(owner_id=999999999),
                         token=token("admin")))
    check("owner_id" in f, repr(f))


@test
def create_space_bad_bodies():
    s = server()
    r = s.post("/api/spaces/spaces", raw=b"{", headers={"Content-Type": "application/json"},
               token=token("owner1"))
    error_body(r, 400)
    r = s.post("/api/spaces/spaces", raw=b"[1]", headers={"Content-Type": "application/json"},
               token=token("owner1"))
    error_body(r, 400)


# Update ---------------------------------------------------------------------------------

@test
def owner_updates_own_space_only():
    s = server()
    sp = make_space("owner1")
    path = "/api/spaces/spaces/%d" % sp["id"]
    r = s.patch(path, {"title": "Renamed", "price_per_hour": "750", "amenities": ["stage"],
                       "is_available": False, "main_image_url": None}, token=token("owner1"))
    eq(200, r.status, repr(r))
    eq({"message", "space"}, set(r.json.keys()))
    got = r.json["space"]
    eq("Renamed", got["title"])
    eq(750.0, got["price_per_hour"])
    eq(["stage"], got["amenities"])
    eq(False, got["is_available"])
    eq(sp["description"], got["description"])   # untouched fields stay
    eq(sp["capacity"], got["capacity"])
    error_body(s.patch(path, {"title": "Mine now"}, token=token("owner2")), 403, "forbidden")
    error_body(s.request("PUT", "/api/spaces/%d" % sp["id"], body={"title": "x"},
                         token=token("owner2")), 403)
    error_body(s.patch(path, {"title": "x"}, token=token("client1")), 403)
    error_body(s.patch(path, {"title": "x"}), 401)
    error_body(s.patch("/api/spaces/spaces/999999999", {"title": "x"}, token=token("owner1")), 404)
    r = s.patch(path, {"title": "By admin"}, token=token("admin"))
    eq(200, r.status)
    eq("By admin", r.json["space"]["title"])
    eq(user_id("owner1"), r.json["space"]["owner_id"])
    eq("By admin", s.get(path).json["title"])


@test
def update_space_validation_and_read_only_fields():
    s = server()
    sp = make_space("owner1")
    path = "/api/spaces/spaces/%d" % sp["id"]
    for body, field in [({"title": ""}, "title"), ({"title": None}, "title"),
                        ({"capacity": 0}, "capacity"), ({"price_per_day": "-2"}, "price_per_day"),
                        ({"id": 1}, "id"), ({"owner_id": user_id("owner2")}, "owner_id"),
                        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at")]:
        f = fields_of(s.patch(path, body, token=token("owner1")))
        check(field in f, "%r: %r" % (body, f))
    # an empty body changes nothing
    r = s.patch(path, None, token=token("owner1"))
    eq(200, r.status)
    eq(sp["title"], r.json["space"]["title"])


@test
def compat_put_of_the_whole_space_as_the_web_app_sends_it():
    s = server()
    sp = make_space("owner1")
    r = s.get("/api/spaces/%d" % sp["id"])
    whole = {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
             for k, v in r.json.items()}
    whole["title"] = "Edited in the web app"
    whole["price_per_hour"] = "650.0"
    whole["amenities"] = "wifi,projector,stage"
    whole["owner_id"] = str(user_id("owner2"))      # ignored, never applied
    whole["id"] = "1"
    r = s.request("PUT", "/api/spaces/%d" % sp["id"], body=whole, token=token("owner1"))
    eq(200, r.status, repr(r))
    got = r.json["space"]
    eq("Edited in the web app", got["title"])
    eq(650.0, got["price_per_hour"])
    eq("wifi,projector,stage", got["amenities"])
    eq(user_id("owner1"), got["owner_id"])
    eq(sp["id"], got["id"])
    r = s.patch("/api/spaces/%d" % sp["id"], {"capacity": "33"}, token=token("owner1"))
    eq(200, r.status)
    eq(33, r.json["space"]["capacity"])


@test
def admin_may_give_a_space_to_another_owner():
    s = server()
    sp = make_space("owner1")
    r = s.patch("/api/spaces/spaces/%d" % sp["id"], {"owner_id": user_id("owner2")},
                token=token("admin"))
    eq(200, r.status)
    eq(user_id("owner2"), r.json["space"]["owner_id"])
    error_body(s.patch("/api/spaces/spaces/%d" % sp["id"], {"title": "x"}, token=token("owner1")),
               403)


# Mine -----------------------------------------------------------------------------------

@test
def mine_lists_the_callers_spaces_available_or_not():
    s = server()
    a = make_space("owner1")
    b = make_space("owner1", is_available=False)
    other = make_space("owner2")
    r = s.get("/api/spaces/spaces/mine?per_page=100", token=token("owner1"))
    eq(200, r.status)
    ids = [x["id"] for x in r.json]
    check(a["id"] in ids and b["id"] in ids, "own spaces missing")
    check(other["id"] not in ids, "another owner's space listed")
    check(all(x["owner_id"] == user_id("owner1") for x in r.json), "foreign rows")
    check(int(r.header("x-total-count")) >= 2, "total")
    check(r.header("link"), "no Link")
    r = s.get("/api/spaces/my", token=token("owner1"))
    eq(200, r.status)
    ids = [x["id"] for x in r.json]
    check(a["id"] in ids and b["id"] in ids, "compat mine")
    check(isinstance(r.json[0]["amenities"], str), "compat amenities")
    error_body(s.get("/api/spaces/spaces/mine", token=token("client1")), 403)
    error_body(s.get("/api/spaces/my", token=token("client1")), 403)
    error_body(s.get("/api/spaces/spaces/mine"), 401)
    error_body(s.get("/api/spaces/my"), 401)


# Availability and quotes ----------------------------------------------------------------

@test
def availability_lists_confirmed_busy_intervals():
    s = server()
    sp = make_space(instant_book=True)
    pend = make_space()
    book(sp["id"], local(30, 9), local(30, 11))
    book(sp["id"], local(30, 14), local(30, 15))
    book(sp["id"], local(32, 9), local(32, 10))
    book(pend["id"], local(30, 9), local(30, 11))   # pending: not busy
    path = "/api/spaces/spaces/%d/availability" % sp["id"]
    r = s.get(path + "?from=%s&to=%s" % (local(30, 0), local(31, 0)))
    eq(200, r.status, repr(r))
    eq([{"start": local(30, 9) + ":00+03:00", "end": local(30, 11) + ":00+03:00"},
        {"start": local(30, 14) + ":00+03:00", "end": local(30, 15) + ":00+03:00"}], r.json)
    eq("2", r.header("x-total-count"))
    # an interval touching the window's edge from outside is not in it
    r = s.get(path + "?from=%s&to=%s" % (local(30, 11), local(30, 14)))
    eq([], r.json)
    r = s.get(path + "?from=%s&to=%s" % (local(30, 10), local(30, 14, 30)))
    eq(2, len(r.json))
    # the default window: the next 30 days... and further with an explicit one
    r = s.get(path + "?from=%s&to=%s" % (local(29, 0), local(40, 0)))
    eq(3, len(r.json))
    r = s.get("/api/spaces/spaces/%d/availability" % pend["id"])
    eq(200, r.status)
    eq([], r.json)
    # bad windows
    check("to" in fields_of(s.get(path + "?from=%s&to=%s" % (local(31, 0), local(30, 0)))), "to<from")
    check("from" in fields_of(s.get(path + "?from=yesterday")), "bad from")
    check("to" in fields_of(s.get(path + "?from=2027-01-01T00:00&to=2029-01-01T00:00")), "too wide")
    error_body(s.get("/api/spaces/spaces/999999999/availability"), 404)


@test
def quote_two_weekday_hours_at_500():
    s = server()
    sp = make_space(price_per_hour=500, price_per_day=7000)
    start, end = weekday(10, 10), weekday(10, 12)
    r = s.get("/api/spaces/spaces/%d/quote?start=%s&end=%s" % (sp["id"], start, end))
    eq(200, r.status, repr(r))
    q = r.json
    eq("KES", q["currency"])
    eq(1000.0, q["subtotal"])
    eq(160.0, q["tax"])
    eq(1160.0, q["total"])
    eq(1, len(q["lines"]))
    eq(2, q["lines"][0]["quantity"])
    eq(500.0, q["lines"][0]["unit_amount"])
    eq(1000.0, q["lines"][0]["amount"])
    eq(start + ":00+03:00", q["start"])
    # 30 hours with a day rate: one day (7000) and 6 hours (3000)
    next_day = (datetime.date.fromisoformat(start[:10]) + datetime.timedelta(days=1)).isoformat()
    r = s.get("/api/spaces/spaces/%d/quote?start=%s&end=%sT16:00" % (sp["id"], start, next_day))
    eq(200, r.status)
    eq((10000.0, 1600.0, 11600.0), (r.json["subtotal"], r.json["tax"], r.json["total"]))
    eq(["days", "hours"], [line["code"] for line in r.json["lines"]])
    # an offset is honoured: 07:00Z-09:00Z is 10:00-12:00 in Nairobi
    r = s.get("/api/spaces/spaces/%d/quote?start=%s&end=%s"
              % (sp["id"], start[:10] + "T07:00:00Z", start[:10] + "T09:00:00Z"))
    eq(1160.0, r.json["total"])
    eq(start + ":00+03:00", r.json["start"])
    r = s.get("/api/spaces/spaces/%d/quote?start=%s&end=%s" % (sp["id"], start, start))
    check("end" in fields_of(r), "end == start")
    path = "/api/spaces/spaces/%d/quote" % sp["id"]
    check("start" in fields_of(s.get(path + "?end=" + end)), "missing start")
    check("end" in fields_of(s.get(path + "?start=" + start)), "missing end")
    check("end" in fields_of(s.get(path + "?start=%s&end=%s" % (end, start))), "end before start")
    check("start" in fields_of(s.get(path + "?start=soon&end=" + end)), "bad start")
    error_body(s.get("/api/spaces/spaces/999999999/quote?start=%s&end=%s" % (start, end)), 404)


# Delete ---------------------------------------------------------------------------------

@test
def delete_is_owner_or_admin_and_soft():
    s = server()
    tag = word()
    sp = make_space("owner1", location=tag)
    path = "/api/spaces/spaces/%d" % sp["id"]
    error_body(s.delete(path), 401)
    error_body(s.delete(path, token=token("client1")), 403)
    error_body(s.delete(path, token=token("owner2")), 403, "forbidden")
    pending = book(sp["id"], local(40, 10), local(40, 12), who="client2")
    r = s.delete(path, token=token("owner1"))
    eq(200, r.status, repr(r))
    check(r.json.get("message"), "no message")
    error_body(s.get(path), 404)
    error_body(s.delete(path, token=token("owner1")), 404)
    error_body(s.patch(path, {"title": "x"}, token=token("owner1")), 404)
    eq([], s.get("/api/spaces/spaces?location=" + tag).json)
    ids = [x["id"] for x in s.get("/api/spaces/spaces/mine?per_page=100", token=token("owner1")).json]
    check(sp["id"] not in ids, "deleted space in mine")
    # its bookings stay readable; the pending request was declined
    r = s.get("/api/bookings/bookings/%d" % pending["id"], token=token("client2"))
    eq(200, r.status)
    eq("declined", r.json["status"])
    eq("space removed", r.json["decline_reason"])
    eq(sp["title"], r.json["space"]["title"])
    # no new bookings
    r = s.post("/api/bookings/bookings", {"space_id": sp["id"], "start_datetime": local(41, 10),
                                          "end_datetime": local(41, 12)}, token=token("client1"))
    check("space_id" in fields_of(r), "booking a deleted space")
    # admin deletes any; compat path
    sp2 = make_space("owner2")
    eq(200, s.delete("/api/spaces/%d" % sp2["id"], token=token("admin")).status)


@test
def delete_with_a_future_confirmed_booking_is_409():
    s = server()
    sp = make_space("owner1", instant_book=True)
    b = book(sp["id"], local(45, 10), local(45, 12))
    eq("confirmed", b["status"])
    for path in ("/api/spaces/spaces/%d", "/api/spaces/%d"):
        r = s.delete(path % sp["id"], token=token("owner1"))
        body = error_body(r, 409, "space_has_bookings")
        eq(b["id"], body.get("booking_id"))
    eq(200, s.get("/api/spaces/spaces/%d" % sp["id"]).status)
    r = s.patch("/api/bookings/bookings/%d/cancel" % b["id"], token=token("client1"))
    eq(200, r.status)
    eq(200, s.delete("/api/spaces/spaces/%d" % sp["id"], token=token("owner1")).status)
    r = s.get("/api/bookings/bookings/%d" % b["id"], token=token("client1"))
    eq(200, r.status)
    eq("cancelled", r.json["status"])


PAST_BOOKING_ROUTE = r'''
-- test only: a confirmed booking that has already ended (no route can make one)
spacer.post("/test/b6/past-booking", function(req)
  local b = req.body
  local row = spacer.db.one([[
    INSERT INTO bookings (space_id, client_id, start_at, end_at, status, currency,
                          subtotal_minor, tax_minor, total_minor)
    VALUES ($1, $2, now() - interval '3 days', now() - interval '3 days' + interval '2 hours',
            'confirmed', 'KES', 100000, 16000, 116000)
    RETURNING id]], b.space_id, b.client_id)
  return 201, { id = row.id }
end)
'''


@test
def past_bookings_stay_readable_after_the_space_is_deleted():
    own = Server(workers=1, extra_routes=PAST_BOOKING_ROUTE).start()
    try:
        o = own.login("owner1@example.com", PASSWORD)
        c = own.login("client1@example.com", PASSWORD)
        r = own.post("/api/spaces/spaces", space_body(), token=o)
        eq(201, r.status)
        sp = r.json["space"]
        cid = own.get("/api/users/profile", token=c).json["id"]
        r = own.post("/test/b6/past-booking", {"space_id": sp["id"], "client_id": cid})
        eq(201, r.status, repr(r))
        bid = r.json["id"]
        # a confirmed booking that has ended does not keep the space
        eq(200, own.delete("/api/spaces/spaces/%d" % sp["id"], token=o).status)
        for tok in (c, o):
            r = own.get("/api/bookings/bookings/%d" % bid, token=tok)
            eq(200, r.status, repr(r))
            eq("confirmed", r.json["status"])
            eq(sp["title"], r.json["space"]["title"])
            eq(1160.0, r.json["total_price"])
        ids = [x["id"] for x in own.get("/api/bookings/bookings?per_page=100", token=c).json]
        check(bid in ids, "past booking missing from the client's list")
        ids = [x["id"] for x in own.get("/api/bookings/bookings?per_page=100", token=o).json]
        check(bid in ids, "past booking missing from the owner's list")
    finally:
        own.close()
