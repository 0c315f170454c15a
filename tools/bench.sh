#!/bin/sh
# bench.sh: the benchmark of `make bench` (which builds ./spacer with RELEASE=1 first).
#
# On 127.0.0.1 only, everything started here is stopped (by pid) when it ends, however it ends:
#   1. a throw-away PostgreSQL (tools/devdb.sh, durability off), migrated (`spacer migrate`),
#      loaded with bench/gen_data.sql: 1,000 users, 1,000 spaces, 100,000 bookings; every
#      user has the same real bcrypt hash (cost 12) made once with `spacer hash-password`;
#      for the payment scenarios and the instructions step also bench/gen_payments.sql:
#      200,000 confirmed bookings to pay (one client's pay pool) and an invoice per confirmed
#      booking;
#   2. the HTTP ceiling: Debian's nginx answering `return 200` (bench/nginx.conf, 2 workers),
#      each run right before /healthz's at the same connections (step 3);
#   3. Spacer as shipped (spacer.conf: access_log on, to a file) with 2 workers but the answer
#      cache off (BENCH_CACHE): wrk runs each scenario (bench/wrk/*.lua) for BENCH_DURATION s
#      after a BENCH_WARMUP s warm-up, at 32 connections, and the read scenarios at 256 too;
#      /healthz, the web app's home call (GET /api/spaces unpaged, ~54 spaces) and
#      /apispec.json at 1 connection too;
#   4. memory: each worker's VmRSS idle, and holding 10,000 idle keep-alive connections
#      (bench/keepalive.py);
#   5. reload under load: the quote scenario without, then with, `spacer reload` every 200 ms;
#   6. Spacer again, with the answer cache on as shipped: the public reads as users get them
#      (the home call at 1 and 32 connections, the spaces list and one space at 32), with the
#      cache's hits and misses during each run (/metrics);
#   7. instructions per request: Spacer again, one worker under `valgrind --tool=callgrind`;
#      for bookings_list, spaces_home, spaces_list, space_by_id, profile and invoices_list, a
#      fixed set of requests (bench/instructions.py) after a warm-up, the worker's instructions counted
#      between `callgrind_control -z` and `-d`: a cost per request that does not depend on the
#      host, compared with a baseline commit by bench/report.py;
#   8. the database ceilings: pgbench -M prepared -c 32 -j 2 running bench/pgbench/*.sql, the
#      SQL each database scenario runs (a read's right before its scenario in step 3, the
#      writes' at the end), with every transaction's latency logged (pgbench -l:
#      its p50 and p99, by bench/report.py); the bcrypt ceiling: cores / the time of one
#      cost-12 hash (`spacer hash-password` timed at cost 12, minus its start-up at cost 4).
# Results: a Markdown table printed and written to bench/results/latest.md, the raw figures
# in latest.json, a chart in latest.png (bench/report.py, bench/plot.gp).
#
# Environment: SPACER_BIN (default ./spacer), BENCH_CACHE (off: the answer cache of spacer.conf
# [cache], on as shipped, would answer the read scenarios of step 3 from memory; the rows of
# step 6 always have it on), BENCH_DURATION (10), BENCH_WARMUP (3), BENCH_KEEPALIVE (10000),
# BENCH_OUT (bench/results), BENCH_ONLY (space-separated scenario ids to run, e.g.
# "healthz login"; default all: nginx healthz profile spaces_home apispec spaces_list
# space_by_id bookings_list quote booking_create invoices_list payment_create login reload
# memory spaces_home_cache spaces_list_cache space_by_id_cache instructions; a database
# scenario's id also runs its pgbench ceiling), BENCH_INSTR_REQUESTS (300: the requests each
# scenario of step 7 counts), BENCH_CALLGRIND_DIR (step 7 keeps each scenario's callgrind
# dump there as ID.callgrind, for callgrind_annotate: where the instructions go), BENCH_PERF=1
# (CPU profiles of each measured run in $OUT/perf/, with perf; slows the runs a little).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SPACER=${SPACER_BIN:-./spacer}
PY=/usr/bin/python3
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
KEEPALIVE=${BENCH_KEEPALIVE:-10000}
OUT=${BENCH_OUT:-bench/results}
ONLY=${BENCH_ONLY:-}
THREADS=2
CONNS=32
CONNS_HIGH=256
WORKERS=2
USERS=1000
SPACES=1000
BOOKINGS=100000
PASSWORD=bench-password-1
CLIENT_LIST=101   # the client whose bookings are listed (about a hundred of them)
CLIENT_BOOK=102   # the client who creates bookings (another one: the list stays the same)
CLIENT_PAY=103    # the client who pays (bench/gen_payments.sql gives them the pay pool)
PAY_PER_SPACE=200 # pay pool: confirmed bookings per space (x 1,000 spaces)
PAY_SHARE=40000   # pay pool bookings each wrk run of payment_create may use
RELOAD_MS=200
MIN_CAPACITY=10   # the list scenario's filter
LIST_PAGES=5      # ... and its pages (1..5, at random)
PGLOG_SAMPLES=50000 # pgbench logs about this many transactions' latencies per run, at most
HOME_SPACES=54    # the home call's filter keeps about this many spaces (the web app's catalogue)
INSTR_REQUESTS=${BENCH_INSTR_REQUESTS:-300} # instructions per request: requests counted ...
INSTR_CONNS=4     # ... over these keep-alive connections ...
INSTR_WARMUP=100  # ... after these

started=$(date +%s)
log() { printf '== [%3ds] %s\n' $(( $(date +%s) - started )) "$*"; }
die() { echo "bench: $*" >&2; exit 1; }

for tool in wrk nginx gnuplot curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (make deps)"
done
[ -x "$PGBIN/pgbench" ] || die "pgbench is missing (make deps)"
[ -x "$SPACER" ] || die "$SPACER is missing (make RELEASE=1 spacer)"
[ -x "$PY" ] || die "$PY is missing (make deps)"

