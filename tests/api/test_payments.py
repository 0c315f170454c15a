"""Payments and invoices: the journey of each provider (manual, Stripe, M-Pesa against the
local fakes of tests/fakes) on canonical and compat paths with the web app's bodies, the
rules of paying (who, what, when, how much), Idempotency-Key, duplicated and forged
callbacks, a provider that times out, concurrency (five payments of one booking, 200
invoices at once), the expiry job across three instances, refunds on cancel, and every 4xx.

Every test books its own uniquely named spaces, so nothing depends on other tests.
"""
import atexit
import datetime
import hashlib
import hmac
import json
import os
import random
import re
import string
import sys
import threading
import time

from harness import ROOT, Server, check, eq, error_body, server, test

sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))
import fake_providers  # noqa: E402

PASSWORD = "password123"
PAYMENT_KEYS = {"id", "booking_id", "client_id", "amount", "currency", "payment_method",
                "provider", "payment_status", "provider_ref", "next_action", "failure_reason",
                "refund_amount", "payment_date", "completed_at", "refunded_at", "expires_at",
                "created_at", "updated_at"}
INVOICE_KEYS = {"id", "number", "status", "booking_id", "payment_id", "client_id", "issued_at",
                "paid_at", "currency", "lines", "subtotal", "tax", "tax_rate_percent", "total",
                "seller", "buyer", "space", "invoice_url"}
NUMBER = re.compile(r"^INV-\d{4}-\d{6}$")


def word(n=10):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def day(days):
    return datetime.datetime.utcnow().date() + datetime.timedelta(days=days)


def local(days, hour, minute=0):
    return "%sT%02d:%02d" % (day(days).isoformat(), hour, minute)


class World:
    """Users and tokens on one server."""

    def __init__(self, s):
        self.s = s
        self.tokens = {}
        self.ids = {}
        self.lock = threading.Lock()

    def token(self, who):
        with self.lock:
            if who not in self.tokens:
                if who == "admin":
                    self.tokens[who] = self.s.login("admin@spacer.com", "Admin123!")
                else:
                    self.tokens[who] = self.s.login("%s@example.com" % who, PASSWORD)
            return self.tokens[who]

    def user_id(self, who):
        if who not in self.ids:
            self.ids[who] = self.s.get("/api/users/profile", token=self.token(who)).json["id"]
        return self.ids[who]

    def register(self, role="client"):
        """The web app's registration (compat path); returns a token."""
        email = "pay-%s@example.com" % word(12)
        r = self.s.post("/api/register", {"name": "Payer " + word(4), "email": email,
                                          "password": "Secret123!", "role": role})
        eq(201, r.status, "register: %r" % r)
        r = self.s.post("/api/login", {"email": email, "password": "Secret123!"})
        eq(200, r.status, "login: %r" % r)
        return r.json["token"], r.json["user"]["id"]

    def space(self, owner="owner1", token=None, **over):
        body = {"title": "Pay Test " + word(6), "description": "A space of the payment tests.",
                "location": "Paytown " + word(6), "capacity": 10, "price_per_hour": 500,
                "price_per_day": 0}
        body.update(over)
        r = self.s.post("/api/spaces/spaces", body, token=token or self.token(owner))
        eq(201, r.status, "space: %r" % r)
        return r.json["space"]

    def booking(self, client="client1", owner="owner1", days=None, hours=2, approve=True,
                client_token=None, owner_token=None, space=None, hour=10):
        """A booking (approved unless approve=False): 2 hours at KES 500/h -> 1160.00."""
        sp = space or self.space(owner, token=owner_token)
        d = days if days is not None else random.randint(20, 300)
        r = self.s.post("/api/bookings", {"space_id": str(sp["id"]), "start_datetime": local(d, hour),
                                          "end_datetime": local(d, hour + hours)},
                        token=client_token or self.token(client))
        eq(201, r.status, "book: %r" % r)
        b = r.json["booking"]
        if approve and b["status"] == "pending":
            r = self.s.patch("/api/owner/bookings/%d/approve" % b["id"],
                             token=owner_token or self.token(owner))
            eq(200, r.status, "approve: %r" % r)
            b = r.json["booking"]
        return b

    def pay(self, booking, method="credit_card", who="client1", token=None, path="/api/payments",
            headers=None, **extra):
        body = {"booking_id": str(booking["id"]), "payment_method": method,
                "amount": "%.2f" % booking["total_price"]}
        body.update(extra)
        return self.s.post(path, body, token=token or self.token(who), headers=headers)


_world = None


def world():
    global _world
    if _world is None:
        _world = World(server())
    return _world


def invoice_of(w, booking_id, token):
    r = w.s.get("/api/payments/invoices", token=token)
    eq(200, r.status, repr(r))
    found = [i for i in r.json if i["booking_id"] == booking_id]
    return found[0] if found else None


def fields_of(r, code="validation_failed"):
    body = error_body(r, 422, code)
    check(isinstance(body.get("fields"), dict), "no fields: %r" % r)
    return body["fields"]


# The manual journey ---------------------------------------------------------------------------

