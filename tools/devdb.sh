#!/bin/sh
# devdb.sh: a private PostgreSQL cluster for development, tests and benchmarks (a throw-away
# cluster like leafo/pgmoon spec/postgres.sh). Owns DIR and nothing else.
#
#   devdb.sh init DIR PORT [--fast]  create the cluster in DIR/data if absent: role "spacer"
#                                    (superuser), database "spacer", trust authentication,
#                                    listening on 127.0.0.1:PORT and a socket in DIR/run only.
#                                    --fast: no fsync, for throw-away clusters only
#   devdb.sh start DIR PORT          start it (if not running) and wait until it answers
#   devdb.sh stop DIR                stop it (if running)
#   devdb.sh status DIR              say whether it runs (exit 0) or not (exit 3)
#   devdb.sh url DIR PORT            print its libpq connection string (the Unix socket):
#                                    host=DIR/run port=PORT user=spacer dbname=spacer
#   devdb.sh destroy DIR             stop it and remove DIR
#   devdb.sh up                      for `make run`: var/pg on port 55432 (SPACER_DEV_PG_PORT),
#                                    initialised, started, then `./spacer migrate` and
#                                    `./spacer seed` with DATABASE_URL exported. With
#                                    DATABASE_URL already set, only migrates and seeds that.
#
# initdb refuses to run as root: as root the PostgreSQL programs run as the `postgres` system
# user (created by Debian's postgresql package), which then owns DIR, so every directory
# above DIR must be searchable by it. As anyone else they run as you.
set -eu

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}

