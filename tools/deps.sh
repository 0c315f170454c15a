#!/bin/sh
# deps.sh: installs the Debian 12 packages Spacer needs (`make deps`). Idempotent: asks dpkg
# what is missing and only then runs apt-get (update once, install the missing ones), with
# sudo when not root. One line when everything is there.
set -eu

# Build: compiler and make, pkg-config, xxd (embeds the Lua prelude into the binary)
BUILD_PKGS="build-essential pkg-config xxd"
# Core: Lua 5.4, libevent, libpq, cJSON, libjwt, OpenSSL, libxcrypt (bcrypt), http-parser
# (the HTTP/1.1 request parser under core/http.c; llhttp is not packaged in Debian 12)
CORE_PKGS="liblua5.4-dev lua5.4 libevent-dev libpq-dev libcjson-dev libjwt-dev libssl-dev
  libcrypt-dev libhttp-parser-dev"
# Database: PostgreSQL server (a private cluster per test run, tools/devdb.sh) and contrib
# (citext, btree_gist)
DB_PKGS="postgresql postgresql-contrib"
# Tests: cmocka (C units), Python 3 with bcrypt (HTTP tests, legacy hashes), valgrind, curl,
# procps (ps, pgrep), iproute2 (ss: free ports), tzdata (the spaces' time zones)
TEST_PKGS="libcmocka-dev python3 python3-bcrypt valgrind curl procps iproute2 tzdata"
# Bench: wrk (load), nginx-light (the HTTP ceiling to compare with), gnuplot-nox (the chart)
BENCH_PKGS="wrk nginx-light gnuplot-nox"

PACKAGES="$BUILD_PKGS $CORE_PKGS $DB_PKGS $TEST_PKGS $BENCH_PKGS"

command -v dpkg-query >/dev/null 2>&1 || {
    echo "deps: dpkg-query not found: this script installs Debian packages (Debian 12)" >&2
    exit 1
}

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    # shellcheck disable=SC2086 # counting the words
    set -- $PACKAGES
    echo "deps: all $# packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "deps: missing:$missing; run this as root or install sudo" >&2
        exit 1
    }
    SUDO="sudo"
fi
echo "deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
echo "deps: done"