# A port below the kernel's ephemeral range (32768 and up: wrk's and pgbench's own
# connections) that no socket uses, listening or not.
free_port() {
    p=$1
    while ss -tanH 2>/dev/null | awk '{print $4}' | grep -q ":$p\$"; do p=$((p + 1)); done
    echo "$p"
}

work=$(mktemp -d /tmp/spacer-bench.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port $(( 20000 + $$ % 12000 )))
http_port=$(free_port $(( pg_port + 1 )))
nginx_port=$(free_port $(( http_port + 1 )))
spacer_pid=""
nginx_pid=""
ka_pid=""
reload_pid=""
flood_pid=""
perf_pid=""

stop_pid() { # pid signal seconds: signal it, wait up to seconds, then SIGKILL
    [ -n "$1" ] || return 0
    kill -0 "$1" 2>/dev/null || return 0
    kill "-$2" "$1" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $(( $3 * 10 )) ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    trap - EXIT INT TERM
    stop_pid "$perf_pid" INT 5
    stop_pid "$reload_pid" TERM 2
    stop_pid "$flood_pid" TERM 2
    stop_pid "$ka_pid" TERM 5
    stop_pid "$nginx_pid" TERM 5
    stop_pid "$spacer_pid" TERM 15
    sh tools/devdb.sh destroy "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# File descriptors: 10,000 keep-alive connections need more than the usual 1,024 (the
# server's and the load generators'); as high as the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

results=$work/results.jsonl
: >"$results"
skipped=""
skip() { skipped="$skipped${skipped:+|}$*"; log "skipped: $*"; }
want() { [ -z "$ONLY" ] || case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# ---- PostgreSQL, schema, data ------------------------------------------------------------
log "throw-away PostgreSQL on 127.0.0.1:$pg_port (in $work/pg)"
sh tools/devdb.sh init "$work/pg" "$pg_port" --fast >"$work/devdb.log" 2>&1 &&
    sh tools/devdb.sh start "$work/pg" "$pg_port" >>"$work/devdb.log" 2>&1 ||
    { cat "$work/devdb.log"; die "PostgreSQL did not start"; }
DATABASE_URL=$(sh tools/devdb.sh url "$work/pg" "$pg_port")
export DATABASE_URL
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h $work/pg/run -p $pg_port -U spacer -d spacer"

# Spacer's settings for every command below: as shipped (spacer.conf) but for these.
export SPACER_SERVER_PORT=$http_port
export SPACER_SERVER_WORKERS=$WORKERS
export SPACER_SERVER_PID_FILE=$work/spacer.pid
export SPACER_AUTH_BCRYPT_COST=12
export JWT_SECRET_KEY=bench-secret-0123456789abcdef0123456789abcdef
# The answer cache ([cache], on as shipped) would serve the public read scenarios from memory:
# they measure the database path against their pgbench ceilings, so it is off unless
# BENCH_CACHE=on (lib/auth's copy of users stays on either way).
export SPACER_CACHE_ENABLED=${BENCH_CACHE:-off}

log "migrate"
"$SPACER" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; die "migrate failed"; }

log "bench data: $USERS users, $SPACES spaces, $BOOKINGS bookings (bench/gen_data.sql)"
hash=$(printf '%s\n' "$PASSWORD" | timeout 60 "$SPACER" hash-password) || die "hash-password failed"
timeout 300 $PSQL -v hash="$hash" -v users=$USERS -v spaces=$SPACES -v bookings=$BOOKINGS \
    -f bench/gen_data.sql >"$work/gen.log" 2>&1 || { cat "$work/gen.log"; die "bench/gen_data.sql failed"; }
pay_min=0 pay_max=0
if want payment_create || want invoices_list || want instructions; then
    log "bench payment data: $((PAY_PER_SPACE * SPACES)) bookings to pay, invoices (bench/gen_payments.sql)"
    timeout 300 $PSQL -v client_pay=$CLIENT_PAY -v per_space=$PAY_PER_SPACE \
        -f bench/gen_payments.sql >"$work/gen_pay.log" 2>&1 || { cat "$work/gen_pay.log"; die "bench/gen_payments.sql failed"; }
    pay_min=$($PSQL -Atc "SELECT min(id) FROM bookings WHERE notes = 'bench pay pool'")
    pay_max=$($PSQL -Atc "SELECT max(id) FROM bookings WHERE notes = 'bench pay pool'")
fi
space_min=$($PSQL -Atc "SELECT min(id) FROM spaces")
space_max=$($PSQL -Atc "SELECT max(id) FROM spaces")

# ---- meta ---------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
git diff-index --quiet HEAD -- 2>/dev/null || dirty=true
access_log=$(sed -n 's/^[[:space:]]*access_log[[:space:]]*=[[:space:]]*\([a-z]*\).*/\1/p' spacer.conf | head -1)
# [compat] max_list: the most rows of an unpaged compatibility list (the home call's LIMIT)
MAX_LIST=$(sed -n 's/^[[:space:]]*max_list[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' spacer.conf | head -1)
MAX_LIST=${MAX_LIST:-1000}
[ -n "${SPACER_HTTP_ACCESS_LOG:-}" ] && access_log=$SPACER_HTTP_ACCESS_LOG
cores=$(nproc)
printf '{"kind":"meta","date":"%s","commit":"%s","dirty":%s,"cpu":"%s","cores":%d,"kernel":"%s","workers":%d,"access_log":"%s","pg_version":"%s","pg_fast":true,"duration":%d,"warmup":%d,"threads":%d,"users":%d,"spaces":%d,"bookings":%d,"wrk":"%s","nginx":"%s","loadavg_start":"%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" "$dirty" \
    "$(json_str "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)")" "$cores" \
    "$(uname -r)" "$WORKERS" "${access_log:-?}" \
    "$("$PGBIN/postgres" --version | awk '{print $3}')" "$DURATION" "$WARMUP" "$THREADS" \
    "$USERS" "$SPACES" "$BOOKINGS" "$(json_str "$(wrk -v 2>&1 | head -1 | cut -c1-60)")" \
    "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$results"

# ---- wrk ----------------------------------------------------------------------------------
export BENCH_WRK_DIR=$ROOT/bench/wrk
export BENCH_SPACE_MIN=$space_min BENCH_SPACE_MAX=$space_max BENCH_USERS=$USERS
export BENCH_PASSWORD=$PASSWORD BENCH_THREADS=$THREADS
export BENCH_MIN_CAPACITY=$MIN_CAPACITY BENCH_LIST_PAGES=$LIST_PAGES
export BENCH_PAY_MIN=$pay_min BENCH_PAY_MAX=$pay_max BENCH_PAY_SHARE=$PAY_SHARE
# Bookings made by the bench start here: after every generated one (they end 65 days ahead).
BENCH_SLOT_EPOCH=$(( ($(date +%s) / 86400 + 120) * 86400 ))
export BENCH_SLOT_EPOCH
slot_pass=0

# ---- CPU accounting: where the machine's time went during each measured run --------------
# Ticks (1/CLK_TCK s) of user + system time: of a process tree (the process, its reaped
# children, its live children — Spacer's master and workers, nginx, the postmaster and its
# backends), of the machine (/proc/stat), and of this shell's reaped children (`times`:
# wrk or pgbench, the load generator). What the machine spent beyond ours is other load.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
tree_ticks() {
    if [ -z "${1:-}" ] || [ ! -r "/proc/$1/stat" ]; then echo 0; return; fi
    for k in "$1" $(pgrep -P "$1"); do
        sed 's/.*) //' "/proc/$k/stat" 2>/dev/null
    done | awk '{ s += $12 + $13 + $14 + $15 } END { print s + 0 }'
}
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
pg_pid() { head -1 "$work/pg/data/postmaster.pid" 2>/dev/null; }
# The shell's reaped children, in seconds: `times` runs in this shell (in a subshell it would
# count the subshell's children), then its output is read.
children_s() {
    sed -n 2p "$work/times" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        print t }'
}
cpu_begin() { # server_pid
    cpu_srv0=$(tree_ticks "$1"); cpu_pg0=$(tree_ticks "$(pg_pid)")
    times >"$work/times"
    cpu_c0=$(children_s)
    cpu_m0=$(machine_ticks)
    cpu_t0=$(date +%s%N)
}
cpu_end() { # server_pid: sets cpu to a JSON member "cpu":{...}
    times >"$work/times"
    cpu_t1=$(date +%s%N)
    cpu_m1=$(machine_ticks)
    cpu_c1=$(children_s)
    cpu_srv1=$(tree_ticks "$1"); cpu_pg1=$(tree_ticks "$(pg_pid)")
    cpu=$(awk -v s0="$cpu_srv0" -v s1="$cpu_srv1" -v p0="$cpu_pg0" -v p1="$cpu_pg1" -v m0="$cpu_m0" \
        -v m1="$cpu_m1" -v c0="$cpu_c0" -v c1="$cpu_c1" -v t0="$cpu_t0" -v t1="$cpu_t1" \
        -v hz="$CLK_TCK" -v cores="$cores" 'BEGIN {
        printf "\"cpu\":{\"server_s\":%.2f,\"postgres_s\":%.2f,\"client_s\":%.2f,\"machine_busy_s\":%.2f,\"wall_s\":%.3f,\"cores\":%d}",
            (s1 - s0) / hz, (p1 - p0) / hz, c1 - c0, (m1 - m0) / hz, (t1 - t0) / 1e9, cores }')
}

