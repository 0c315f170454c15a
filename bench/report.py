"""bench/report.py: the results of `make bench` as a Markdown table, JSON and chart data.

    /usr/bin/python3 bench/report.py RESULTS.jsonl OUT_DIR
    /usr/bin/python3 bench/report.py bench/results/latest.json OUT_DIR   (redo from a run's raw figures)

RESULTS.jsonl is what tools/bench.sh collected, one JSON object per line, each with a
"kind": meta, wrk (a Spacer scenario or the nginx ceiling), pgbench, bcrypt, memory, reload.
Writes OUT_DIR/latest.md, OUT_DIR/latest.json and OUT_DIR/latest.dat (gnuplot's input for
bench/plot.gp). Standard library only.
"""
import json
import sys

# The Spacer scenarios, in table order: id, what is requested, ceiling, throughput target.
#   ceiling: ("nginx", None) = nginx at the same connection count; ("pgbench", id) = that
#   script of bench/pgbench at 32 connections; ("bcrypt", None) = cores / one cost-12 hash.
#   target: ("ratio", r) = requests/s >= r x ceiling; ("rps", n) = requests/s >= n; None.
SCENARIOS = [
    ("healthz", "GET /healthz", ("nginx", None), ("ratio", 0.70), True),
    ("spaces_list", "GET /api/spaces/spaces?per_page=20&min_capacity=10", ("pgbench", "spaces_list"), ("ratio", 0.50), True),
    ("space_by_id", "GET /api/spaces/spaces/{id}", ("pgbench", "space_by_id"), ("ratio", 0.60), True),
    ("bookings_list", "GET /api/bookings/bookings (client token)", ("pgbench", "bookings_list"), None, True),
    ("booking_create", "POST /api/bookings/bookings", ("pgbench", "booking_create"), ("rps", 2000), False),
    ("quote", "GET /api/spaces/spaces/{id}/quote", ("pgbench", "quote"), None, True),
    ("invoices_list", "GET /api/payments/invoices (client token)", ("pgbench", "invoices_list"), None, True),
    ("payment_create", "POST /api/payments/payments (manual)", ("pgbench", "payment_create"), None, False),
    ("login", "POST /api/users/login (bcrypt 12)", ("bcrypt", None), ("ratio", 0.90), False),
    ("healthz_login_flood", "GET /healthz while 32 connections flood the login", ("none", None), ("p99_ms", 10), False),
    ("spaces_home", "GET /api/spaces unpaged (%(home_spaces)s spaces: the web app's home call)", ("none", None), None, True),
    ("apispec", "GET /apispec.json (%(apispec_kb)s KB)", ("none", None), None, True),
]
READS = {sid for sid, _, _, _, is_read in SCENARIOS if is_read}
P99_FACTOR = 2.0          # reads at 32 connections: p99 <= 2 x nginx's p99
P50_ONE_MS = 3.0          # every scenario at 1 connection: p50 <= 3 ms
IDLE_RSS_MB = 16.0
KEEPALIVE_RSS_MB = 64.0


def ms(us):
    if us is None:
        return "—"
    v = us / 1000.0
    if v < 10:
        return "%.2f ms" % v
    if v < 1000:
        return "%.1f ms" % v
    return "%.2f s" % (v / 1000.0)


def num(v):
    if v is None:
        return "—"
    if v >= 100:
        return "{:,.0f}".format(v)
    return "%.1f" % v