@test
def manual_journey_on_the_web_apps_paths_and_bodies():
    w = world()
    s = w.s
    client, client_id = w.register("client")
    owner, owner_id = w.register("owner")
    b = w.booking(client_token=client, owner_token=owner)
    eq("confirmed", b["status"])
    eq(1160.0, b["total_price"])
    r = s.post("/api/payments", {"booking_id": str(b["id"]), "payment_method": "credit_card",
                                 "amount": "1160.00"}, token=client)
    eq(201, r.status, repr(r))
    eq({"message", "payment"}, set(r.json))
    p = r.json["payment"]
    eq(PAYMENT_KEYS, set(p))
    eq((b["id"], client_id, 1160.0, "KES", "credit_card", "manual", "pending"),
       (p["booking_id"], p["client_id"], p["amount"], p["currency"], p["payment_method"],
        p["provider"], p["payment_status"]))
    eq("manual", p["next_action"]["type"])
    check(p["payment_date"], "no payment_date")
    eq(None, p["expires_at"])  # a manual payment waits for the owner
    # the owner sees it in the web app's list, and confirms
    r = s.get("/api/owner/payments", token=owner)
    eq(200, r.status)
    eq([p["id"]], [x["id"] for x in r.json])
    r = s.patch("/api/payments/%d/confirm" % p["id"], token=owner)
    eq(200, r.status, repr(r))
    eq("Payment confirmed", r.json["message"])
    eq("completed", r.json["payment"]["payment_status"])
    check(r.json["payment"]["completed_at"], "no completed_at")
    # the client sees it completed on both paths
    eq("completed", s.get("/api/payments/%d" % p["id"], token=client).json["payment_status"])
    r = s.get("/api/payments/payments/%d" % p["id"], token=client)
    eq("completed", r.json["payment_status"])
    r = s.get("/api/payments", token=client)
    eq([("completed", p["id"])], [(x["payment_status"], x["id"]) for x in r.json])
    # and its invoice is issued and paid, in the same step
    r = s.get("/api/invoices", token=client)
    eq(200, r.status)
    eq(1, len(r.json))
    inv = r.json[0]
    eq(INVOICE_KEYS, set(inv))
    check(NUMBER.match(inv["number"]), "number %r" % inv["number"])
    eq(("paid", b["id"], p["id"], client_id, "KES"),
       (inv["status"], inv["booking_id"], inv["payment_id"], inv["client_id"], inv["currency"]))
    eq((1000.0, 160.0, 1160.0, 16), (inv["subtotal"], inv["tax"], inv["total"],
                                     inv["tax_rate_percent"]))
    eq([{"code": "hours", "description": "2 hours × KES 500.00", "quantity": 2,
         "unit_amount": 500.0, "amount": 1000.0}], inv["lines"])
    eq(owner_id, inv["seller"]["id"])
    eq(client_id, inv["buyer"]["id"])
    eq(b["space"]["title"], inv["space"]["title"])
    eq("/api/payments/invoices/%d/html" % inv["id"], inv["invoice_url"])
    eq(inv, s.get("/api/invoices/%d" % inv["id"], token=client).json)
    eq(inv, s.get("/api/payments/invoices/%d" % inv["id"], token=owner).json)
    # paying it again is a 409
    r = s.post("/api/payments", {"booking_id": str(b["id"]), "payment_method": "paypal"},
               token=client)
    body = error_body(r, 409, "already_paid")
    eq(body["error"], body["message"])  # compat errors carry message too


@test
def manual_journey_on_canonical_paths():
    w = world()
    s = w.s
    b = w.booking()
    r = s.post("/api/payments/payments", {"booking_id": b["id"], "payment_method": "manual"},
               token=w.token("client1"))
    eq(201, r.status, repr(r))
    p = r.json["payment"]
    eq(("manual", "pending"), (p["payment_method"], p["payment_status"]))
    r = s.patch("/api/payments/payments/%d/confirm" % p["id"], token=w.token("admin"))
    eq(200, r.status, repr(r))
    inv = invoice_of(w, b["id"], w.token("client1"))
    eq(("paid", p["id"]), (inv["status"], inv["payment_id"]))
    # confirming twice: 409, nothing changes
    r = s.patch("/api/payments/payments/%d/confirm" % p["id"], token=w.token("owner1"))
    error_body(r, 409, "invalid_status")