# BENCH_PERF=1: a CPU profile of the server's processes (and PostgreSQL's) during each measured
# run, `perf record -e cpu-clock -g`, summarised in $OUT/perf/<scenario>-<conns>.txt.
perf_pid=""
perf_start() { # name
    [ "${BENCH_PERF:-0}" = 1 ] || return 0
    pids=$(printf '%s\n' "$server_pid" $(pgrep -P "$server_pid") $(pg_pid) $(pgrep -P "$(pg_pid)") |
        grep -v '^$' | tr '\n' ',' | sed 's/,$//')
    perf record -q -e cpu-clock -F 999 -g -p "$pids" -o "$work/perf-$1.data" \
        -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
}
perf_end() { # name
    [ -n "$perf_pid" ] || return 0
    stop_pid "$perf_pid" INT 30
    perf_pid=""
    mkdir -p "$OUT/perf"
    {
        echo "# perf record -e cpu-clock -g of the server's and PostgreSQL's processes, $1"
        echo "## by process and library"
        perf report -i "$work/perf-$1.data" --no-children --sort comm,dso --stdio -g none \
            --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$'
        echo "## by symbol, self"
        perf report -i "$work/perf-$1.data" --no-children --sort comm,dso,symbol --stdio -g none \
            --percent-limit 0.4 2>/dev/null | grep -v '^#' | grep -v '^$'
        echo "## by symbol, with callees"
        perf report -i "$work/perf-$1.data" --children --sort comm,symbol --stdio -g none \
            --percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$'
    } >"$OUT/perf/$1.txt"
    rm -f "$work/perf-$1.data"
}

