"""Migrations and the invariants the schema keeps, against the test run's PostgreSQL."""
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

from harness import BIN, ROOT, check, eq, test

URL = os.environ.get("DATABASE_URL", "")


def psql(sql, db_url=URL, check_rc=True):
    r = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                       capture_output=True, text=True, timeout=60)
    if check_rc and r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr)
    return r


class FreshDatabase:
    """A new empty database on the test cluster, and a working directory with sql/."""

    def __enter__(self):
        self.name = "mig_" + uuid.uuid4().hex[:10]
        psql("CREATE DATABASE %s" % self.name)
        self.url = URL.replace("dbname=spacer", "dbname=" + self.name)
        self.dir = tempfile.mkdtemp(prefix="spacer-mig-")
        shutil.copytree(os.path.join(ROOT, "sql"), os.path.join(self.dir, "sql"))
        shutil.copytree(os.path.join(ROOT, "scripts"), os.path.join(self.dir, "scripts"))
        return self

    def spacer(self, *args):
        env = dict(os.environ, DATABASE_URL=self.url)
        return subprocess.run([BIN] + list(args), cwd=self.dir, env=env, capture_output=True,
                              text=True, timeout=120)

    def __exit__(self, *exc):
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)
        shutil.rmtree(self.dir, ignore_errors=True)


@test
def migrate_applies_once_and_lists_its_status():
    with FreshDatabase() as db:
        r = db.spacer("migrate")
        eq(0, r.returncode, r.stderr)
        files = sorted(f[:-4] for f in os.listdir(os.path.join(db.dir, "sql", "migrations")))
        for f in files:
            check("applied " + f in r.stdout, r.stdout)
        r = db.spacer("migrate")
        eq(0, r.returncode, r.stderr)
        check("nothing to apply" in r.stdout, r.stdout)
        r = db.spacer("migrate", "--status")
        eq(len(files), sum(1 for l in r.stdout.splitlines() if l.startswith("applied")))
        eq(str(len(files)), psql("SELECT count(*) FROM schema_migrations", db.url).stdout.strip())


@test
def a_changed_applied_migration_stops_with_its_name():
    with FreshDatabase() as db:
        eq(0, db.spacer("migrate").returncode)
        path = os.path.join(db.dir, "sql", "migrations", "0002_create_spaces.sql")
        with open(path, "a") as f:
            f.write("\n-- edited after it was applied\n")
        r = db.spacer("migrate")
        check(r.returncode != 0, "migrate accepted an edited migration")
        check("0002_create_spaces.sql: checksum changed" in r.stderr, r.stderr)


@test
def two_migrations_at_once_apply_each_file_once():
    with FreshDatabase() as db:
        results = [None, None]

        def run(i):
            results[i] = db.spacer("migrate")

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        eq([0, 0], [r.returncode for r in results], [r.stderr for r in results])
        n = len(os.listdir(os.path.join(db.dir, "sql", "migrations")))
        eq(str(n), psql("SELECT count(*) FROM schema_migrations", db.url).stdout.strip())
        applied = sum(r.stdout.count("applied 0") for r in results)
        eq(n, applied, "each file applied by exactly one of the two runs")


@test
def the_seed_is_idempotent():
    with FreshDatabase() as db:
        eq(0, db.spacer("migrate").returncode)
        eq(0, db.spacer("seed").returncode)
        counts = psql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM spaces)", db.url).stdout
        eq(0, db.spacer("seed").returncode)
        eq(counts, psql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM spaces)", db.url).stdout)
        users, spaces = map(int, counts.strip().split("|"))
        check(users >= 8 and spaces >= 12, counts)


def booking_sql(status, start, end, space="(SELECT min(id) FROM spaces)"):
    return ("INSERT INTO bookings (client_id, space_id, start_at, end_at, status, currency, "
            "subtotal_minor, tax_minor, total_minor) VALUES ((SELECT min(id) FROM users), %s, "
            "'%s', '%s', '%s', 'KES', 0, 0, 0)" % (space, start, end, status))


@test
def overlapping_confirmed_bookings_at_the_same_moment_one_wins_with_23p01():
    with FreshDatabase() as db:
        eq(0, db.spacer("migrate").returncode)
        eq(0, db.spacer("seed").returncode)
        sql = booking_sql("confirmed", "2031-01-01 10:00+00", "2031-01-01 12:00+00")
        # Each session holds its transaction open a moment, so the two really overlap in time.
        script = "\\set ON_ERROR_STOP 1\nBEGIN;\n%s;\nSELECT pg_sleep(0.5);\nCOMMIT;\n" % sql
        procs = [subprocess.Popen(["psql", db.url, "-q", "-v", "VERBOSITY=verbose"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(script, timeout=60) for p in procs]
        codes = sorted(p.returncode for p in procs)
        eq([0, 3], codes, outs)
        check(any("23P01" in err and "bookings_slot_excl" in err for _, err in outs), outs)
        eq("1", psql("SELECT count(*) FROM bookings WHERE status = 'confirmed'", db.url).stdout.strip())
        # Pending requests may overlap freely; touching intervals are not an overlap.
        psql(booking_sql("pending", "2031-01-01 10:00+00", "2031-01-01 12:00+00"), db.url)
        psql(booking_sql("pending", "2031-01-01 11:00+00", "2031-01-01 13:00+00"), db.url)
        psql(booking_sql("confirmed", "2031-01-01 12:00+00", "2031-01-01 13:00+00"), db.url)


@test
def the_schema_refuses_what_the_rules_forbid():
    with FreshDatabase() as db:
        eq(0, db.spacer("migrate").returncode)
        eq(0, db.spacer("seed").returncode)
        cases = [
            ("INSERT INTO users (name, email, password_hash) VALUES ('x', 'ADMIN@SPACER.COM', 'h')", "23505"),
            ("UPDATE spaces SET capacity = 0 WHERE id = (SELECT min(id) FROM spaces)", "23514"),
            ("UPDATE spaces SET price_per_hour_minor = -1 WHERE id = (SELECT min(id) FROM spaces)", "23514"),
            (booking_sql("pending", "2031-01-02 12:00+00", "2031-01-02 10:00+00"), "23514"),
            ("DELETE FROM users WHERE email = 'owner1@example.com'", "23503"),
        ]
        for sql, state in cases:
            r = subprocess.run(["psql", db.url, "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                                "-c", sql], capture_output=True, text=True, timeout=30)
            check(r.returncode != 0 and state in r.stderr, "%s -> %s" % (sql, r.stderr))
