#!/bin/sh
# deps.sh: installs the Debian packages Spacer needs (make deps). Idempotent: it asks dpkg
# what is missing and runs apt-get only then (update once, install the rest).
set -eu

PACKAGES="
  build-essential pkg-config xxd
  liblua5.4-dev lua5.4
  libevent-dev libpq-dev libcjson-dev libjwt-dev libssl-dev libcrypt-dev
  libcmocka-dev valgrind
  postgresql postgresql-contrib tzdata
  python3 python3-bcrypt curl procps iproute2
  wrk nginx-light gnuplot-nox
"
# build: compiler, pkg-config, xxd (embeds the Lua prelude into the binary)
# core: Lua 5.4, libevent, libpq, cJSON, libjwt, OpenSSL, libxcrypt
# tests: cmocka, valgrind, PostgreSQL (a private cluster per run), tzdata, Python 3 for HTTP tests
# bench: wrk, nginx (the HTTP ceiling), gnuplot (the chart)

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "deps: all present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