def yes(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")


def main():
    src, out = sys.argv[1], sys.argv[2]
    if src.endswith(".json"):  # a previous latest.json: its raw entries again
        entries = json.load(open(src))["raw"]
    else:
        entries = [json.loads(line) for line in open(src) if line.strip()]
    meta = {}
    wrk, pgb, bcrypt, memory, reload = {}, {}, None, [], {}
    for e in entries:
        k = e.get("kind")
        if k == "meta":
            meta.update(e)
        elif k == "wrk":
            wrk[(e["id"], e["conns"])] = e
        elif k == "pgbench":
            pgb[e["id"]] = e
        elif k == "bcrypt":
            bcrypt = e
        elif k == "memory":
            memory.append(e)
        elif k == "reload":
            reload[e["id"]] = e

    nginx = {c: wrk.get(("nginx", c)) for c in (1, 32, 256)}
    nginx_p99_32 = nginx[32]["latency_us"]["p99"] if nginx.get(32) else None

    rows = []
    for sid, label, ceiling, target, is_read in SCENARIOS:
        for conns in (1, 32, 256):
            r = wrk.get((sid, conns))
            if r is None:
                continue
            row = {
                "scenario": sid, "request": label % {k: meta.get(k, "?") for k in ("home_spaces", "apispec_kb")},
                "connections": conns,
                "requests": r["requests"], "rps": r["rps"],
                "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"],
                "errors": r["errors"], "non_2xx_or_error": sum(r["errors"].values()),
            }
            cname, cval = None, None
            if ceiling[0] == "nginx" and nginx.get(conns):
                cname, cval = "nginx return 200, %d conns" % conns, nginx[conns]["rps"]
            elif ceiling[0] == "pgbench" and ceiling[1] in pgb:
                p = pgb[ceiling[1]]
                cname, cval = "pgbench %s.sql, %d conns" % (ceiling[1], p["clients"]), p["tps"]
            elif ceiling[0] == "bcrypt" and bcrypt:
                cname, cval = "bcrypt: %d cores / %.0f ms" % (bcrypt["cores"], bcrypt["hash_s"] * 1000), bcrypt["ceiling_rps"]
            row["ceiling"] = cname
            row["ceiling_rps"] = cval
            row["ratio"] = (r["rps"] / cval) if cval else None
            targets, oks = [], []
            if target and target[0] == "ratio":
                targets.append("≥ %d%% of ceiling" % round(target[1] * 100))
                oks.append(None if row["ratio"] is None else row["ratio"] >= target[1])
            elif target and target[0] == "p99_ms":
                targets.append("p99 < %d ms" % target[1])
                oks.append(r["latency_us"]["p99"] < target[1] * 1000)
            elif target and target[0] == "rps":
                targets.append("≥ {:,}/s".format(target[1]))
                oks.append(r["rps"] >= target[1])
            if conns == 1:
                targets.append("p50 ≤ %d ms" % P50_ONE_MS)
                oks.append(r["latency_us"]["p50"] <= P50_ONE_MS * 1000)
            if is_read and conns == 32 and nginx_p99_32:
                limit = P99_FACTOR * nginx_p99_32
                targets.append("p99 ≤ 2× nginx p99 (%s)" % ms(limit))
                oks.append(r["latency_us"]["p99"] <= limit)
            # A run where requests failed does not meet anything.
            failed = row["non_2xx_or_error"] > 0.01 * max(1, r["requests"])
            if failed:
                oks = [False for _ in oks] or [False]
                targets.append("< 1% errors")
            row["target"] = "; ".join(targets) if targets else "—"
            row["met"] = ("; ".join(yes(o) for o in oks)) if oks else "—"
            row["met_all"] = all(o for o in oks) if oks and None not in oks else (None if not oks or None in oks else False)
            rows.append(row)

    lines = []
    w = lines.append
    w("| Scenario | Conns | Requests/s | p50 | p99 | Ceiling | Ceiling/s | Ratio | Target | Met |")
    w("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |")
    for c in (1, 32, 256):
        n = nginx.get(c)
        if n:
            w("| *ceiling:* nginx `return 200` | %d | %s | %s | %s | — | — | — | — | — |" % (
                c, num(n["rps"]), ms(n["latency_us"]["p50"]), ms(n["latency_us"]["p99"])))
    for row in rows:
        errs = row["non_2xx_or_error"]
        label = "`%s`" % row["request"]
        if errs:
            label += " (%d errors/non-2xx)" % errs
        w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, row["connections"], num(row["rps"]), ms(row["p50_us"]), ms(row["p99_us"]),
            row["ceiling"] or "—", num(row["ceiling_rps"]),
            "%.0f%%" % (row["ratio"] * 100) if row["ratio"] is not None else "—",
            row["target"], row["met"]))
    table = "\n".join(lines)

    # pgbench ceilings in detail
    plines = []
    if pgb:
        plines.append("| pgbench script | mirrors | clients | transactions/s | mean latency |")
        plines.append("| --- | --- | ---: | ---: | ---: |")
        for pid in sorted(pgb):
            p = pgb[pid]
            plines.append("| `bench/pgbench/%s.sql` | %s | %d | %s | %.2f ms |" % (
                pid, p.get("mirrors", ""), p["clients"], num(p["tps"]), p["latency_ms"]))
    if bcrypt:
        plines.append("")
        plines.append("bcrypt ceiling: one cost-12 hash takes %.1f ms (%d `spacer hash-password` runs at cost 12 "
                      "minus the same at cost 4: %.1f ms − %.1f ms each); %d cores → %.1f logins/s." % (
                          bcrypt["hash_s"] * 1000, bcrypt["runs"], bcrypt["cost12_s"] * 1000,
                          bcrypt["cost4_s"] * 1000, bcrypt["cores"], bcrypt["ceiling_rps"]))

    # memory
    mlines = []
    mem_rows = []
    if memory:
        mlines.append("| Worker state | Worker RSS (each) | Target | Met |")
        mlines.append("| --- | --- | --- | --- |")
        for m in memory:
            rss = [x["rss_kb"] / 1024.0 for x in m["workers"]]
            limit = KEEPALIVE_RSS_MB if m["phase"] == "keepalive" else IDLE_RSS_MB
            ok = bool(rss) and max(rss) < limit
            mem_rows.append({"phase": m["phase"], "label": m["label"], "rss_mb": rss,
                             "limit_mb": limit, "met": ok, "connections": m.get("connections")})
            mlines.append("| %s | %s | < %d MB | %s |" % (
                m["label"], ", ".join("%.1f MB" % x for x in rss) or "—", limit, yes(ok)))

    # reload under load
    rlines = []
    if reload:
        rlines.append("| Quote scenario, 32 conns | Requests/s | p50 | p99 | max | reloads (failed) | errors | Spacer CPU/req |")
        rlines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for rid in ("without", "with"):
            r = reload.get(rid)
            if not r:
                continue
            cpu = r.get("cpu")
            rlines.append("| %s `spacer reload` every %d ms | %s | %s | %s | %s | %s | %d | %s |" % (
                rid, r.get("interval_ms", 200), num(r["rps"]), ms(r["latency_us"]["p50"]),
                ms(r["latency_us"]["p99"]), ms(r["latency_us"]["max"]),
                ("%d (%d)" % (r["reloads"], r["reload_failures"])) if rid == "with" else "—",
                sum(r["errors"].values()),
                ("%.0f µs" % (cpu["server_s"] / max(1, r["requests"]) * 1e6)) if cpu else "—"))

    # where the CPU went, per request (measured runs)
    def cpu_row(label, conns, n, cpu, server_name):
        n = max(1, n)
        ours = cpu["server_s"] + cpu["postgres_s"] + cpu["client_s"]
        other = max(0.0, cpu["machine_busy_s"] - ours) / (cpu["cores"] * cpu["wall_s"])
        idle = max(0.0, 1 - cpu["machine_busy_s"] / (cpu["cores"] * cpu["wall_s"]))
        return "| %s | %s | %s | %s | %s | %.0f%% | %.0f%% |" % (
            label, conns, ("%.0f µs" % (cpu["server_s"] / n * 1e6)) if server_name else "—",
            "%.0f µs" % (cpu["postgres_s"] / n * 1e6), "%.0f µs" % (cpu["client_s"] / n * 1e6),
            other * 100, idle * 100)
    clines = []
    if any("cpu" in e for e in entries):
        clines.append("| Run | Conns | server CPU/req | PostgreSQL CPU/req | load generator CPU/req | other load | idle |")
        clines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in (1, 32, 256):
            n = nginx.get(c)
            if n and "cpu" in n:
                clines.append(cpu_row("nginx `return 200` (server: nginx)", c, n["requests"], n["cpu"], "nginx"))
        for sid, label, _, _, _ in SCENARIOS:
            for c in (1, 32, 256):
                r = wrk.get((sid, c))
                if r and "cpu" in r:
                    label = label % {k: meta.get(k, "?") for k in ("home_spaces", "apispec_kb")}
                    clines.append(cpu_row("`%s` (server: Spacer)" % label, c, r["requests"], r["cpu"], "spacer"))
        for pid in sorted(pgb):
            p = pgb[pid]
            if "cpu" in p:
                clines.append(cpu_row("pgbench `%s.sql` (load generator: pgbench)" % pid, p["clients"],
                                      int(p["tps"] * p["cpu"]["wall_s"]), p["cpu"], None))

    md = []
    md.append("# Spacer benchmark — %s" % meta.get("date", "?"))
    md.append("")
    md.append("Commit `%s`%s; %s; %s cores; %s. Spacer: release build, %s workers, access_log %s "
              "(to a file, as shipped); PostgreSQL %s (throw-away cluster%s). "
              "wrk `-t2 -c<conns> -d%ss --latency` after a %ss warm-up; everything on 127.0.0.1, "
              "load generator and servers sharing the same cores." % (
                  meta.get("commit", "?"), " (+ local changes)" if meta.get("dirty") else "",
                  meta.get("cpu", "?"), meta.get("cores", "?"), meta.get("kernel", "?"),
                  meta.get("workers", "?"), meta.get("access_log", "?"),
                  meta.get("pg_version", "?"), ", fsync off" if meta.get("pg_fast") else "",
                  meta.get("duration", "?"), meta.get("warmup", "?")))
    md.append("Data: %s users, %s spaces, %s bookings. Load average at start %s, at the end %s; "
              "the whole bench took %s s." % (
        meta.get("users", "?"), meta.get("spaces", "?"), meta.get("bookings", "?"),
        meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?"), meta.get("elapsed_s", "?")))
    md.append("")
    md.append(table)
    if plines:
        md.append("")
        md.append("Ceilings of the database scenarios: `pgbench -M prepared -n -c 32 -j 2 -T %s` on the "
                  "same database, running the SQL the route runs." % meta.get("duration", "?"))
        md.append("")
        md.extend(plines)
    if clines:
        md.append("")
        md.append("Where the CPU went during each measured run (user + system time per request: the server's "
                  "processes, PostgreSQL's, the load generator's; *other load* is what the rest of the machine used "
                  "meanwhile, a sign of a disturbed run):")
        md.append("")
        md.extend(clines)
    if mlines:
        md.append("")
        md.append("Memory (VmRSS of each worker process):")
        md.append("")
        md.extend(mlines)
    if rlines:
        md.append("")
        md.append("Reload under load:")
        md.append("")
        md.extend(rlines)
    skipped = meta.get("skipped") or []
    if skipped:
        md.append("")
        md.append("Not run: " + "; ".join(skipped) + ".")
    md.append("")
    with open(out + "/latest.md", "w") as f:
        f.write("\n".join(md))

    with open(out + "/latest.json", "w") as f:
        json.dump({"meta": meta, "rows": rows,
                   "nginx": {str(c): nginx[c] for c in nginx if nginx[c]},
                   "pgbench": pgb, "bcrypt": bcrypt, "memory": mem_rows,
                   "reload": reload, "raw": entries}, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # gnuplot data: label, Spacer req/s, ceiling req/s (0 if none), p99 ms, p99 limit ms
    short = {"healthz": "healthz", "spaces_list": "list 20", "space_by_id": "space by id",
             "bookings_list": "my bookings", "booking_create": "create booking",
             "quote": "quote", "login": "login", "healthz_login_flood": "healthz, login flood",
             "spaces_home": "home list", "apispec": "apispec",
             "invoices_list": "my invoices", "payment_create": "pay (manual)"}
    with open(out + "/latest.dat", "w") as f:
        f.write("# label rps ceiling_rps p99_ms p99_limit_ms\n")
        for c in (1, 32, 256):
            if nginx.get(c):
                f.write('"nginx\\n%d c" %.2f %.2f %.4f %.4f\n' % (
                    c, nginx[c]["rps"], 0, nginx[c]["latency_us"]["p99"] / 1000.0, 0))
        for row in rows:
            f.write('"%s\\n%d c" %.2f %.2f %.4f %.4f\n' % (
                short[row["scenario"]], row["connections"], row["rps"], row["ceiling_rps"] or 0,
                row["p99_us"] / 1000.0,
                (P99_FACTOR * nginx_p99_32 / 1000.0) if nginx_p99_32 and row["connections"] == 32
                and row["scenario"] in READS else 0))


if __name__ == "__main__":
    main()
