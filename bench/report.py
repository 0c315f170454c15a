"""bench/report.py: the results of `make bench` as a Markdown table, JSON and chart data.

    /usr/bin/python3 bench/report.py RESULTS.jsonl OUT_DIR
    /usr/bin/python3 bench/report.py bench/results/latest.json OUT_DIR   (redo from a run's raw figures)
    /usr/bin/python3 bench/report.py --pgbench-log SAMPLING_RATE LOG...   (one pgbench run's
        per-transaction logs, `pgbench -l --sampling-rate`: prints its latency distribution
        as JSON; tools/bench.sh stores it in the run's pgbench entry)

RESULTS.jsonl is what tools/bench.sh collected, one JSON object per line, each with a
"kind": meta, wrk (a Spacer scenario or the nginx ceiling), pgbench, bcrypt, memory, reload.
Writes OUT_DIR/latest.md, OUT_DIR/latest.json and OUT_DIR/latest.dat (gnuplot's input for
bench/plot.gp). Standard library only.
"""
import json
import sys

# The Spacer scenarios, in table order: id, what is requested, ceiling, throughput target,
# whether it is a read (the p99 target at 32 connections).
#   ceiling: ("nginx", None) = nginx at the same connection count; ("pgbench", id) = that
#   script of bench/pgbench at 32 connections; ("bcrypt", None) = cores / one cost-12 hash;
#   ("scenario", id) = that Spacer scenario at the same connection count, in the same run.
#   target: ("ratio", r) = requests/s >= r x ceiling; ("rps", n) = requests/s >= n;
#   ("instructions", id) = the worker's instructions per request (INSTRUCTIONS below, measured
#   with callgrind: the same on any host) meet that row's target, shown at 32 connections; None.
CACHED = {"spaces_home_cache", "spaces_list_cache", "space_by_id_cache"}  # run with the answer cache on
SCENARIOS = [
    ("healthz", "GET /healthz", ("nginx", None), ("ratio", 0.70), True),
    ("profile", "GET /api/users/profile (client token)", ("scenario", "healthz"), ("ratio", 0.70), True),
    ("spaces_list", "GET /api/spaces/spaces?per_page=20&min_capacity=10", ("pgbench", "spaces_list"), ("ratio", 0.60), True),
    ("space_by_id", "GET /api/spaces/spaces/{id}", ("pgbench", "space_by_id"), ("ratio", 0.60), True),
    ("bookings_list", "GET /api/bookings/bookings (client token)", ("pgbench", "bookings_list"),
     ("instructions", "bookings_list"), True),
    ("booking_create", "POST /api/bookings/bookings", ("pgbench", "booking_create"), ("rps", 2000), False),
    ("quote", "GET /api/spaces/spaces/{id}/quote", ("pgbench", "quote"), None, True),
    ("invoices_list", "GET /api/payments/invoices (client token)", ("pgbench", "invoices_list"), None, True),
    ("payment_create", "POST /api/payments/payments (manual)", ("pgbench", "payment_create"), None, False),
    ("login", "POST /api/users/login (bcrypt 12)", ("bcrypt", None), ("ratio", 0.90), False),
    ("healthz_login_flood", "GET /healthz while 32 connections flood the login", ("none", None), ("p99_ms", 10), False),
    ("spaces_home", "GET /api/spaces unpaged (%(home_spaces)s spaces: the web app's home call)", ("pgbench", "spaces_home"), ("ratio", 0.60), True),
    ("apispec", "GET /apispec.json (%(apispec_kb)s KB)", ("none", None), None, True),
    ("spaces_home_cache", "GET /api/spaces unpaged (%(home_spaces)s spaces: the web app's home call)", ("none", None), None, True),
    ("spaces_list_cache", "GET /api/spaces/spaces?per_page=20&min_capacity=10", ("none", None), None, True),
    ("space_by_id_cache", "GET /api/spaces/spaces/{id}", ("none", None), None, True),
]
# Worker instructions per request (tools/bench.sh, "instructions per request": one worker
# under callgrind, a fixed set of requests after a warm-up): id, what is requested, the
# baseline, the target (the most instructions per request, as a share of the baseline) or None.
# The baseline: instructions per request of commit INSTR_BASELINE_COMMIT (the code of the
# bench of INSTR_BASELINE_DATE), measured the same way — this bench's instructions step run on
# a release build of that commit, on the same generated data. CPU time per request does not
# compare across hosts (a slower host's microseconds are not Spacer's doing); instruction
# counts do.
INSTR_BASELINE_COMMIT = "7a22c74"
INSTR_BASELINE_DATE = "2026-11-26"
INSTRUCTIONS = [
    ("bookings_list", "GET /api/bookings/bookings (client token, 20 of the client's ~100)", 3534804, 0.50),
    ("spaces_home", "GET /api/spaces unpaged (%(home_spaces)s spaces: the web app's home call)", 3650066, None),
    ("spaces_list", "GET /api/spaces/spaces?per_page=20&min_capacity=10", 1688495, None),
    ("space_by_id", "GET /api/spaces/spaces/{id}", 178944, None),
    ("profile", "GET /api/users/profile (client token)", 247789, None),
    # informational: no baseline of that commit was measured (2.50 M on 7e22cd1, before its
    # rows went straight to JSON)
    ("invoices_list", "GET /api/payments/invoices (client token, 20 of the client's ~110)", None, None),
]
P99_FACTOR = 2.0          # reads at 32 connections: p99 <= 2 x nginx's p99 (DB reads: see below)
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