# run_wrk ID CONNS SCRIPT PATH [TIMEOUT]: warm-up, then the measured run; appends its figures.
run_wrk() {
    id=$1 c=$2 script=$3 path=$4 to=${5:-10s}
    t=$THREADS
    [ "$c" -lt "$t" ] && t=$c # wrk needs a connection per thread
    slot_pass=$((slot_pass + 1))
    BENCH_SLOT_BASE=$((slot_pass * 1000000)) timeout $((WARMUP + 30)) \
        wrk -t"$t" -c"$c" -d"${WARMUP}s" --timeout "$to" -s "bench/wrk/$script" \
        "http://127.0.0.1:$port$path" >"$work/wrk-warm.out" 2>&1
    [ "$id" = login ] && sleep "$login_drain"
    slot_pass=$((slot_pass + 1))
    [ "$cache_probe" = 1 ] && cache0=$(cache_counts)
    perf_start "$id-$c"
    cpu_begin "$server_pid"
    BENCH_SLOT_BASE=$((slot_pass * 1000000)) timeout $((DURATION + 30)) \
        wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout "$to" --latency -s "bench/wrk/$script" \
        "http://127.0.0.1:$port$path" >"$work/wrk-$id-$c.out" 2>&1
    cpu_end "$server_pid"
    perf_end "$id-$c"
    extra=""
    if [ "$cache_probe" = 1 ]; then
        # shellcheck disable=SC2086 # two numbers each
        set -- $cache0 $(cache_counts)
        extra="\"cache\":{\"hits\":$(( $3 - $1 )),\"misses\":$(( $4 - $2 ))},"
    fi
    [ "$id" = login ] && sleep "$login_drain"
    line=$(sed -n 's/^BENCH {/{"kind":"wrk","id":"'"$id"'","conns":'"$c"','"$cpu"','"$extra"'/p' "$work/wrk-$id-$c.out")
    if [ -z "$line" ]; then
        cat "$work/wrk-$id-$c.out"
        skip "$id at $c connections: wrk failed"
        return 1
    fi
    printf '%s\n' "$line" >>"$results"
    printf '%s\n' "$line" | "$PY" -c 'import json,sys
r=json.loads(sys.stdin.read()); l=r["latency_us"]; e=sum(r["errors"].values()); c=r["cpu"]; n=max(1,r["requests"])
print("   %-15s %3d conns: %10.1f req/s  p50 %8.2f ms  p99 %8.2f ms  errors %d  cpu/req: server %.0f us, pg %.0f us, wrk %.0f us; other load %.0f%%%s" % (
    r["id"], r["conns"], r["rps"], l["p50"]/1000, l["p99"]/1000, e, c["server_s"]/n*1e6, c["postgres_s"]/n*1e6, c["client_s"]/n*1e6,
    100*max(0, c["machine_busy_s"]-c["server_s"]-c["postgres_s"]-c["client_s"])/(c["cores"]*c["wall_s"]),
    ("; cache hits %d, misses %d" % (r["cache"]["hits"], r["cache"]["misses"])) if "cache" in r else ""))'
    if [ "$port" = "$http_port" ]; then
        # 499: requests in flight when wrk stopped, cancelled as their clients left
        if grep '"status": *[45][0-9][0-9]' "$work/spacer.log" 2>/dev/null | grep -vq '"status": *499'; then
            echo "   some answers were errors; a few of them:"
            grep '"status": *[45][0-9][0-9]' "$work/spacer.log" | grep -v '"status": *499' | head -3 | cut -c1-400
        fi
        : >"$work/spacer.log" # opened for appending: truncating it is safe
    fi
    return 0
}

login_drain=5
PAIRED_PGBENCH="spaces_home spaces_list space_by_id bookings_list quote invoices_list"
pgbench_done=""
cache_probe=0 # 1: run_wrk records the answer cache's hits and misses of each measured run
# The answer cache's counters, every worker's: "hits misses".
cache_counts() {
    curl -fs -m 5 "http://127.0.0.1:$http_port/metrics" | awk '
        $1 == "spacer_cache_hits_total" { h = $2 }
        $1 == "spacer_cache_misses_total" { m = $2 }
        END { print h + 0, m + 0 }'
}

# ---- the HTTP ceiling: nginx --------------------------------------------------------------
if want nginx || want healthz; then
    log "ceiling: nginx return 200 on 127.0.0.1:$nginx_port (bench/nginx.conf)"
    mkdir -p "$work/nginx"
    sed -e "s#@PREFIX@#$work/nginx#g" -e "s#@PORT@#$nginx_port#g" bench/nginx.conf >"$work/nginx/nginx.conf"
    nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    i=0
    until curl -fs -o /dev/null "http://127.0.0.1:$nginx_port/"; do
        i=$((i + 1))
        [ $i -lt 100 ] || { cat "$work/nginx/error.log"; die "nginx did not start"; }
        sleep 0.1
    done
    if ! want healthz; then
        port=$nginx_port server_pid=$nginx_pid
        run_wrk nginx 1 static.lua /
        run_wrk nginx $CONNS static.lua /
        run_wrk nginx $CONNS_HIGH static.lua /
        stop_pid "$nginx_pid" TERM 5
        nginx_pid=""
    fi
    # else nginx stays up, idle: each /healthz run comes right after nginx's at the same
    # connections (scenario below), so a ceiling that drifts on a shared host drifts for both.
fi

# ---- the bcrypt ceiling -------------------------------------------------------------------
if want login; then
    runs=8
    log "ceiling: bcrypt — $runs \`spacer hash-password\` at cost 12 and at cost 4"
    time_hashes() { # cost -> nanoseconds for $runs runs
        t0=$(date +%s%N)
        i=0
        while [ $i -lt $runs ]; do
            printf '%s\n' "$PASSWORD" | SPACER_AUTH_BCRYPT_COST=$1 timeout 30 "$SPACER" hash-password >/dev/null
            i=$((i + 1))
        done
        echo $(( $(date +%s%N) - t0 ))
    }
    time_hashes 4 >/dev/null # warm the page cache
    t4=$(time_hashes 4)
    t12=$(time_hashes 12)
    # cost 4 is 2^8 times cheaper than cost 12: its own hashing is taken back out.
    "$PY" -c 'import json,sys
runs, cores, t4, t12 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c4, c12 = t4 / runs / 1e9, t12 / runs / 1e9
h = (c12 - c4) * 256 / 255
print(json.dumps({"kind": "bcrypt", "runs": runs, "cores": cores, "cost4_s": c4, "cost12_s": c12,
                  "hash_s": h, "ceiling_rps": cores / h}))' "$runs" "$cores" "$t4" "$t12" >>"$results"
    tail -1 "$results" | "$PY" -c 'import json,sys