usage() {
    sed -n '5,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "devdb: $*" >&2
    exit 1
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# Runs a PostgreSQL server program as the cluster's owner.
as_owner() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# DIR made absolute, without creating it.
abspath() {
    case "$1" in
    /*) p=$1 ;;
    *) p=$PWD/$1 ;;
    esac
    if [ -d "$p" ]; then
        (cd "$p" && pwd)
    else
        printf '%s\n' "$p" | sed -e 's#/\./#/#g' -e 's#/\.$##' -e 's#//*#/#g' -e 's#\(.\)/$#\1#'
    fi
}

need_port() {
    case "${1:-}" in
    '' | *[!0-9]*) die "PORT must be a number, not '${1:-}'" ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "PORT must be 1-65535, not $1"
}

need_bin() {
    [ -x "$PGBIN/initdb" ] || die "PostgreSQL server programs not found in /usr/lib/postgresql/*/bin (make deps)"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' system user to run the server as root (make deps installs postgresql)"
    fi
}

# Unix socket paths are limited to 107 bytes.
check_socket_path() {
    sock="$1/run/.s.PGSQL.$2"
    [ "${#sock}" -le 107 ] || die "socket path $sock is longer than 107 bytes: choose a shorter DIR"
}

# Quotes a libpq connection-string value when it needs it.
conninfo_value() {
    case "$1" in
    *[[:space:]\'\\]* | '') printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}

is_running() {
    [ -f "$1/data/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

log_tail() {
    if [ -f "$1" ]; then
        echo "devdb: the last lines of $1:" >&2
        tail -n 25 "$1" >&2
    fi
}

cmd_init() {
    dir=$(abspath "$1")
    port=$2
    fast=${3:-}
    need_port "$port"
    case "$fast" in '' | --fast) ;; *) die "unknown option $fast (only --fast)" ;; esac
    need_bin
    check_socket_path "$dir" "$port"
    if [ -f "$dir/data/PG_VERSION" ]; then
        return 0 # already there: init is idempotent
    fi
    if [ -d "$dir/data" ] && [ -n "$(ls -A "$dir/data" 2>/dev/null)" ]; then
        die "$dir/data exists but holds no cluster; remove it (devdb.sh destroy $dir) and init again"
    fi
    mkdir -p "$dir/run"
    if is_root; then
        chown -R postgres:postgres "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "the postgres user cannot reach $dir (as root the server runs as postgres): make the directories above it searchable (chmod o+x) or choose another DIR"
    fi
    locale=C
    if locale -a 2>/dev/null | grep -Eqix 'c\.utf-?8'; then
        locale=C.UTF-8
    fi
    if ! as_owner "$PGBIN/initdb" -D "$dir/data" -U spacer --auth=trust -E UTF8 \
        --locale="$locale" --no-instructions >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    {
        echo ""
        echo "# devdb.sh: a private development cluster"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir/run'"
        echo "max_connections = 300"
        echo "timezone = 'UTC'"
        echo "log_min_messages = warning"
        echo "log_timezone = 'UTC'"
        if [ "$fast" = "--fast" ]; then
            echo "# --fast: a crash may lose or corrupt data; for throw-away clusters only"
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } | as_owner sh -c 'cat >> "$1"' sh "$dir/data/postgresql.conf"
    # The database, in single-user mode: no server to start and stop for it.
    # It exits 0 even when the statement fails: its output says.
    out=$(echo "CREATE DATABASE spacer;" |
        as_owner "$PGBIN/postgres" --single -D "$dir/data" postgres 2>&1) || out="$out
FATAL: postgres --single failed"
    printf '%s\n' "$out" >>"$dir/initdb.log"
    case "$out" in
    *ERROR:* | *FATAL:* | *PANIC:*) printf '%s\n' "$out" >&2; die "cannot create the database spacer" ;;
    esac
    echo "devdb: cluster created in $dir (port $port${fast:+, $fast})"
}

cmd_start() {
    dir=$(abspath "$1")
    port=$2
    need_port "$port"
    need_bin
    [ -f "$dir/data/PG_VERSION" ] || die "no cluster in $dir (devdb.sh init $dir $port first)"
    check_socket_path "$dir" "$port"
    if ! is_running "$dir"; then
        if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -o "-p $port" \
            -w -t 60 start >/dev/null 2>&1; then
            log_tail "$dir/data/server.log"
            die "PostgreSQL in $dir did not start"
        fi
    fi
    i=0
    until "$PGBIN/pg_isready" -q -h "$dir/run" -p "$port" -d spacer -U spacer; do
        i=$((i + 1))
        if [ "$i" -ge 150 ]; then
            log_tail "$dir/data/server.log"
            die "PostgreSQL in $dir is not ready on port $port after 15 s"
        fi
        sleep 0.1
    done
    # A cluster whose init was cut short may lack the database.
    if ! "$PGBIN/psql" -h "$dir/run" -p "$port" -U spacer -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'spacer'" | grep -q 1; then
        "$PGBIN/createdb" -h "$dir/run" -p "$port" -U spacer spacer ||
            die "cannot create the database spacer"
    fi
}

cmd_stop() {
    dir=$(abspath "$1")
    [ -f "$dir/data/PG_VERSION" ] || return 0
    need_bin
    is_running "$dir" || return 0
    if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1; then
        log_tail "$dir/data/server.log"
        die "PostgreSQL in $dir did not stop"
    fi
}

cmd_status() {
    dir=$(abspath "$1")
    if is_running "$dir"; then
        echo "devdb: running in $dir"
    else
        echo "devdb: not running in $dir"
        exit 3
    fi
}

cmd_url() {
    dir=$(abspath "$1")
    need_port "$2"
    echo "host=$(conninfo_value "$dir/run") port=$2 user=spacer dbname=spacer"
}

cmd_destroy() {
    [ -e "$1" ] || return 0
    dir=$(abspath "$1")
    # Only what devdb.sh made: never rm -rf a directory that merely happens to be named.
    for f in "$dir"/* "$dir"/.[!.]*; do
        [ -e "$f" ] || continue
        case "${f##*/}" in
        data | run | initdb.log) ;;
        *) die "$dir holds ${f##*/}, which devdb.sh did not make: not removing it" ;;
        esac
    done
    cmd_stop "$dir"
    rm -rf "$dir"
}

cmd_up() {
    cd "$(dirname "$0")/.."
    port=${SPACER_DEV_PG_PORT:-55432}
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "devdb: DATABASE_URL is set; migrating and seeding that database"
    else
        cmd_init var/pg "$port" >/dev/null
        cmd_start var/pg "$port"
        DATABASE_URL=$(cmd_url var/pg "$port")
        export DATABASE_URL
        echo "devdb: PostgreSQL in var/pg on port $port ($DATABASE_URL)"
    fi
    [ -x ./spacer ] || die "./spacer is not built (make spacer)"
    ./spacer migrate
    ./spacer seed
}

case "${1:-}" in
init) [ $# -ge 3 ] && [ $# -le 4 ] || usage; cmd_init "$2" "$3" "${4:-}" ;;
start) [ $# -eq 3 ] || usage; cmd_start "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
status) [ $# -eq 2 ] || usage; cmd_status "$2" ;;
url) [ $# -eq 3 ] || usage; cmd_url "$2" "$3" ;;
destroy) [ $# -eq 2 ] || usage; cmd_destroy "$2" ;;
up) [ $# -eq 1 ] || usage; cmd_up ;;
*) usage ;;
esac
