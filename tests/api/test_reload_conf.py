"""Reload re-reads spacer.conf: a new payment alias and a changed [pricing] value take effect
without a restart; a file that no longer parses fails the reload with spacer.conf:LINE while
the old values keep serving; a changed core setting is reported as needing a restart. And a
worker restarted while the scripts on disk are broken answers 503 scripts_unavailable (never
hangs) until a reload loads them."""
import datetime
import os
import random
import signal
import string
import subprocess
import time

from harness import BIN, ROOT, Server, check, eq, error_body, server, test

PASSWORD = "password123"


def base_conf():
    with open(os.path.join(ROOT, "spacer.conf")) as f:
        return f.read()


def write_conf(s, text):
    with open(os.path.join(s.dir, "spacer.conf"), "w") as f:
        f.write(text)


def reload_cli(s):
    return subprocess.run([BIN, "-c", os.path.join(s.dir, "spacer.conf"), "reload"], cwd=ROOT,
                          env=s.env, capture_output=True, text=True, timeout=30)


def word(n=8):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def local(days, hour):
    d = datetime.datetime.utcnow().date() + datetime.timedelta(days=days)
    return "%sT%02d:00" % (d.isoformat(), hour)


class World:
    def __init__(self, s):
        self.s = s
        self.owner = s.login("owner1@example.com", PASSWORD)
        self.client = s.login("client1@example.com", PASSWORD)
        self.admin = s.login("admin@spacer.com", "Admin123!")
        r = s.post("/api/spaces/spaces", {
            "title": "Reload Conf " + word(), "description": "A space of the reload tests.",
            "location": "Conftown " + word(), "capacity": 10, "price_per_hour": 500,
            "price_per_day": 0}, token=self.owner)
        eq(201, r.status, "space: %r" % r)
        self.space = r.json["space"]

    def quote_total(self):
        r = self.s.get("/api/spaces/spaces/%d/quote?start=%s&end=%s"
                       % (self.space["id"], local(40, 10), local(40, 12)))
        eq(200, r.status, "quote: %r" % r)
        return r.json["total"]

    def booking(self):
        d = random.randint(50, 300)
        r = self.s.post("/api/bookings", {"space_id": str(self.space["id"]),
                                          "start_datetime": local(d, 10),
                                          "end_datetime": local(d, 12)}, token=self.client)
        eq(201, r.status, "book: %r" % r)
        b = r.json["booking"]
        if b["status"] == "pending":
            r = self.s.patch("/api/owner/bookings/%d/approve" % b["id"], token=self.owner)
            eq(200, r.status, "approve: %r" % r)
            b = r.json["booking"]
        return b

    def pay(self, b, method):
        return self.s.post("/api/payments/payments", {
            "booking_id": b["id"], "payment_method": method,
            "amount": "%.2f" % b["total_price"]}, token=self.client)

    def reload(self):
        return self.s.post("/api/admin/reload", token=self.admin)


@test
def reload_picks_up_a_new_payment_alias_and_a_pricing_value():
    conf = base_conf()
    s = Server(workers=2, conf=conf).start()
    try:
        w = World(s)
        eq(1160.0, w.quote_total(), "the quote at 16% VAT")
        b = w.booking()
        error_body(w.pay(b, "bitcoin"), 422, "unknown_payment_method")
        write_conf(s, conf.replace("vat_percent = 16", "vat_percent = 20")
                   .replace("\nenabled = manual\n", "\nenabled = manual\nbitcoin = manual\n"))
        r = w.reload()
        eq(200, r.status, "reload: %r" % r)
        eq([], r.json["restart_required"], "restart_required")
        check(all(x["ok"] for x in r.json["workers"]), repr(r.json))
        # Both workers: each answers with the new values (several requests reach both).
        for _ in range(6):
            eq(1200.0, w.quote_total(), "the quote at 20% VAT after the reload")
        b = w.booking()
        eq(1200.0, b["total_price"])
        r = w.pay(b, "bitcoin")
        eq(201, r.status, "pay by the new alias: %r" % r)
        p = r.json.get("payment", r.json)
        eq("bitcoin", p["payment_method"])
        eq("manual", p["provider"])
    finally:
        s.close()