b=json.loads(sys.stdin.read()); print("   one cost-12 hash: %.1f ms; ceiling %d cores / hash = %.2f logins/s" % (b["hash_s"]*1000, b["cores"], b["ceiling_rps"]))'
    # Logins whose client has gone (wrk stops with $CONNS in flight) are still hashed by the
    # server: after a login run, wait that long before measuring anything else.
    login_drain=$(tail -1 "$results" | "$PY" -c 'import json,math,sys
b=json.loads(sys.stdin.read()); print(math.ceil(int(sys.argv[1]) * b["hash_s"] / b["cores"]) + 1)' $CONNS)
fi

# ---- Spacer -------------------------------------------------------------------------------
worker_pids() { pgrep -P "$spacer_pid" | tr '\n' ' '; }
record_memory() { # phase label [connections]
    ws=""
    for w in $(worker_pids); do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$w/status" 2>/dev/null)
        [ -n "$rss" ] && ws="$ws${ws:+,}{\"pid\":$w,\"rss_kb\":$rss}"
    done
    printf '{"kind":"memory","phase":"%s","label":"%s","connections":%s,"workers":[%s]}\n' \
        "$1" "$2" "${3:-0}" "$ws" >>"$results"
    echo "   memory, $2: $(for w in $(worker_pids); do awk '/^VmRSS:/ {printf "%.1f MB ", $2/1024}' "/proc/$w/status"; done)"
}

start_spacer() { # answer cache: on|off
    log "Spacer: $SPACER serve on 127.0.0.1:$http_port, $WORKERS workers, access_log ${access_log:-?} (to a file), answer cache $1"
    : >"$work/spacer.log"
    SPACER_CACHE_ENABLED=$1 "$SPACER" serve >>"$work/spacer.log" 2>&1 &
    spacer_pid=$!
    i=0
    until curl -fs -o /dev/null "http://127.0.0.1:$http_port/healthz"; do
        i=$((i + 1))
        if [ $i -ge 150 ] || ! kill -0 "$spacer_pid" 2>/dev/null; then
            tail -30 "$work/spacer.log"
            die "spacer did not start"
        fi
        sleep 0.1
    done
    # Wait until both workers answer (each has its own listener).
    sleep 1
    port=$http_port server_pid=$spacer_pid
}
start_spacer "$SPACER_CACHE_ENABLED"
record_memory idle_start "idle, just started"

login_token() { # user number -> token
    curl -fs -m 30 -H 'Content-Type: application/json' \
        -d "{\"email\":\"user$1@bench.spacer.test\",\"password\":\"$PASSWORD\"}" \
        "http://127.0.0.1:$http_port/api/users/login" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])' 2>/dev/null
}
routes=$("$SPACER" routes 2>/dev/null)
has_route() { printf '%s\n' "$routes" | grep -Eq "^$1 +$2 "; }

BENCH_TOKEN=""
BENCH_CLIENT_TOKEN=""
BENCH_PAY_TOKEN=""
if has_route POST /api/users/login; then
    BENCH_TOKEN=$(login_token $CLIENT_LIST)
    BENCH_CLIENT_TOKEN=$(login_token $CLIENT_BOOK)
    BENCH_PAY_TOKEN=$(login_token $CLIENT_PAY)
fi
export BENCH_TOKEN BENCH_CLIENT_TOKEN BENCH_PAY_TOKEN

# run_pgbench ID: the database ceiling of a scenario, bench/pgbench/ID.sql (step 8).
run_pgbench() { # id
    f=bench/pgbench/$1.sql
    mirrors=$(sed -n 's/^-- mirrors: //p' "$f" | head -1)
    set -- "$1" -h "$work/pg/run" -p "$pg_port" -U spacer -M prepared -n -c $CONNS -j $THREADS \
        -D space_min="$space_min" -D space_max="$space_max" -D users=$USERS \
        -D client_list=$CLIENT_LIST -D client_book=$CLIENT_BOOK -D slot_epoch="$BENCH_SLOT_EPOCH" \
        -D client_pay=$CLIENT_PAY -D pay_min="$pay_min" -D pay_max="$pay_max" \
        -D nul=NULL -D min_capacity=$MIN_CAPACITY -D list_pages=$LIST_PAGES \
        -D home_cap="$home_cap" -D max_list="$MAX_LIST" \
        -f "$f" spacer
    id=$1
    shift
    timeout $((WARMUP + 30)) "$PGBIN/pgbench" -T "$WARMUP" "$@" >"$work/pgbench-warm.out" 2>&1
    # The measured run logs transactions' latencies (-l: a line per transaction, each thread
    # its own file; bench/report.py makes the percentiles). A line costs pgbench ~2.5 µs, a
    # share of the ceiling at tens of thousands of transactions/s: past PGLOG_SAMPLES
    # transactions (from the warm-up's rate) a random sample of them is logged.
    warm_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench-warm.out" | head -1)
    rate=$(awk -v tps="${warm_tps:-0}" -v d="$DURATION" -v n=$PGLOG_SAMPLES 'BEGIN {
        r = (tps * d > n) ? n / (tps * d) : 1; printf "%.4f", r }')
    rm -f "$work/pglog-$id".*
    cpu_begin ""
    timeout $((DURATION + 30)) "$PGBIN/pgbench" -T "$DURATION" -l --log-prefix="$work/pglog-$id" \
        --sampling-rate="$rate" "$@" >"$work/pgbench-$id.out" 2>&1
    cpu_end ""
    dist=$("$PY" bench/report.py --pgbench-log "$rate" "$work/pglog-$id".* 2>"$work/pglog.err") ||
        { cat "$work/pglog.err"; dist=null; }
    rm -f "$work/pglog-$id".*
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench-$id.out" | head -1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$work/pgbench-$id.out" | head -1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench-$id.out" | head -1)
    if [ -z "$tps" ] || [ -z "$lat" ]; then
        tail -20 "$work/pgbench-$id.out"
        skip "pgbench $id failed"
        return 1
    fi
    printf '{"kind":"pgbench","id":"%s","mirrors":"%s","clients":%d,"tps":%s,"latency_ms":%s,"failed":%s,"latency_log":%s,%s}\n' \
        "$id" "$(json_str "$mirrors")" $CONNS "$tps" "$lat" "${failed:-0}" "$dist" "$cpu" >>"$results"
    tail -1 "$results" | "$PY" -c 'import json,sys
r=json.loads(sys.stdin.read()); c=r["cpu"]; n=max(1,r["tps"]*c["wall_s"]); d=r["latency_log"] or {}
print("   pgbench %-15s %10.1f tps  mean %6.2f ms  p50 %s  p99 %s  failed %s  cpu/tx: pg %.0f us, pgbench %.0f us; other load %.0f%%" % (
    r["id"], r["tps"], r["latency_ms"],
    "%.2f ms" % (d["p50_us"]/1000) if d else "?", "%.2f ms" % (d["p99_us"]/1000) if d else "?",
    r["failed"], c["postgres_s"]/n*1e6, c["client_s"]/n*1e6,
    100*max(0, c["machine_busy_s"]-c["postgres_s"]-c["client_s"])/(c["cores"]*c["wall_s"])))'
}

