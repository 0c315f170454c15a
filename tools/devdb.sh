#!/bin/sh
# devdb.sh: a private PostgreSQL cluster for development, tests and benchmarks.
#
#   devdb.sh init DIR PORT [--fast]  create the cluster in DIR (role and database "spacer")
#   devdb.sh start DIR PORT          start it (127.0.0.1:PORT and a socket in DIR/run)
#   devdb.sh stop DIR                stop it
#   devdb.sh url DIR PORT            print its connection string (the Unix socket)
#   devdb.sh destroy DIR             stop it and remove DIR
#   devdb.sh up                      for `make run`: var/pg on port 55432, initialised,
#                                    started, migrated and seeded (idempotent)
#
# initdb refuses to run as root: as root the server runs as the `postgres` system user
# (created by Debian's postgresql package), which then owns DIR. As anyone else it runs as you.
# --fast turns durability off (fsync, synchronous_commit): for throw-away clusters only.
set -eu

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PGBIN/initdb" ] || { echo "devdb: PostgreSQL server binaries not found (make deps)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

abspath() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

cmd=${1:-}
case "$cmd" in
init)
    dir=$(abspath "$2")
    port=$3
    fast=${4:-}
    if [ -f "$dir/data/PG_VERSION" ]; then
        exit 0
    fi
    mkdir -p "$dir/run"
    [ "$(id -u)" -eq 0 ] && chown -R postgres "$dir"
    as_owner "$PGBIN/initdb" -D "$dir/data" -U spacer -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    {
        echo "# devdb.sh"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir/run'"
        echo "max_connections = 300"
        echo "shared_buffers = 128MB"
        echo "timezone = 'UTC'"
        echo "log_min_messages = warning"
        if [ "$fast" = "--fast" ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } | as_owner sh -c "cat >> '$dir/data/postgresql.conf'"
    ;;
start)
    dir=$(abspath "$2")
    port=$3
    if as_owner "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        exit 0
    fi
    if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 start >/dev/null; then
        echo "devdb: PostgreSQL did not start; its log:" >&2
        tail -20 "$dir/data/server.log" >&2
        exit 1
    fi
    i=0
    until "$PGBIN/pg_isready" -q -h "$dir/run" -p "$port"; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "devdb: not ready after 10 s" >&2; exit 1; }
        sleep 0.1
    done
    if ! "$PGBIN/psql" -h "$dir/run" -p "$port" -U spacer -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'spacer'" | grep -q 1; then
        "$PGBIN/createdb" -h "$dir/run" -p "$port" -U spacer spacer
    fi
    ;;
stop)
    dir=$(abspath "$2")
    [ -f "$dir/data/PG_VERSION" ] || exit 0
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    ;;
url)
    dir=$(abspath "$2")
    echo "host=$dir/run port=$3 user=spacer dbname=spacer"
    ;;
destroy)
    [ -d "$2" ] || exit 0
    dir=$(abspath "$2")
    sh "$0" stop "$dir"
    rm -rf "$dir"
    ;;
up)
    cd "$(dirname "$0")/.."
    port=${SPACER_DEV_PG_PORT:-55432}
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "devdb: DATABASE_URL is set; using that database"
    else
        sh "$0" init var/pg "$port"
        sh "$0" start var/pg "$port"
        DATABASE_URL=$(sh "$0" url var/pg "$port")
        export DATABASE_URL
        echo "devdb: PostgreSQL in var/pg on port $port"
    fi
    ./spacer migrate
    ./spacer seed
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