def count(v):
    """An instruction count: 1.64 M, 98.0 k."""
    if v is None:
        return "—"
    if v >= 1e6:
        return "%.2f M" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k" % (v / 1e3)
    return "%.0f" % v


def yes(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def pgbench_log(rate, paths):
    """The latency distribution of one pgbench run's per-transaction logs (pgbench -l, one
    file per thread). A line: client_id transaction_no time script_no time_epoch time_us
    [schedule_lag] [retries]; time is the transaction's latency in µs, or "failed" /
    "skipped"."""
    times, failed = [], 0
    for path in paths:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                if parts[2].isdigit():
                    times.append(int(parts[2]))
                else:
                    failed += 1
    times.sort()
    if not times:
        raise SystemExit("pgbench-log: no transaction in " + " ".join(paths))
    return {"n": len(times), "sampling_rate": rate, "failed": failed, "mean_us": round(sum(times) / len(times), 1),
            "p50_us": percentile(times, 50), "p90_us": percentile(times, 90),
            "p99_us": percentile(times, 99), "p999_us": percentile(times, 99.9),
            "max_us": times[-1]}


def main():
    if sys.argv[1:2] == ["--pgbench-log"]:
        print(json.dumps(pgbench_log(float(sys.argv[2]), sys.argv[3:])))
        return
    src, out = sys.argv[1], sys.argv[2]
    if src.endswith(".json"):  # a previous latest.json: its raw entries again
        entries = json.load(open(src))["raw"]
    else:
        entries = [json.loads(line) for line in open(src) if line.strip()]
    meta = {}
    wrk, pgb, bcrypt, memory, reload, instr = {}, {}, None, [], {}, {}
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
        elif k == "instructions":
            instr[e["id"]] = e

    nginx = {c: wrk.get(("nginx", c)) for c in (1, 32, 256)}
    nginx_p99_32 = nginx[32]["latency_us"]["p99"] if nginx.get(32) else None

    def label_of(text):
        return text % {k: meta.get(k, "?") for k in ("home_spaces", "apispec_kb")}

    # worker instructions per request, against the baseline
    instr_rows = {}
    for iid, label, base, share in INSTRUCTIONS:
        e = instr.get(iid)
        per = e["ir"] / max(1, e["requests"]) if e else None
        failed = bool(e) and e["ok"] < e["requests"]
        ok = None
        if share is not None and per is not None:
            ok = per <= share * base and not failed
        instr_rows[iid] = {
            "scenario": iid, "request": label_of(label), "requests": e["requests"] if e else None,
            "ok": e["ok"] if e else None, "instructions_per_request": per,
            "baseline": base, "baseline_commit": INSTR_BASELINE_COMMIT,
            "change": (per / base - 1) if per is not None and base else None,
            "target_share": share, "met": ok}

    rows = []
    for sid, label, ceiling, target, is_read in SCENARIOS:
        for conns in (1, 32, 256):
            r = wrk.get((sid, conns))
            if r is None:
                continue
            lat = r["latency_us"]
            row = {
                "scenario": sid, "request": label_of(label), "answer_cache": sid in CACHED,
                "connections": conns,
                "requests": r["requests"], "rps": r["rps"],
                "mean_us": lat.get("mean"), "p50_us": lat["p50"], "p99_us": lat["p99"],
                "errors": r["errors"], "non_2xx_or_error": sum(r["errors"].values()),
            }
            if "cache" in r:
                hits, misses = r["cache"]["hits"], r["cache"]["misses"]
                row["cache_hits"], row["cache_misses"] = hits, misses
                row["cache_hit_ratio"] = hits / (hits + misses) if hits + misses else None
            n = nginx.get(conns)
            row["nginx_p99_us"] = n["latency_us"]["p99"] if n else None
            row["p99_over_nginx"] = (lat["p99"] / n["latency_us"]["p99"]) if is_read and n and n["latency_us"]["p99"] else None
            cname, cval, pg = None, None, None
            if ceiling[0] == "nginx" and n:
                cname, cval = "nginx return 200, %d conns" % conns, n["rps"]
            elif ceiling[0] == "pgbench" and ceiling[1] in pgb and conns > 1:
                # pgbench runs 32 clients: one connection's rate is bound by its round trips,
                # not by that ceiling, so a 1-connection row has none (its target is the p50).
                pg = pgb[ceiling[1]]
                cname, cval = "pgbench %s.sql, %d conns" % (ceiling[1], pg["clients"]), pg["tps"]
            elif ceiling[0] == "bcrypt" and bcrypt:
                cname, cval = "bcrypt: %d cores / %.0f ms" % (bcrypt["cores"], bcrypt["hash_s"] * 1000), bcrypt["ceiling_rps"]
            elif ceiling[0] == "scenario" and wrk.get((ceiling[1], conns)):
                other = [x for x in SCENARIOS if x[0] == ceiling[1]][0]
                cname = "`%s`, %d conns" % (label_of(other[1]), conns)
                cval = wrk[(ceiling[1], conns)]["rps"]
            row["ceiling"] = cname
            row["ceiling_rps"] = cval
            row["ratio"] = (r["rps"] / cval) if cval else None
            # Little's law: conns requests always outstanding at a rate capped by the ceiling
            # make a mean latency of at least conns / ceiling.
            row["little_mean_min_us"] = (conns / pg["tps"] * 1e6) if is_read and pg and pg["tps"] else None
            pg_dist = (pg or {}).get("latency_log")
            row["pgbench_p99_us"] = pg_dist["p99_us"] if pg_dist else None
            cpu_req = (r["cpu"]["server_s"] / max(1, r["requests"]) * 1e6) if "cpu" in r else None
            row["server_cpu_us"] = cpu_req
            targets, oks = [], []
            if target and target[0] == "ratio" and not (conns == 1 and cval is None):
                if ceiling[0] == "scenario":
                    targets.append("≥ %d%% of `%s`" % (round(target[1] * 100), ceiling[1]))
                else:
                    targets.append("≥ %d%% of ceiling" % round(target[1] * 100))
                oks.append(None if row["ratio"] is None else row["ratio"] >= target[1])
            elif target and target[0] == "p99_ms":
                targets.append("p99 < %d ms" % target[1])
                oks.append(lat["p99"] < target[1] * 1000)
            elif target and target[0] == "rps":
                targets.append("≥ {:,}/s".format(target[1]))
                oks.append(r["rps"] >= target[1])
            elif target and target[0] == "instructions" and conns == 32:
                ir = instr_rows.get(target[1])
                targets.append("worker instructions/req ≤ %d%% of %s's %s (callgrind%s)" % (
                    round(ir["target_share"] * 100), INSTR_BASELINE_COMMIT, count(ir["baseline"]),
                    ", below: %s" % count(ir["instructions_per_request"])
                    if ir["instructions_per_request"] is not None else "; not run"))
                oks.append(ir["met"])
            if conns == 1:
                targets.append("p50 ≤ %d ms" % P50_ONE_MS)
                oks.append(lat["p50"] <= P50_ONE_MS * 1000)
            row["p99_limit_us"] = None
            if is_read and conns == 32 and nginx_p99_32:
                if pg is not None and row["pgbench_p99_us"] is not None:
                    # A database-bound read: the database's own tail at this concurrency is the
                    # floor; the HTTP layer must add none of its own.
                    limit = P99_FACTOR * max(nginx_p99_32, row["pgbench_p99_us"])
                    targets.append("p99 ≤ 2× max(nginx p99 %s, pgbench p99 %s) = %s" % (
                        ms(nginx_p99_32), ms(row["pgbench_p99_us"]), ms(limit)))
                else:
                    limit = P99_FACTOR * nginx_p99_32
                    targets.append("p99 ≤ 2× nginx p99 (%s)" % ms(limit))
                row["p99_limit_us"] = limit
                oks.append(lat["p99"] <= limit)
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
    w("| Scenario | Conns | Requests/s | mean | p50 | p99 | p99 ÷ nginx p99 | mean ≥ (Little) | Ceiling | Ceiling/s | Ratio | Target | Met |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |")
    for c in (1, 32, 256):
        n = nginx.get(c)
        if n:
            w("| *ceiling:* nginx `return 200` | %d | %s | %s | %s | %s | — | — | — | — | — | — | — |" % (
                c, num(n["rps"]), ms(n["latency_us"].get("mean")), ms(n["latency_us"]["p50"]),
                ms(n["latency_us"]["p99"])))
    for row in rows:
        errs = row["non_2xx_or_error"]
        label = "`%s`" % row["request"]
        if row["scenario"] in CACHED:
            label += " *(answer cache on, as shipped%s)*" % (
                "; %.1f%% cache hits" % (row["cache_hit_ratio"] * 100)
                if row.get("cache_hit_ratio") is not None else "")
        if errs:
            label += " (%d errors/non-2xx)" % errs
        w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, row["connections"], num(row["rps"]), ms(row["mean_us"]), ms(row["p50_us"]),
            ms(row["p99_us"]),
            "%.1f×" % row["p99_over_nginx"] if row["p99_over_nginx"] is not None else "—",
            ms(row["little_mean_min_us"]),
            row["ceiling"] or "—", num(row["ceiling_rps"]),
            "%.0f%%" % (row["ratio"] * 100) if row["ratio"] is not None else "—",
            row["target"], row["met"]))
    table = "\n".join(lines)

    ilines = []
    if instr:
        ilines.append("| Scenario | Instructions/request | %s (%s) | Change | Target | Met |" % (
            INSTR_BASELINE_COMMIT, INSTR_BASELINE_DATE))
        ilines.append("| --- | ---: | ---: | ---: | --- | --- |")
        for iid, _, _, _ in INSTRUCTIONS:
            ir = instr_rows[iid]
            if ir["instructions_per_request"] is None:
                continue
            label = "`%s`" % ir["request"]
            if ir["ok"] < ir["requests"]:
                label += " (%d of %d not 2xx)" % (ir["requests"] - ir["ok"], ir["requests"])
            ilines.append("| %s | %s | %s | %s | %s | %s |" % (
                label, count(ir["instructions_per_request"]), count(ir["baseline"]),
                "%+.0f%%" % (ir["change"] * 100) if ir["change"] is not None else "—",
                ("≤ %d%% of %s (%s)" % (round(ir["target_share"] * 100), INSTR_BASELINE_COMMIT,
                                          count(ir["target_share"] * ir["baseline"])))
                if ir["target_share"] is not None else "—",
                yes(ir["met"])))

    # pgbench ceilings in detail
    plines = []
    if pgb:
        plines.append("| pgbench script | mirrors | clients | transactions/s | mean latency | p50 | p99 | max | logged |")
        plines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for pid in sorted(pgb):
            p = pgb[pid]
            d = p.get("latency_log") or {}
            logged = "—"
            if d:
                logged = num(d["n"])
                if d.get("sampling_rate", 1) < 1:
                    logged += " (%.1f%%)" % (d["sampling_rate"] * 100)
            plines.append("| `bench/pgbench/%s.sql` | %s | %d | %s | %.2f ms | %s | %s | %s | %s |" % (
                pid, p.get("mirrors", ""), p["clients"], num(p["tps"]), p["latency_ms"],
                ms(d.get("p50_us")), ms(d.get("p99_us")), ms(d.get("max_us")), logged))
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
                    clines.append(cpu_row("`%s`%s (server: Spacer)" % (
                        label_of(label), " *(answer cache on)*" if sid in CACHED else ""),
                        c, r["requests"], r["cpu"], "spacer"))
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
    md.append("")
    md.append(
        "How to read it. The rows without *answer cache on* run with the answer cache off: they measure the "
        "database path against pgbench running the route's own SQL (*Ratio*: Spacer's requests/s over that "
        "ceiling). `/api/users/profile` is compared with `/healthz` at the same connections in the same run.")
    md.append("")
    md.append(
        "**p99 at 32 connections.** The HTTP layer's target is to add no tail of its own. wrk keeps every "
        "connection's request outstanding, so by Little's law a scenario's mean latency is connections ÷ "
        "requests/s, and its requests/s cannot pass what PostgreSQL serves of the same SQL on these cores: "
        "*mean ≥ (Little)* is that floor, connections ÷ the pgbench ceiling. pgbench itself — the same "
        "statements, 32 clients, no HTTP at all — has the tail shown in its table below: that tail is the "
        "database's at this concurrency, and no HTTP layer can answer below it. So a read that runs SQL has the "
        "target p99 ≤ 2× max(nginx's p99, pgbench's p99 of its SQL), both of the same run; reads that run no SQL "
        "(`/healthz`, the profile, the *answer cache on* rows) keep p99 ≤ 2× nginx's p99. The plain comparison "
        "with nginx stays in *p99 ÷ nginx p99* (same connections) for every read: at 32 connections, above 2.0× "
        "misses the raw form of that target.")
    if any(r.get("cache_hit_ratio") is not None for r in rows):
        md.append("")
        md.append(
            "*Answer cache on, as shipped*: a second Spacer with spacer.conf's `[cache]` as it is (on, answers "
            "kept `ttl` seconds per worker); the warm-up fills the cache, and the share of the measured run's "
            "cacheable requests answered from it (`spacer_cache_hits_total` and `spacer_cache_misses_total` of "
            "`/metrics`) follows the scenario's name.")
    if ilines:
        md.append("")
        md.append(
            "Worker instructions per request: Spacer with one worker under `valgrind --tool=callgrind` (answer "
            "cache off, access_log as shipped); per scenario %s requests over %s keep-alive connections after a "
            "warm-up of %s, the worker's counters zeroed before and dumped after them (`callgrind_control`); "
            "its instructions (Ir: everything the worker process ran, libraries included, the kernel not) over "
            "the requests. Unlike CPU time, this does not depend on the host's speed or on its other load, so "
            "it compares with the baseline, commit `%s` (the bench of %s) measured the same way." % (
                meta.get("instr_requests", "?"), meta.get("instr_conns", "?"), meta.get("instr_warmup", "?"),
                INSTR_BASELINE_COMMIT, INSTR_BASELINE_DATE))
        md.append("")
        md.extend(ilines)
    if plines:
        md.append("")
        md.append("Ceilings of the database scenarios: `pgbench -M prepared -n -c 32 -j 2 -T %s` on the "
                  "same database, running the SQL the route runs; p50, p99 and max from the transactions' latencies pgbench "
                  "logged (`pgbench -l`, nearest rank; past %s transactions a run logs a random sample of "
                  "them, *logged* below, so that logging takes no share of the ceiling)." % (
                      meta.get("duration", "?"), num(meta.get("pglog_samples"))))
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
                   "reload": reload,
                   "instructions": [instr_rows[i[0]] for i in INSTRUCTIONS if instr_rows[i[0]]["requests"]],
                   "raw": entries}, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # gnuplot data: label, Spacer req/s, ceiling req/s (0 if none), p99 ms, p99 limit ms (0 if none)
    short = {"healthz": "healthz", "profile": "profile", "spaces_list": "list 20", "space_by_id": "space by id",
             "bookings_list": "my bookings", "booking_create": "create booking",
             "quote": "quote", "login": "login", "healthz_login_flood": "healthz, login flood",
             "spaces_home": "home list", "apispec": "apispec",
             "invoices_list": "my invoices", "payment_create": "pay (manual)",
             "spaces_home_cache": "home list, cache", "spaces_list_cache": "list 20, cache",
             "space_by_id_cache": "space by id, cache"}
    with open(out + "/latest.dat", "w") as f:
        f.write("# label rps ceiling_rps p99_ms p99_limit_ms\n")
        for c in (1, 32, 256):
            if nginx.get(c):
                f.write('"nginx\\n%d c" %.2f %.2f %.4f %.4f\n' % (
                    c, nginx[c]["rps"], 0, nginx[c]["latency_us"]["p99"] / 1000.0, 0))
        for row in rows:
            f.write('"%s\\n%d c" %.2f %.2f %.4f %.4f\n' % (
                short[row["scenario"]], row["connections"], row["rps"], row["ceiling_rps"] or 0,
                row["p99_us"] / 1000.0, (row["p99_limit_us"] or 0) / 1000.0))


if __name__ == "__main__":
    main()