# scenario ID METHOD ROUTE SCRIPT PATH CONNS... : runs it when the route exists; a
# read's pgbench ceiling runs right before it (PAIRED_PGBENCH), in the same state of the data
# and of the host.
scenario() {
    id=$1 method=$2 route=$3 script=$4 path=$5
    shift 5
    want "$id" || return 0
    if ! has_route "$method" "$route"; then
        skip "$id: no route $method $route yet"
        return 0
    fi
    case "$id" in
    profile | bookings_list | booking_create | invoices_list | payment_create)
        if [ -z "$BENCH_TOKEN" ] || [ -z "$BENCH_CLIENT_TOKEN" ] || [ -z "$BENCH_PAY_TOKEN" ]; then
            skip "$id: no client token (login failed)"
            return 0
        fi
        ;;
    esac
    log "scenario $id: $method $(printf '%s' "$route" | tr -d '\\')"
    case " $PAIRED_PGBENCH " in
    *" $id "*)
        if [ -f "bench/pgbench/$id.sql" ]; then
            sid=$id
            run_pgbench "$sid" && pgbench_done="$pgbench_done $sid"
            id=$sid # run_pgbench sets id
        fi
        ;;
    esac
    for c in "$@"; do
        if [ "$id" = healthz ] && [ -n "$nginx_pid" ]; then # its ceiling, just before it
            (port=$nginx_port server_pid=$nginx_pid; run_wrk nginx "$c" static.lua /) # run_wrk sets id, c...
        fi
        case "$id" in
        login) run_wrk "$id" "$c" "$script" "$path" 60s ;;
        *) run_wrk "$id" "$c" "$script" "$path" ;;
        esac
    done
}

