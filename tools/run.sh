#!/bin/sh
# run.sh: serve in development against the private PostgreSQL that `devdb.sh up` prepared.
set -eu
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ] && ! grep -Eq '^[[:space:]]*url[[:space:]]*=[[:space:]]*[^[:space:]]' spacer.conf; then
    DATABASE_URL=$(sh tools/devdb.sh url var/pg "${SPACER_DEV_PG_PORT:-55432}")
    export DATABASE_URL
fi
exec ./spacer serve