@test
def invoice_html_page_escaped_by_accept_or_suffix():
    w = world()
    s = w.s
    sp = w.space(title="<script>alert(1)</script> & Co")
    b = w.booking(space=sp)
    r = s.post("/api/payments/invoices", {"booking_id": b["id"]}, token=w.token("client1"))
    eq(201, r.status, repr(r))
    eq("Invoice issued", r.json["message"])
    inv = r.json["invoice"]
    eq(("issued", None), (inv["status"], inv["payment_id"]))
    for path, headers in [("/api/payments/invoices/%d/html" % inv["id"], None),
                          ("/api/payments/invoices/%d" % inv["id"], {"Accept": "text/html"}),
                          ("/api/invoices/%d" % inv["id"], {"Accept": "text/html,*/*"})]:
        r = s.get(path, token=w.token("owner1"), headers=headers)
        eq(200, r.status, repr(r))
        check(r.header("content-type").startswith("text/html"), r.header("content-type"))
        check(inv["number"] in r.text, "number not on the page")
        check("<script>alert" not in r.text, "unescaped title")
        check("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in r.text, "escaped title missing")
        check("KES 1,160.00" in r.text, "total missing")
    # issuing it again: 409 with the invoice
    r = s.post("/api/invoices", {"booking_id": str(b["id"])}, token=w.token("owner1"))
    body = error_body(r, 409, "invoice_exists")
    eq(inv["id"], body["invoice"]["id"])
    # paying later marks that invoice paid, no new one
    r = w.pay(b, "cash")
    eq(201, r.status, repr(r))
    pid = r.json["payment"]["id"]
    eq(200, s.patch("/api/payments/%d/confirm" % pid, token=w.token("owner1")).status)
    after = s.get("/api/payments/invoices/%d" % inv["id"], token=w.token("client1")).json
    eq(("paid", pid, inv["number"]), (after["status"], after["payment_id"], after["number"]))


# Rules of paying ------------------------------------------------------------------------------

@test
def payment_4xx():
    w = world()
    s = w.s
    c1 = w.token("client1")
    b = w.booking()
    # amount differs from the booking's: 422 with a message naming both
    r = w.pay(b, amount="1000")
    f = fields_of(r, "amount_mismatch")
    check("1,160.00" in r.json["message"] and "1,000.00" in r.json["message"], repr(r))
    check("amount" in f, repr(f))
    # amount not an amount
    fields_of(w.pay(b, amount="abc"))
    fields_of(w.pay(b, amount="1160.001"))
    # unknown method: 422 listing the available ones
    r = w.pay(b, method="bitcoin")
    body = error_body(r, 422, "unknown_payment_method")
    for m in ("credit_card", "paypal", "mpesa", "manual"):
        check(m in body["error"], "%s not listed: %r" % (m, body))
        check(m in body["available_methods"], repr(body))
    # missing fields
    f = fields_of(s.post("/api/payments/payments", {}, token=c1))
    eq({"booking_id", "payment_method"}, set(f))
    f = fields_of(s.post("/api/payments/payments", {"booking_id": "x", "payment_method": "cash"},
                         token=c1))
    check("booking_id" in f, repr(f))
    # read-only fields: refused on canonical paths, ignored on the web app's
    f = fields_of(s.post("/api/payments/payments", {"booking_id": b["id"], "payment_method": "cash",
                                                    "payment_status": "completed"}, token=c1))
    eq("may not be set", f["payment_status"])
    # another client's booking: 404
    error_body(w.pay(b, who="client2"), 404, "not_found")
    error_body(w.pay({"id": 987654321, "total_price": 1.0}), 404, "not_found")
    # owners and admins do not pay: 403; nobody without a token: 401
    error_body(w.pay(b, who="owner1"), 403)
    error_body(s.post("/api/payments", {"booking_id": str(b["id"]), "payment_method": "cash"}), 401)
    # a pending booking cannot be paid: 409
    pending = w.booking(approve=False)
    error_body(w.pay(pending), 409, "booking_not_confirmed")
    # a cancelled one neither
    cancelled = w.booking()
    eq(200, s.patch("/api/bookings/bookings/%d/cancel" % cancelled["id"], token=c1).status)
    error_body(w.pay(cancelled), 409, "booking_not_confirmed")
    # not JSON: 400; not an object: 400; a form: 415
    error_body(s.post("/api/payments", raw=b"{", headers={"Content-Type": "application/json"},
                      token=c1), 400)
    error_body(s.post("/api/payments", raw=b"[1]", headers={"Content-Type": "application/json"},
                      token=c1), 400)
    error_body(s.post("/api/payments", raw=b"booking_id=1",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, token=c1), 415)
    # pending payment: a second one is 409, whatever the method
    r = w.pay(b)
    eq(201, r.status, repr(r))
    pid = r.json["payment"]["id"]
    body = error_body(w.pay(b, method="paypal"), 409, "payment_pending")
    eq(pid, body["payment_id"])
    # confirm: a client may not (403), another owner sees nothing (404), unknown id 404
    error_body(s.patch("/api/payments/%d/confirm" % pid, token=c1), 403)
    error_body(s.patch("/api/payments/%d/confirm" % pid, token=w.token("owner2")), 404, "not_found")
    error_body(s.patch("/api/payments/99999999/confirm", token=w.token("owner1")), 404)
    # reading: the payer, the owner, admin; not another client or owner
    eq(200, s.get("/api/payments/%d" % pid, token=w.token("owner1")).status)
    eq(200, s.get("/api/payments/%d" % pid, token=w.token("admin")).status)
    error_body(s.get("/api/payments/%d" % pid, token=w.token("client2")), 404, "not_found")
    error_body(s.get("/api/payments/payments/%d" % pid, token=w.token("owner2")), 404)
    error_body(s.get("/api/payments/payments/%d" % pid), 401)
    # lists: bad filters and paging are 422
    fields_of(s.get("/api/payments/payments?status=lost", token=c1))
    fields_of(s.get("/api/payments/payments?per_page=101", token=c1))
    fields_of(s.get("/api/payments/invoices?status=lost", token=c1))
    error_body(s.get("/api/owner/payments", token=c1), 403)
    # webhooks of unknown providers: 404; manual has none: 400
    error_body(s.post("/api/payments/webhooks/nosuch", raw=b"{}"), 404)
    error_body(s.post("/api/payments/webhooks/manual", raw=b"{}"), 400, "invalid_webhook")


@test
def invoice_4xx():
    w = world()
    s = w.s
    b = w.booking()
    pending = w.booking(approve=False)
    error_body(s.post("/api/payments/invoices", {"booking_id": pending["id"]},
                      token=w.token("client1")), 409, "booking_not_confirmed")
    error_body(s.post("/api/payments/invoices", {"booking_id": b["id"]},
                      token=w.token("client2")), 404, "not_found")
    error_body(s.post("/api/payments/invoices", {"booking_id": b["id"]},
                      token=w.token("owner2")), 404, "not_found")
    fields_of(s.post("/api/payments/invoices", {}, token=w.token("client1")))
    f = fields_of(s.post("/api/payments/invoices", {"booking_id": b["id"], "number": "INV-1"},
                         token=w.token("client1")))
    eq("may not be set", f["number"])
    error_body(s.post("/api/payments/invoices", {"booking_id": b["id"]}), 401)
    r = s.post("/api/payments/invoices", {"booking_id": b["id"]}, token=w.token("admin"))
    eq(201, r.status, repr(r))
    iid = r.json["invoice"]["id"]
    error_body(s.get("/api/payments/invoices/%d" % iid, token=w.token("client2")), 404)
    error_body(s.get("/api/payments/invoices/%d/html" % iid, token=w.token("owner2")), 404)
    error_body(s.get("/api/invoices/99999999", token=w.token("admin")), 404)
    error_body(s.get("/api/payments/invoices/%d" % iid), 401)


@test
def lists_are_role_scoped_arrays_with_totals():
    w = world()
    s = w.s
    client, _ = w.register("client")
    owner, _ = w.register("owner")
    ids = []
    for _ in range(3):
        b = w.booking(client_token=client, owner_token=owner)
        r = w.pay(b, token=client)
        eq(201, r.status, repr(r))
        ids.append(r.json["payment"]["id"])
    r = s.get("/api/payments/payments?per_page=2", token=client)
    eq(200, r.status)
    eq(list(reversed(ids))[:2], [x["id"] for x in r.json])
    eq("3", r.header("x-total-count"))
    check('rel="next"' in r.header("link"), r.header("link"))
    r = s.get("/api/payments", token=client)  # compat: every row, no paging
    eq(sorted(ids), sorted(x["id"] for x in r.json))
    eq(sorted(ids), sorted(x["id"] for x in s.get("/api/payments/payments", token=owner).json))
    eq([], s.get("/api/payments/payments", token=w.token("owner2")).json
        and [x for x in s.get("/api/payments/payments?per_page=100", token=w.token("owner2")).json
             if x["id"] in ids])
    r = s.get("/api/payments/payments?status=completed", token=client)
    eq([], r.json)
    eq("0", r.header("x-total-count"))
    r = s.get("/api/payments/invoices", token=client)
    eq([], r.json)


@test
def idempotency_key_replays_the_first_response():
    w = world()
    s = w.s
    b = w.booking()
    key = {"Idempotency-Key": "k-" + word(16)}
    r1 = w.pay(b, headers=key)
    eq(201, r1.status, repr(r1))
    r2 = w.pay(b, headers=key)
    eq(201, r2.status, repr(r2))
    eq(r1.json, r2.json)
    eq("true", r2.header("idempotent-replayed"))
    # the same key with another body: 422; nothing new was created
    r3 = w.pay(b, method="paypal", headers=key)
    body = error_body(r3, 422, "idempotency_key_reused")
    check("Idempotency-Key" in body["fields"], repr(body))
    r = s.get("/api/payments/payments?per_page=100", token=w.token("client1"))
    eq(1, len([x for x in r.json if x["booking_id"] == b["id"]]))
    # another user's same key is theirs
    b2 = w.booking(client="client2")
    r = w.pay(b2, who="client2", headers=key)
    eq(201, r.status, repr(r))
    # a bad key: 422
    fields_of(w.pay(b2, who="client2", headers={"Idempotency-Key": "x" * 256}))
    # a failed request is not kept: the same key may be used again once fixed
    b3 = w.booking()
    k3 = {"Idempotency-Key": "k-" + word(16)}
    error_body(w.pay(b3, method="bitcoin", headers=k3), 422, "unknown_payment_method")
    error_body(w.pay(b3, method="bitcoin", headers=k3), 422, "unknown_payment_method")


@test
def five_concurrent_payments_of_one_booking_one_201_four_409():
    w = world()
    b = w.booking()
    w.token("client1")
    results = []
    barrier = threading.Barrier(5)

    def one(i):
        barrier.wait()
        results.append(w.pay(b, method=["credit_card", "paypal", "cash", "manual", "mpesa"][i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eq([201, 409, 409, 409, 409], sorted(r.status for r in results))
    for r in results:
        if r.status == 409:
            check(r.json["code"] in ("payment_pending", "already_paid"), repr(r))


@test
def two_hundred_concurrent_invoices_unique_and_gapless():
    w = world()
    s = w.s
    sp = w.space(instant_book=True)
    bookings = []
    base = random.randint(400, 900)
    for i in range(200):
        bookings.append(w.booking(space=sp, days=base + i // 10, hour=1 + 2 * (i % 10), hours=1))
    c1 = w.token("client1")
    results = []
    lock = threading.Lock()
    todo = list(bookings)
    barrier = threading.Barrier(200)

    def worker():
        with lock:
            b = todo.pop()
        barrier.wait()
        r = s.post("/api/payments/invoices", {"booking_id": b["id"]}, token=c1, timeout=60)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eq([201] * 200, [r.status for r in results])
    numbers = sorted(r.json["invoice"]["number"] for r in results)
    eq(200, len(set(numbers)))
    years = {n[4:8] for n in numbers}
    eq(1, len(years))
    seq = [int(n[9:]) for n in numbers]
    eq(list(range(seq[0], seq[0] + 200)), seq)


@test
def cancelling_a_paid_booking_refunds_by_the_policy():
    w = world()
    s = w.s
    b = w.booking(days=30)
    r = w.pay(b, "cash")
    eq(201, r.status)
    pid = r.json["payment"]["id"]
    eq(200, s.patch("/api/payments/%d/confirm" % pid, token=w.token("owner1")).status)
    r = s.patch("/api/bookings/bookings/%d/cancel" % b["id"], token=w.token("client1"))
    eq(200, r.status, repr(r))
    eq((100, 1160.0, pid, "refunded"), (r.json["refund"]["percent"], r.json["refund"]["amount"],
                                        r.json["refund"]["payment_id"], r.json["refund"]["status"]))
    p = s.get("/api/payments/%d" % pid, token=w.token("client1")).json
    eq(("refunded", 1160.0), (p["payment_status"], p["refund_amount"]))


# Providers: Stripe and M-Pesa against the local fakes -----------------------------------------

STRIPE = fake_providers.FakeStripe(secret_key="sk_test_" + word(12), webhook_secret="whsec_" + word(12))
DARAJA = fake_providers.FakeDaraja(consumer_key="ck_" + word(8), consumer_secret="cs_" + word(8),
                                   passkey="pk_" + word(16))
_fakes_started = False
_provider_server = None
_servers = []


def start_fakes():
    global _fakes_started
    if not _fakes_started:
        STRIPE.start()
        DARAJA.start()
        _fakes_started = True


def provider_conf(port, pending_timeout=None, job_interval=30, stripe_timeout=2):
    """spacer.conf with Stripe and M-Pesa enabled against the fakes."""
    start_fakes()
    with open(os.path.join(ROOT, "spacer.conf")) as f:
        text = f.read()
    head = text[:text.index("[payments]")]
    tail = text[text.index("[invoices]"):]
    timeout_line = "pending_timeout = %d\n" % pending_timeout if pending_timeout else ""
    return head + """[payments]
enabled = manual, stripe, mpesa
credit_card = stripe
paypal = manual
public_url = http://127.0.0.1:%(port)d
job_interval = %(job)d

[payments.stripe]
secret_key = %(sk)s
webhook_secret = %(whsec)s
base_url = %(stripe)s
timeout = %(st)s
%(timeout)s
[payments.mpesa]
consumer_key = %(ck)s
consumer_secret = %(cs)s
shortcode = %(sc)s
passkey = %(pk)s
base_url = %(daraja)s
timeout = %(st)s
%(timeout)s
""" % {"port": port, "job": job_interval, "sk": STRIPE.secret_key, "whsec": STRIPE.webhook_secret,
       "stripe": STRIPE.url, "ck": DARAJA.consumer_key, "cs": DARAJA.consumer_secret,
       "sc": DARAJA.shortcode, "pk": DARAJA.passkey, "daraja": DARAJA.url, "st": stripe_timeout,
       "timeout": timeout_line} + tail


def provider_server():
    """A server with Stripe and M-Pesa enabled (the fakes' base URLs)."""
    global _provider_server
    if _provider_server is None:
        s = Server(workers=2)
        s.conf = provider_conf(s.port)
        s.start()
        _servers.append(s)
        _provider_server = s
        STRIPE.webhook_url = "http://127.0.0.1:%d/api/payments/webhooks/stripe" % s.port
    return _provider_server


_pworld = None


def pworld():
    global _pworld
    if _pworld is None:
        _pworld = World(provider_server())
    return _pworld


def payment(w, pid, token=None):
    r = w.s.get("/api/payments/payments/%d" % pid, token=token or w.token("client1"))
    eq(200, r.status, repr(r))
    return r.json


def stripe_pay(w, b, path="/api/payments", token=None, headers=None):
    r = w.pay(b, "credit_card", path=path, token=token, headers=headers)
    eq(201, r.status, repr(r))
    p = r.json["payment"]
    eq(("stripe", "pending"), (p["provider"], p["payment_status"]))
    return p


@test
def stripe_journey_web_app_paths():
    w = pworld()
    s = w.s
    client, client_id = w.register("client")
    b = w.booking(client_token=client)
    p = stripe_pay(w, b, token=client)
    na = p["next_action"]
    eq("stripe_confirm_card", na["type"])
    pi = STRIPE.intents[na["payment_intent"]]
    eq((116000, "kes", str(p["id"])), (pi["amount"], pi["currency"], pi["metadata"]["payment_id"]))
    eq(pi["client_secret"], na["client_secret"])
    eq(pi["id"], p["provider_ref"])
    check(p["expires_at"], "a card payment expires")
    # the card is confirmed: Stripe calls the webhook, signed
    status, body = STRIPE.succeed(pi["id"])
    eq(200, status, body)
    # a card payment is settled by Stripe, not confirmed by hand
    error_body(s.patch("/api/payments/%d/confirm" % p["id"], token=w.token("admin")), 409,
               "not_confirmable")
    # the client_secret is the payer's alone
    r = s.get("/api/payments/payments/%d" % p["id"], token=w.token("admin"))
    eq((200, None), (r.status, r.json["next_action"]))
    p2 = payment(w, p["id"], client)
    eq(("completed", pi["id"]), (p2["payment_status"], p2["provider_ref"]))
    eq(pi["client_secret"], p2["next_action"]["client_secret"])
    inv = invoice_of(w, b["id"], client)
    eq(("paid", p["id"], client_id), (inv["status"], inv["payment_id"], inv["client_id"]))
    # a duplicated webhook (Stripe retries) changes nothing and answers 200
    raw = STRIPE.event(pi["id"], "payment_intent.succeeded")
    eq(200, STRIPE.send(raw)[0])
    eq(200, STRIPE.send(raw)[0])
    # a failure after success is acknowledged and ignored
    eq(200, STRIPE.fail(pi["id"])[0])
    eq(p2, payment(w, p["id"], client))
    eq(1, len(s.get("/api/invoices", token=client).json))


@test
def stripe_journey_canonical_paths_and_a_failed_card():
    w = pworld()
    b = w.booking()
    r = w.s.post("/api/payments/payments", {"booking_id": b["id"], "payment_method": "stripe",
                                            "amount": 1160}, token=w.token("client1"))
    eq(201, r.status, repr(r))
    p = r.json["payment"]
    # the card is declined: the payment fails and frees the booking
    eq(200, STRIPE.fail(p["provider_ref"])[0])
    p2 = payment(w, p["id"])
    eq("failed", p2["payment_status"])
    check("declined" in p2["failure_reason"], p2["failure_reason"])
    p3 = stripe_pay(w, b, path="/api/payments/payments")
    check(p3["id"] != p["id"], "a new payment")
    eq(200, STRIPE.succeed(p3["provider_ref"])[0])
    eq("completed", payment(w, p3["id"])["payment_status"])
    inv = invoice_of(w, b["id"], w.token("client1"))
    eq(("paid", p3["id"]), (inv["status"], inv["payment_id"]))
    # cancelling refunds through Stripe (host cancel: 100%)
    r = w.s.patch("/api/bookings/bookings/%d/cancel" % b["id"], token=w.token("owner1"))
    eq(200, r.status, repr(r))
    eq(("refunded", 1160.0), (r.json["refund"]["status"], r.json["refund"]["amount"]))
    eq("refunded", payment(w, p3["id"])["payment_status"])
    eq([116000], [x["amount"] for x in STRIPE.refunds if x["payment_intent"] == p3["provider_ref"]])


@test
def stripe_webhook_forged_missing_or_stale_signature_400_nothing_changes():
    w = pworld()
    b = w.booking()
    p = stripe_pay(w, b)
    pid = p["provider_ref"]
    raw = STRIPE.event(pid, "payment_intent.succeeded")
    now = int(time.time())
    for sig in [False,                                                # missing
                "t=%d,v1=%s" % (now, "0" * 64),                       # forged
                STRIPE.sign(raw, secret="whsec_other"),               # wrong secret
                STRIPE.sign(raw, t=now - 301),                        # stale
                STRIPE.sign(raw, t=now + 301),                        # from the future
                "garbage"]:                                           # malformed
        status, body = STRIPE.send(raw, signature=sig)
        eq(400, status, "signature %r: %s" % (sig, body))
        eq("invalid_webhook", json.loads(body)["code"])
    # a body changed after signing
    sig = STRIPE.sign(raw)
    status, _ = STRIPE.send(raw.replace(b"succeeded", b"succeedeX", 1), signature=sig)
    eq(400, status)
    eq("pending", payment(w, p["id"])["payment_status"])
    # several v1 (a secret being rolled): one match is enough
    status, body = STRIPE.send(raw, signature=STRIPE.sign(raw, extra_v1=["ab" * 32]))
    eq(200, status, body)
    eq("completed", payment(w, p["id"])["payment_status"])


@test
def stripe_webhook_amount_mismatch_refused():
    w = pworld()
    b = w.booking()
    p = stripe_pay(w, b)
    STRIPE.intents[p["provider_ref"]]["amount"] = 100
    status, body = STRIPE.succeed(p["provider_ref"])
    eq(400, status, body)
    eq("pending", payment(w, p["id"])["payment_status"])


@test
def stripe_timeout_leaves_pending_and_a_later_webhook_settles():
    w = pworld()
    b = w.booking()
    before = set(STRIPE.intents)
    STRIPE.delay = 3.5  # the plugin waits 2 s
    try:
        r = w.pay(b, "credit_card")
    finally:
        STRIPE.delay = 0
    body = error_body(r, 504, "provider_timeout")
    check("pending" in body["error"], body["error"])
    p = body["payment"]
    eq("pending", p["payment_status"])
    eq("pending", payment(w, p["id"])["payment_status"])
    # a new attempt meanwhile is a 409 (the first may still be paid)
    error_body(w.pay(b, "credit_card"), 409, "payment_pending")
    # the intent was made all the same (the fake answered late); the card is confirmed
    deadline = time.time() + 10
    while set(STRIPE.intents) == before and time.time() < deadline:
        time.sleep(0.1)
    new = [k for k in STRIPE.intents if k not in before]
    eq(1, len(new))
    eq(200, STRIPE.succeed(new[0])[0])
    p2 = payment(w, p["id"])
    eq(("completed", new[0]), (p2["payment_status"], p2["provider_ref"]))


def mpesa_pay(w, b, phone="0712345678", path="/api/payments", token=None):
    r = w.pay(b, "mpesa", path=path, token=token, phone=phone)
    eq(201, r.status, repr(r))
    p = r.json["payment"]
    eq(("mpesa", "pending"), (p["provider"], p["payment_status"]))
    return p


@test
def mpesa_journey_web_app_paths():
    w = pworld()
    s = w.s
    client, client_id = w.register("client")
    b = w.booking(client_token=client)
    p = mpesa_pay(w, b, token=client)
    cid, push = DARAJA.last_push()
    eq(cid, p["next_action"]["checkout_request_id"])
    eq("mpesa_stk_push", p["next_action"]["type"])
    eq((1160, "254712345678", "254712345678", "CustomerPayBillOnline", DARAJA.shortcode),
       (push["Amount"], push["PhoneNumber"], push["PartyA"], push["TransactionType"], push["PartyB"]))
    check(re.search(r"/api/payments/webhooks/mpesa\?token=[0-9a-f]{48}$", push["CallBackURL"]),
          push["CallBackURL"])
    # the payer enters the PIN: Daraja calls back
    receipt = "NLJ" + word(7).upper()
    status, body = DARAJA.callback(cid, receipt=receipt)
    eq(200, status, body)
    eq(0, json.loads(body)["ResultCode"])
    p2 = payment(w, p["id"], client)
    eq(("completed", receipt), (p2["payment_status"], p2["provider_ref"]))
    inv = invoice_of(w, b["id"], client)
    eq(("paid", p["id"], client_id), (inv["status"], inv["payment_id"], inv["client_id"]))
    # the duplicated callback changes nothing
    status, body = DARAJA.callback(cid, receipt=receipt)
    eq(200, status, body)
    eq(p2, payment(w, p["id"], client))
    # the token is cached: two payments on one connection (one worker) ask for one at most
    conn = s.connection()
    try:
        tokens_before = DARAJA.count("GET", "/oauth")
        for _ in range(2):
            b2 = w.booking(client_token=client)
            r = s.post("/api/payments", {"booking_id": str(b2["id"]), "payment_method": "mpesa",
                                         "phone": "0712345678"}, token=client, conn=conn)
            eq(201, r.status, repr(r))
        check(DARAJA.count("GET", "/oauth") - tokens_before <= 1, "token not cached")
    finally:
        conn.close()


@test
def mpesa_cancelled_push_frees_the_booking_canonical_paths():
    w = pworld()
    b = w.booking()
    p = mpesa_pay(w, b, phone="+254 712 345 678", path="/api/payments/payments")
    cid, _ = DARAJA.last_push()
    eq(200, DARAJA.callback(cid, result_code=1032)[0])
    p2 = payment(w, p["id"])
    eq("failed", p2["payment_status"])
    check("1032" in p2["failure_reason"], p2["failure_reason"])
    p3 = mpesa_pay(w, b, path="/api/payments/payments")
    cid3, _ = DARAJA.last_push()
    eq(200, DARAJA.callback(cid3, result_code=1037)[0])
    eq("failed", payment(w, p3["id"])["payment_status"])
    p4 = mpesa_pay(w, b)
    cid4, _ = DARAJA.last_push()
    eq(200, DARAJA.callback(cid4)[0])
    eq("completed", payment(w, p4["id"])["payment_status"])


@test
def mpesa_callback_must_match_token_checkout_amount_and_phone():
    w = pworld()
    b = w.booking()
    p = mpesa_pay(w, b)
    cid, push = DARAJA.last_push()
    url = push["CallBackURL"]
    base = url.split("?")[0]
    for target, kw in [(base, {}),                                     # no token
                       (base + "?token=" + "0" * 48, {}),              # a guessed token
                       (url, {"amount": 1}),                           # another amount
                       (url, {"phone": "254799999999"})]:              # another phone
        status, body = DARAJA.callback(cid, url=target, **kw)
        eq(400, status, "%s %r: %s" % (target, kw, body))
    # another payment's CheckoutRequestID with this payment's token
    b2 = w.booking()
    mpesa_pay(w, b2)
    cid2, _ = DARAJA.last_push()
    eq(400, DARAJA.callback(cid2, url=url)[0])
    eq("pending", payment(w, p["id"])["payment_status"])
    # garbage: 400
    eq(400, fake_providers.post_json(url, b"{}", {"Content-Type": "application/json"})[0])
    eq(400, fake_providers.post_json(url, b"not json", {"Content-Type": "text/plain"})[0])
    eq(200, DARAJA.callback(cid)[0])
    eq("completed", payment(w, p["id"])["payment_status"])


@test
def mpesa_refuses_cents_and_bad_phones_422():
    w = pworld()
    sp = w.space(price_per_hour="500.25")
    b = w.booking(space=sp)
    eq(1160.58, b["total_price"])
    r = w.pay(b, "mpesa", phone="0712345678")
    f = fields_of(r, "payment_refused")
    check("whole shillings" in f["amount"], repr(f))
    check("whole shillings" in r.json["message"], repr(r))
    b2 = w.booking()
    f = fields_of(w.pay(b2, "mpesa", phone="12345"), "payment_refused")
    check("phone" in f, repr(f))
    f = fields_of(w.pay(b2, "mpesa"), "payment_refused")
    check("phone" in f, repr(f))
    # nothing was created: the booking can be paid
    mpesa_pay(w, b2)


@test
def mpesa_timeout_leaves_pending_and_the_callback_settles():
    w = pworld()
    b = w.booking()
    before = set(DARAJA.pushes)
    w.token("client1")
    DARAJA.delay = 3.5
    try:
        r = w.pay(b, "mpesa", phone="0712345678")
    finally:
        DARAJA.delay = 0
    body = error_body(r, 504, "provider_timeout")
    pid = body["payment"]["id"]
    deadline = time.time() + 10
    while set(DARAJA.pushes) == before and time.time() < deadline:
        time.sleep(0.1)
    cid = [k for k in DARAJA.pushes if k not in before][0]
    eq(200, DARAJA.callback(cid)[0])
    eq("completed", payment(w, pid)["payment_status"])


@test
def unknown_provider_config_fails_the_load_with_the_file():
    start_fakes()
    s = Server(workers=1)
    conf = provider_conf(s.port)
    s.conf = conf.replace("secret_key = %s\n" % STRIPE.secret_key, "")
    s.start(wait=False)
    try:
        code = s.proc.wait(15)
    except Exception:
        s.close()
        raise
    out = s.logs()
    s.close()
    check(code != 0, "started without a secret_key")
    check("[payments.stripe] secret_key is required" in out and "stripe.lua" in out, out)


@test
def three_instances_expire_a_pending_payment_once():
    w = pworld()
    b = w.booking()
    p = stripe_pay(w, b)
    pi = p["provider_ref"]
    # three more instances on the same database whose Stripe payments expire after 1 s
    extra = []
    try:
        for _ in range(3):
            s = Server(workers=2)
            s.conf = provider_conf(s.port, pending_timeout=1, job_interval=1)
            extra.append(s.start())
        ew = World(extra[0])
        b2 = ew.booking()
        r = ew.pay(b2, "credit_card")
        eq(201, r.status, repr(r))
        p2 = r.json["payment"]
        deadline = time.time() + 20
        while time.time() < deadline:
            now = payment(ew, p2["id"])
            if now["payment_status"] != "pending":
                break
            time.sleep(0.2)
        eq("failed", now["payment_status"])
        check("expired" in now["failure_reason"], now["failure_reason"])
        time.sleep(2.5)  # give the other runners their turns: nothing more may happen
        eq(1, STRIPE.count("GET", "/v1/payment_intents/" + p2["provider_ref"]))
        eq(1, STRIPE.count("POST", "/v1/payment_intents/%s/cancel" % p2["provider_ref"]))
        eq("canceled", STRIPE.intents[p2["provider_ref"]]["status"])
        # the payment of the one-hour provider is untouched, the booking free again
        eq("pending", payment(w, p["id"])["payment_status"])
        eq(0, STRIPE.count("GET", "/v1/payment_intents/" + pi))
        r = ew.pay(b2, "manual")
        eq(201, r.status, repr(r))
    finally:
        for s in extra:
            s.close()


def _stop_all():
    global _fakes_started
    for s in list(_servers):
        s.close()
    del _servers[:]
    if _fakes_started:
        STRIPE.stop()
        DARAJA.stop()
        _fakes_started = False


atexit.register(_stop_all)


@test
def reload_picks_up_a_changed_plugin_and_refuses_a_broken_one():
    import shutil
    import subprocess
    from harness import BIN
    s = Server(workers=1)
    plugins = os.path.join(s.dir, "plugins")
    shutil.copytree(os.path.join(ROOT, "plugins"), plugins)
    s.env["SPACER_SCRIPTS_PLUGINS"] = plugins
    s.start()
    try:
        w = World(s)
        path = os.path.join(plugins, "payments", "manual.lua")
        with open(path) as f:
            good = f.read()
        with open(path, "w") as f:
            f.write(good.replace('reference = "PAY-" .. payment.id', 'reference = "CASH-" .. payment.id'))
        r = subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                           timeout=30)
        eq(0, r.returncode, r.stdout + r.stderr)
        r = w.pay(w.booking(), "cash")
        eq(201, r.status, repr(r))
        eq("CASH-%d" % r.json["payment"]["id"], r.json["payment"]["next_action"]["reference"])
        # a plugin without its webhook: the reload is refused, naming the file
        with open(path, "w") as f:
            f.write(good.replace("function _M.webhook()", "function _M.not_a_webhook()"))
        r = subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                           timeout=30)
        check(r.returncode != 0, "a broken plugin was loaded")
        check("manual.lua: missing function webhook" in r.stdout, r.stdout)
        r = w.pay(w.booking(), "cash")
        eq(201, r.status, repr(r))  # the old generation serves on
    finally:
        s.close()


@test
def cancelling_fails_a_pending_payment_and_voids_an_unpaid_invoice():
    w = world()
    s = w.s
    b = w.booking(days=40)
    r = w.pay(b, "cash")
    eq(201, r.status, repr(r))
    pid = r.json["payment"]["id"]
    r = s.post("/api/payments/invoices", {"booking_id": b["id"]}, token=w.token("client1"))
    eq(201, r.status, repr(r))
    iid = r.json["invoice"]["id"]
    r = s.patch("/api/bookings/bookings/%d/cancel" % b["id"], token=w.token("client1"))
    eq(200, r.status, repr(r))
    check("payment_id" not in r.json["refund"], repr(r.json["refund"]))
    p = s.get("/api/payments/%d" % pid, token=w.token("client1")).json
    eq(("failed", "the booking was cancelled"), (p["payment_status"], p["failure_reason"]))
    error_body(s.patch("/api/payments/%d/confirm" % pid, token=w.token("owner1")), 409,
               "invalid_status")
    eq("void", s.get("/api/payments/invoices/%d" % iid, token=w.token("client1")).json["status"])


@test
def expiry_asks_the_provider_first_and_completes_a_paid_push():
    w = pworld()
    s = Server(workers=1)
    s.conf = provider_conf(s.port, pending_timeout=1, job_interval=1)
    s.start()
    DARAJA.query_result = "0"  # the STK Push Query says: paid
    try:
        ew = World(s)
        b = ew.booking()
        r = ew.pay(b, "mpesa", phone="0712345678")
        eq(201, r.status, repr(r))
        pid = r.json["payment"]["id"]
        deadline = time.time() + 20
        while time.time() < deadline and payment(ew, pid)["payment_status"] == "pending":
            time.sleep(0.2)
        eq("completed", payment(ew, pid)["payment_status"])
        check(DARAJA.count("POST", "/mpesa/stkpushquery") >= 1, "the provider was not asked")
        inv = invoice_of(w, b["id"], ew.token("client1"))
        eq(("paid", pid), (inv["status"], inv["payment_id"]))
    finally:
        DARAJA.query_result = None
        s.close()


@test
def zz_provider_server_drains_and_exits_0_with_its_timers():
    """Last of this file: the provider server (payment jobs running) stops cleanly, and the
    fakes stop, so the next files run without them."""
    global _provider_server
    s = provider_server()
    eq(0, s.stop(), "exit status on SIGTERM")
    s.close()
    _servers.remove(s)
    _provider_server = None
    _stop_all()
