"""A NUL character in a text field is a 422 naming the field, on every write route (canonical
and compat paths) and in query parameters, and nothing is stored: PostgreSQL text cannot hold
one, and cutting the value short while answering 2xx would lose what the client sent."""
import datetime
import random
import string

from harness import check, eq, error_body, server, test

PASSWORD = "password123"
NUL = "\u0000"


def word(n=8):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def login(email, password=PASSWORD):
    return server().login(email, password)


def nul_refused(r, field, what):
    """A 422 validation error whose fields name field with a NUL message."""
    body = error_body(r, 422, "validation_failed")
    fields = body.get("fields") or {}
    check(field in fields, "%s: fields %r do not name %s" % (what, fields, field))
    check("NUL" in fields[field], "%s: %s says %r" % (what, field, fields[field]))


def with_nul(value):
    """value with a NUL inside: "ab" -> "a\\0b"; a list gets it in its last item."""
    if isinstance(value, list):
        return value[:-1] + [with_nul(value[-1])]
    return value[:1] + NUL + value[1:]


def local(days, hour):
    d = datetime.datetime.utcnow().date() + datetime.timedelta(days=days)
    return "%sT%02d:00" % (d.isoformat(), hour)


@test
def register_and_login_refuse_nul_in_each_field():
    s = server()
    for path in ("/api/users/register", "/api/register"):
        email = "nul-%s@example.com" % word()
        body = {"name": "Nul Tester", "email": email, "password": PASSWORD, "role": "owner"}
        for field in ("name", "email", "password", "role"):
            bad = dict(body, **{field: with_nul(body[field])})
            nul_refused(s.post(path, bad), field, "%s %s" % (path, field))
        # nothing was stored: the clean body registers now (a stored user would be a 409)
        r = s.post(path, body)
        eq(201, r.status, "%s after the refusals: %r" % (path, r))
        eq("Nul Tester", r.json["user"]["name"])
    for path in ("/api/users/login", "/api/login"):
        for field, value in (("email", "nul-x@example.com"), ("password", PASSWORD)):
            bad = {"email": "client1@example.com", "password": PASSWORD}
            bad[field] = with_nul(value)
            nul_refused(s.post(path, bad), field, "%s %s" % (path, field))


def fresh_user(role="client"):
    s = server()
    email = "nul-%s@example.com" % word()
    r = s.post("/api/users/register", {"name": "Kept Name", "email": email,
                                       "password": PASSWORD, "role": role})
    eq(201, r.status, repr(r))
    return r.json["user"], email


@test
def profile_and_admin_user_updates_refuse_nul_and_change_nothing():
    s = server()
    user, email = fresh_user()
    tok = login(email)
    for method, path in (("PATCH", "/api/users/profile"), ("PATCH", "/api/profile"),
                         ("PUT", "/api/profile")):
        cases = [("name", {"name": with_nul("New Name")}),
                 ("password", {"password": with_nul("newpassword1"),
                               "current_password": PASSWORD}),
                 ("current_password", {"password": "newpassword1",
                                       "current_password": with_nul(PASSWORD)})]
        for field, body in cases:
            r = s.request(method, path, body=body, token=tok)
            nul_refused(r, field, "%s %s %s" % (method, path, field))
    r = s.get("/api/users/profile", token=tok)
    eq("Kept Name", r.json["name"], "the name after the refusals")
    login(email)  # the password is unchanged

    admin = login("admin@spacer.com", "Admin123!")
    base = {"name": "Kept Name", "email": email, "role": "client", "is_verified": False}
    for method, path in (("PATCH", "/api/users/users/%d" % user["id"]),
                         ("PUT", "/api/users/%d" % user["id"])):
        for field in ("name", "email", "role"):
            body = dict(base, **{field: with_nul(base[field])})
            r = s.request(method, path, body=body, token=admin)
            nul_refused(r, field, "%s %s %s" % (method, path, field))
    r = s.get("/api/users/profile", token=tok)
    eq(("Kept Name", email, "client"), (r.json["name"], r.json["email"], r.json["role"]))


SPACE = {
    "title": "Nul Space",
    "description": "A space for the NUL tests.",
    "location": "Nulville",
    "capacity": 10,
    "price_per_hour": 500,
    "price_per_day": 0,
    "currency": "KES",
    "timezone": "Africa/Nairobi",
    "main_image_url": "https://img.example/nul.jpg",
    "amenities": ["wifi", "projector"],
}
SPACE_TEXT = ("title", "description", "location", "currency", "timezone", "main_image_url",
              "amenities")


def my_spaces(tok):
    r = server().get("/api/spaces/spaces/mine?per_page=100", token=tok)
    eq(200, r.status, repr(r))
    return r.json