@test
def a_spacer_conf_that_no_longer_parses_fails_the_reload():
    conf = base_conf()
    s = Server(workers=2, conf=conf).start()
    try:
        w = World(s)
        broken = conf.replace("vat_percent = 16", "vat_percent = 25") + "\n[pricing\n"
        line = broken.count("\n")  # the malformed header is the last line
        write_conf(s, broken)
        r = reload_cli(s)
        check(r.returncode != 0, "spacer reload exited 0: " + r.stdout + r.stderr)
        # The command reads the file first (for the server's control socket): it says where.
        check("spacer.conf:%d: malformed section header" % line in r.stderr, r.stderr)
        # SIGHUP: the master reads the file, logs why, and keeps the old generation.
        os.kill(s.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "reload failed" not in s.logs():
            time.sleep(0.05)
        check("spacer.conf:%d: malformed section header" % line in s.logs(), s.logs())
        r = w.reload()
        body = error_body(r, 422, "reload_failed")
        check(any("spacer.conf:%d:" % line in e for e in body["errors"]), repr(body))
        for _ in range(4):
            eq(1160.0, w.quote_total(), "the old values keep serving")
        eq(1, s.get("/api/admin/status", token=w.admin).json["generation"], "generation")
        check("spacer.conf:%d" % line in s.logs(), "the log does not name the line")
        # A value a core setting refuses fails the reload the same way.
        write_conf(s, conf.replace("\ntimeout = 30\n", "\ntimeout = soon\n", 1))
        r = w.reload()
        body = error_body(r, 422, "reload_failed")
        check(any("http.timeout must be a number" in e for e in body["errors"]), repr(body))
        # Fixed: the next reload works and takes the new value.
        write_conf(s, conf.replace("vat_percent = 16", "vat_percent = 25"))
        r = w.reload()
        eq(200, r.status, "reload: %r" % r)
        eq(1250.0, w.quote_total())
    finally:
        s.close()


@test
def a_changed_core_setting_is_reported_as_needing_a_restart():
    conf = base_conf()
    s = Server(workers=1, conf=conf).start()
    try:
        w = World(s)
        check("\ntimeout = 30\n" in conf and "\npool_size = 8\n" in conf, "spacer.conf changed")
        write_conf(s, conf.replace("\ntimeout = 30\n", "\ntimeout = 45\n", 1)
                   .replace("\npool_size = 8\n", "\npool_size = 4\n")
                   .replace("vat_percent = 16", "vat_percent = 10"))
        r = w.reload()
        eq(200, r.status, "reload: %r" % r)
        eq(["http.timeout", "database.pool_size"], r.json["restart_required"])
        r = reload_cli(s)
        eq(0, r.returncode, r.stdout + r.stderr)
        check('"restart_required":["http.timeout","database.pool_size"]' in r.stdout, r.stdout)
        check("until a restart" in s.logs(), "the log does not say a restart is needed")
        eq(1100.0, w.quote_total(), "the application value took effect")
    finally:
        s.close()


@test
def watch_mode_reloads_on_a_spacer_conf_change():
    conf = base_conf()
    s = Server(workers=1, conf=conf, env={"SPACER_SCRIPTS_RELOAD": "watch"}).start()
    try:
        w = World(s)
        eq(1160.0, w.quote_total())
        write_conf(s, conf.replace("vat_percent = 16", "vat_percent = 30"))
        deadline = time.time() + 15
        total = None
        while time.time() < deadline:
            total = w.quote_total()
            if total == 1300.0:
                break
            time.sleep(0.1)
        eq(1300.0, total, "the quote after spacer.conf changed on disk")
    finally:
        s.close()


@test
def a_worker_restarted_on_broken_scripts_answers_503_until_they_load():
    s = Server(workers=1).start()
    try:
        path = os.path.join(s.scripts, "pricing.lua")
        with open(path) as f:
            good = f.read()
        with open(path, "a") as f:
            f.write("\nlocal broken = (\n")
        old = s.worker_pids()
        eq(1, len(old))
        os.kill(old[0], signal.SIGKILL)
        # The restarted worker cannot load the scripts: its requests get a 503, not a hang.
        deadline = time.time() + 15
        r = None
        while time.time() < deadline:
            try:
                r = s.get("/healthz", timeout=5)
                if r.status == 503:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        body = error_body(r, 503, "scripts_unavailable")
        eq("1", r.header("Retry-After"))
        check(body.get("request_id"), repr(body))
        error_body(s.get("/api/spaces/spaces"), 503, "scripts_unavailable")
        check("pricing.lua:" in s.logs(), "the log does not say why: " + s.logs())
        new = s.worker_pids()
        check(len(new) == 1 and new != old, "not restarted: %r %r" % (old, new))
        # Still broken: the reload fails and says why; fixed: the reload brings it back.
        r = subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                           timeout=30)
        check(r.returncode != 0 and "pricing.lua:" in r.stdout, r.stdout)
        eq(503, s.get("/healthz").status)
        with open(path, "w") as f:
            f.write(good)
        r = subprocess.run([BIN, "reload"], cwd=ROOT, env=s.env, capture_output=True, text=True,
                           timeout=30)
        eq(0, r.returncode, r.stdout + r.stderr)
        eq(200, s.get("/healthz").status)
        eq(new, s.worker_pids(), "the worker stayed")
    finally:
        s.close()


@test
def the_api_document_names_restart_required_in_the_reload_answer():
    r = server().get("/apispec.json")
    eq(200, r.status)
    op = r.json["paths"]["/api/admin/reload"]["post"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    eq({"type": "array", "items": {"type": "string"}}, schema["properties"]["restart_required"])
    check("restart_required" in schema["required"], schema)
    check("spacer.conf" in op["summary"] and "restart" in op["description"], op)