scenario healthz GET /healthz static.lua /healthz 1 $CONNS $CONNS_HIGH
stop_pid "$nginx_pid" TERM 5
nginx_pid=""
# A client's own profile: lib/auth's per-worker copy of the user row answers it (target: 70%
# of /healthz at the same connections).
scenario profile GET /api/users/profile profile.lua /api/users/profile $CONNS $CONNS_HIGH
# The web app's home call: the compatibility path, unpaged, filtered to about 54 spaces (the
# app's real catalogue) out of the bench's thousand. Then the API's own document (~45 KB).
home_cap=$MIN_CAPACITY
if want spaces_home || want spaces_home_cache || want instructions; then
    home_cap=$($PSQL -Atc "SELECT c FROM generate_series(5, 200) AS c
        ORDER BY abs((SELECT count(*) FROM spaces WHERE capacity >= c AND is_available) - $HOME_SPACES), c LIMIT 1")
    home_n=$($PSQL -Atc "SELECT count(*) FROM spaces WHERE capacity >= $home_cap AND is_available")
    printf '{"kind":"meta","home_spaces":%d,"home_path":"/api/spaces?min_capacity=%d"}\n' "$home_n" "$home_cap" >>"$results"
fi
scenario spaces_home GET /api/spaces static.lua "/api/spaces?min_capacity=$home_cap" 1 $CONNS
if want apispec; then
    kb=$(curl -fs "http://127.0.0.1:$http_port/apispec.json" | wc -c)
    printf '{"kind":"meta","apispec_kb":%d}\n' $(( kb / 1024 )) >>"$results"
    scenario apispec GET /apispec.json static.lua /apispec.json 1
fi
scenario spaces_list GET /api/spaces/spaces spaces_list.lua / $CONNS $CONNS_HIGH
scenario space_by_id GET '/api/spaces/spaces/\{id\}' space_by_id.lua / $CONNS $CONNS_HIGH
scenario bookings_list GET /api/bookings/bookings bookings_list.lua /api/bookings/bookings $CONNS $CONNS_HIGH
scenario quote GET '/api/spaces/spaces/\{id\}/quote' quote.lua / $CONNS $CONNS_HIGH
scenario booking_create POST /api/bookings/bookings booking_create.lua / $CONNS
if want booking_create; then
    # Tens of thousands of new rows: vacuum and analyze now rather than let autovacuum do it
    # during the next scenarios.
    log "VACUUM ANALYZE bookings ($($PSQL -Atc "SELECT count(*) FROM bookings") rows)"
    timeout 120 $PSQL -c "VACUUM ANALYZE bookings" >/dev/null 2>&1
fi
scenario invoices_list GET /api/payments/invoices invoices_list.lua /api/payments/invoices $CONNS $CONNS_HIGH
scenario payment_create POST /api/payments/payments payment_create.lua / $CONNS
scenario login POST /api/users/login login.lua / $CONNS

# ---- /healthz while logins flood the server (bcrypt runs off the loops) -------------------
if want login && has_route POST /api/users/login; then
    log "scenario healthz_login_flood: GET /healthz while $CONNS connections flood the login"
    timeout $((2 * WARMUP + DURATION + 40)) wrk -t1 -c$CONNS -d"$((2 * WARMUP + DURATION + 5))s" \
        --timeout 60s -s bench/wrk/login.lua "http://127.0.0.1:$http_port/" >/dev/null 2>&1 &
    flood_pid=$!
    sleep "$WARMUP"
    run_wrk healthz_login_flood $CONNS static.lua /healthz || true
    wait "$flood_pid" 2>/dev/null || true
    sleep "$login_drain"
fi

# ---- reload under load --------------------------------------------------------------------
if want reload && has_route GET '/api/spaces/spaces/\{id\}/quote'; then
    log "reload under load: quote at $CONNS connections, without then with \`spacer reload\` every $RELOAD_MS ms"
    run_reload() { # without|with
        out="$work/wrk-reload-$1.out"
        slot_pass=$((slot_pass + 1))
        timeout $((WARMUP + 30)) wrk -t$THREADS -c$CONNS -d"${WARMUP}s" --timeout 10s \
            -s bench/wrk/quote.lua "http://127.0.0.1:$http_port/" >/dev/null 2>&1
        if [ "$1" = with ]; then
            (
                n=0 failed=0
                end=$(( $(date +%s) + DURATION + 1 ))
                trap 'echo "$n $failed" >"$work/reloads"; exit 0' TERM
                while [ "$(date +%s)" -lt $end ]; do
                    timeout 10 "$SPACER" reload >/dev/null 2>&1 || failed=$((failed + 1))
                    n=$((n + 1))
                    echo "$n $failed" >"$work/reloads"
                    sleep 0.$RELOAD_MS
                done
            ) &
            reload_pid=$!
        fi
        cpu_begin "$spacer_pid"
        timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNS -d"${DURATION}s" --timeout 10s --latency \
            -s bench/wrk/quote.lua "http://127.0.0.1:$http_port/" >"$out" 2>&1
        cpu_end "$spacer_pid"
        n=0 failed=0
        if [ "$1" = with ]; then
            stop_pid "$reload_pid" TERM 12
            reload_pid=""
            [ -f "$work/reloads" ] && read -r n failed <"$work/reloads"
        fi
        line=$(sed -n 's/^BENCH {/{"kind":"reload","id":"'"$1"'","interval_ms":'$RELOAD_MS',"reloads":'"$n"',"reload_failures":'"$failed"','"$cpu"',/p' "$out")
        if [ -n "$line" ]; then
            printf '%s\n' "$line" >>"$results"
            printf '%s\n' "$line" | "$PY" -c 'import json,sys
r=json.loads(sys.stdin.read()); l=r["latency_us"]
print("   %-7s reload: %10.1f req/s  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  reloads %d (failed %d)  errors %d" % (
    r["id"], r["rps"], l["p50"]/1000, l["p99"]/1000, l["max"]/1000, r["reloads"], r["reload_failures"], sum(r["errors"].values())))'
        else
            cat "$out"
            skip "reload under load ($1): wrk failed"
        fi
        : >"$work/spacer.log"
    }
    run_reload without
    run_reload with
fi

# ---- memory -------------------------------------------------------------------------------
if want memory; then
    sleep 2
    record_memory idle_after "idle, after the scenarios"
    log "memory: $KEEPALIVE idle keep-alive connections (bench/keepalive.py)"
    "$PY" bench/keepalive.py "$http_port" "$KEEPALIVE" 25 >"$work/keepalive.out" 2>&1 &
    ka_pid=$!
    i=0
    until grep -q '^ready' "$work/keepalive.out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -ge 600 ] || ! kill -0 "$ka_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    opened=$(sed -n 's/^ready \([0-9]*\).*/\1/p' "$work/keepalive.out")
    if [ -n "$opened" ]; then
        echo "   $(cat "$work/keepalive.out")"
        record_memory keepalive "holding $opened idle keep-alive connections" "$opened"
    else
        cat "$work/keepalive.out"
        skip "memory with $KEEPALIVE keep-alive connections: could not open them"
    fi
    stop_pid "$ka_pid" TERM 5
    ka_pid=""
    : >"$work/spacer.log"
fi

log "stopping Spacer"
stop_pid "$spacer_pid" TERM 15
spacer_pid=""

# ---- the public reads as users get them: the answer cache on, as shipped -----------------
# The rows above measure the database path (the cache off) against the pgbench ceilings; these
# measure what spacer.conf ships: [cache] enabled = on (answers kept [cache] ttl seconds). The
# warm-up fills the cache; each run records its hits and misses.
if want spaces_home_cache || want spaces_list_cache || want space_by_id_cache; then
    start_spacer on
    cache_probe=1
    scenario spaces_home_cache GET /api/spaces static.lua "/api/spaces?min_capacity=$home_cap" 1 $CONNS
    scenario spaces_list_cache GET /api/spaces/spaces spaces_list.lua / $CONNS
    scenario space_by_id_cache GET '/api/spaces/spaces/\{id\}' space_by_id.lua / $CONNS
    cache_probe=0
    log "stopping Spacer (answer cache on)"
    stop_pid "$spacer_pid" TERM 15
    spacer_pid=""
fi

# ---- instructions per request: callgrind --------------------------------------------------
# CPU time per request depends on the host (its speed, its other load): a bench of another day
# on another machine does not compare with it. The instructions a worker executes per request
# do: Spacer with one worker under `valgrind --tool=callgrind` (the worker is a forked child,
# counted apart in its own output file; --trace-children=yes gives it its own control channel,
# without which callgrind_control does not see it), the answer cache off, access_log as
# shipped. Each read scenario: INSTR_WARMUP requests (pool connections opened, statements
# prepared, per-worker copies filled), the worker's counters zeroed (`callgrind_control -z`),
# INSTR_REQUESTS requests over INSTR_CONNS keep-alive connections (bench/instructions.py: the
# same requests every run), the counters dumped (`callgrind_control -d`): Ir over requests.
# instr_send N SEED OUT: N requests of the scenario, the client's report in $work/OUT.
instr_send() {
    timeout 900 "$PY" bench/instructions.py send "$http_port" "$1" $INSTR_CONNS "$2" "$path" \
        ${token:+"$token"} >"$work/$3" 2>&1 && return 0
    cat "$work/$3"
    return 1
}
# instr ID METHOD ROUTE PATH [TOKEN]: one scenario (PATH: see bench/instructions.py).
instr() {
    id=$1 path=$4 token=${5:-}
    if ! has_route "$2" "$3"; then
        skip "instructions $id: no route $2 $(printf '%s' "$3" | tr -d '\\') yet"
        return 0
    fi
    if [ $# -ge 5 ] && [ -z "$5" ]; then
        skip "instructions $id: no client token (login failed)"
        return 0
    fi
    instr_send $INSTR_WARMUP 1 instr-warm.out || { skip "instructions $id: warm-up failed"; return 0; }
    # callgrind_control exits 0 even when it found no such process: its output tells.
    timeout 60 callgrind_control -z "$instr_worker" >"$work/cgc.out" 2>&1
    if ! grep -q OK "$work/cgc.out"; then
        cat "$work/cgc.out"
        skip "instructions $id: callgrind_control -z failed"
        return 0
    fi
    instr_send $INSTR_REQUESTS 2 instr.out || { skip "instructions $id: requests failed"; return 0; }
    rm -f "$work/callgrind.$instr_worker".*
    timeout 60 callgrind_control -d "$instr_worker" >"$work/cgc.out" 2>&1
    dump=$(ls -t "$work/callgrind.$instr_worker".* 2>/dev/null | head -1)
    if [ -z "$dump" ] || ! ir=$("$PY" bench/instructions.py total "$dump"); then
        cat "$work/cgc.out"
        skip "instructions $id: no callgrind dump"
        return 0
    fi
    if [ -n "${BENCH_CALLGRIND_DIR:-}" ]; then
        mkdir -p "$BENCH_CALLGRIND_DIR" && cp "$dump" "$BENCH_CALLGRIND_DIR/$id.callgrind"
    fi
    read -r _ sent _ ok <"$work/instr.out"
    printf '{"kind":"instructions","id":"%s","path":"%s","requests":%d,"ok":%d,"ir":%s}\n' \
        "$id" "$(json_str "$path")" "$sent" "$ok" "$ir" >>"$results"
    awk -v id="$id" -v ir="$ir" -v n="$sent" -v ok="$ok" 'BEGIN {
        printf "   %-15s %12.0f instructions/request (%d requests, %d 2xx)\n", id, ir / n, n, ok }'
}
if want instructions; then
    if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
        skip "instructions: valgrind is missing (make deps)"
    else
        log "instructions per request: Spacer, 1 worker, under valgrind --tool=callgrind" \
            "($INSTR_REQUESTS requests, $INSTR_CONNS connections, after $INSTR_WARMUP)"
        : >"$work/spacer.log"
        SPACER_CACHE_ENABLED=off SPACER_SERVER_WORKERS=1 valgrind -q --tool=callgrind \
            --trace-children=yes --callgrind-out-file="$work/callgrind.%p" \
            "$SPACER" serve >>"$work/spacer.log" 2>&1 &
        spacer_pid=$!
        i=0
        until curl -fs -m 30 -o /dev/null "http://127.0.0.1:$http_port/healthz"; do
            i=$((i + 1))
            if [ $i -ge 600 ] || ! kill -0 "$spacer_pid" 2>/dev/null; then
                tail -30 "$work/spacer.log"
                die "spacer under callgrind did not start"
            fi
            sleep 0.2
        done
        instr_worker=$(pgrep -P "$spacer_pid" | head -1)
        printf '{"kind":"meta","instr_requests":%d,"instr_conns":%d,"instr_warmup":%d,"valgrind":"%s"}\n' \
            $INSTR_REQUESTS $INSTR_CONNS $INSTR_WARMUP "$(valgrind --version)" >>"$results"
        instr bookings_list GET /api/bookings/bookings /api/bookings/bookings "$BENCH_TOKEN"
        instr spaces_home GET /api/spaces "/api/spaces?min_capacity=$home_cap"
        instr spaces_list GET /api/spaces/spaces \
            "/api/spaces/spaces?per_page=20&min_capacity=$MIN_CAPACITY&page={page}"
        instr space_by_id GET '/api/spaces/spaces/\{id\}' '/api/spaces/spaces/{space}'
        instr profile GET /api/users/profile /api/users/profile "$BENCH_TOKEN"
        instr invoices_list GET /api/payments/invoices /api/payments/invoices "$BENCH_TOKEN"
        log "stopping Spacer (callgrind)"
        stop_pid "$spacer_pid" TERM 60
        spacer_pid=""
    fi
fi

# ---- the database ceilings: pgbench -------------------------------------------------------
log "ceilings: pgbench -M prepared -n -c $CONNS -j $THREADS -T $DURATION"
printf '{"kind":"meta","pglog_samples":%d}\n' $PGLOG_SAMPLES >>"$results"
# Reads first: booking_create adds rows.
for id in spaces_list spaces_home space_by_id bookings_list quote invoices_list booking_create payment_create; do
    want "$id" || continue
    case " $pgbench_done " in *" $id "*) continue ;; esac # ran with its scenario
    if [ -f "bench/pgbench/$id.sql" ]; then
        run_pgbench "$id"
    else
        skip "pgbench $id: no bench/pgbench/$id.sql yet"
    fi
done

# ---- report -------------------------------------------------------------------------------
printf '{"kind":"meta","loadavg_end":"%s","elapsed_s":%d}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
    $(( $(date +%s) - started )) >>"$results"
if [ -n "$skipped" ]; then
    "$PY" -c 'import json,sys; print(json.dumps({"kind":"meta","skipped":sys.argv[1].split("|")}))' "$skipped" >>"$results"
fi
mkdir -p "$OUT"
"$PY" bench/report.py "$results" "$OUT" || die "bench/report.py failed"
gnuplot -e "datafile='$OUT/latest.dat'; outfile='$OUT/latest.png'" bench/plot.gp 2>"$work/gnuplot.log" ||
    { cat "$work/gnuplot.log"; echo "bench: the chart failed" >&2; }
rm -f "$OUT/latest.dat"
log "done: $OUT/latest.md, latest.json, latest.png"
echo
cat "$OUT/latest.md"