@test
def space_create_and_update_refuse_nul_in_each_text_field():
    s = server()
    _, email = fresh_user("owner")
    tok = login(email)
    for path in ("/api/spaces/spaces", "/api/spaces"):
        for field in SPACE_TEXT:
            body = dict(SPACE, **{field: with_nul(SPACE[field])})
            if path == "/api/spaces" and field == "amenities":
                body["amenities"] = "wifi,pro" + NUL + "jector"  # the web app's form
            nul_refused(s.post(path, body, token=tok), field, "POST %s %s" % (path, field))
    eq([], my_spaces(tok), "spaces stored despite the refusals")
    r = s.post("/api/spaces/spaces", SPACE, token=tok)
    eq(201, r.status, repr(r))
    sid = r.json["space"]["id"]
    for method, path in (("PATCH", "/api/spaces/spaces/%d" % sid), ("PATCH", "/api/spaces/%d" % sid),
                         ("PUT", "/api/spaces/%d" % sid)):
        for field in SPACE_TEXT:
            body = {field: with_nul(SPACE[field])}
            if path.startswith("/api/spaces/%d" % sid) and field == "amenities":
                body["amenities"] = "wifi,pro" + NUL + "jector"
            r = s.request(method, path, body=body, token=tok)
            nul_refused(r, field, "%s %s %s" % (method, path, field))
    sp = s.get("/api/spaces/spaces/%d" % sid).json
    for field in SPACE_TEXT:
        eq(SPACE[field], sp[field], "the space's %s after the refusals" % field)


@test
def booking_request_and_decline_refuse_nul_and_store_nothing():
    s = server()
    owner = login("owner1@example.com")
    r = s.post("/api/spaces/spaces", dict(SPACE, title="Nul Booking " + word(4)), token=owner)
    eq(201, r.status, repr(r))
    sid = r.json["space"]["id"]
    _, email = fresh_user("client")
    client = login(email)
    body = {"space_id": sid, "start_datetime": local(20, 10), "end_datetime": local(20, 12),
            "notes": "bring chairs"}
    for path in ("/api/bookings/bookings", "/api/bookings"):
        for field in ("start_datetime", "end_datetime", "notes"):
            bad = dict(body, **{field: with_nul(body[field])})
            nul_refused(s.post(path, bad, token=client), field, "POST %s %s" % (path, field))
    r = s.get("/api/bookings/bookings", token=client)
    eq([], r.json, "bookings stored despite the refusals")
    r = s.post("/api/bookings/bookings", body, token=client)
    eq(201, r.status, repr(r))
    bid = r.json["booking"]["id"]
    eq("bring chairs", r.json["booking"]["notes"])
    for path in ("/api/bookings/bookings/%d/decline" % bid, "/api/owner/bookings/%d/decline" % bid):
        r = s.patch(path, {"reason": with_nul("double booked")}, token=owner)
        nul_refused(r, "reason", "PATCH " + path)
    r = s.get("/api/bookings/bookings/%d" % bid, token=client)
    eq("pending", r.json["status"], "the booking after the refused declines")


@test
def query_parameters_with_nul_are_422_naming_them():
    s = server()
    for path, field in (("/api/spaces/spaces?q=lo%00ft", "q"),
                        ("/api/spaces/spaces?location=Nai%00robi", "location"),
                        ("/api/spaces?q=%00", "q")):
        nul_refused(s.get(path), field, path)
    client = login("client1@example.com")
    nul_refused(s.get("/api/bookings/bookings?status=pen%00ding", token=client), "status",
                "bookings status")
    # an encoded name is decoded too: per%5Fpage is per_page
    r = s.get("/api/spaces/spaces?per%5Fpage=0")
    body = error_body(r, 422, "validation_failed")
    check("per_page" in body["fields"], repr(r))


NUL_ROUTES = r'''
spacer.get("/test/nul-header", function()
  return 200, { ok = true }, { ["X-Note"] = "a\0b" }
end)
spacer.get("/test/nul-error-header", function()
  spacer.error(409, "taken", { headers = { ["X-Note"] = "a\0b" } })
end)
spacer.get("/test/nul-log", function()
  spacer.log.warn("before\0after")
  return 200, { ok = true }
end)
spacer.get("/test/nul-raise", function()
  error("raised\0tail")
end)
'''


@test
def response_headers_and_log_lines_are_never_cut_at_a_nul():
    from harness import Server
    s = Server(workers=1, extra_routes=NUL_ROUTES).start()
    try:
        for path in ("/test/nul-header", "/test/nul-error-header"):
            r = s.get(path)
            error_body(r, 500, "script_error")
            check(r.header("x-note") is None, "%s: a header was sent cut short: %r" % (path, r.headers))
        eq(200, s.get("/test/nul-log").status)
        error_body(s.get("/test/nul-raise"), 500, "script_error")
        s.stop()
        logs = s.logs()
        check("contains a NUL byte" in logs, "no log line about the NUL header:\n" + logs)
        check("before\\u0000after" in logs, "the log line lost what follows the NUL:\n" + logs)
        check("raised\\u0000tail" in logs, "the script error lost what follows the NUL:\n" + logs)
    finally:
        s.close()
