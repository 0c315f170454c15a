#!/bin/sh
# deps.sh: installs the Debian 12 packages Spacer needs (`make deps`), then the npm packages
# pinned in web/package-lock.json (`npm ci` into web/node_modules, never global). Idempotent:
# asks dpkg what is missing and only then runs apt-get (update once, install the missing
# ones), with sudo when not root; runs npm ci only when the lock file changed since the last
# install. One line each when everything is there.
set -eu
cd "$(dirname "$0")/.."

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
# Browser tests: Chromium, driven headless by playwright-core (npm) to use Swagger UI and the
# invoice page as a user would
TEST_PKGS="$TEST_PKGS chromium"
# Node.js and npm: Swagger UI (swagger-ui-dist, served at /apidocs), the OpenAPI validator and
# the browser driver come from the npm registry. A node already installed (say from
# NodeSource, which brings its own npm) is kept.
NODE_PKGS=""
command -v node >/dev/null 2>&1 || NODE_PKGS="nodejs npm"
command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1 && NODE_PKGS="npm"
# Fuzzing (`make fuzz`): clang with libFuzzer and the sanitizer runtimes
FUZZ_PKGS="clang libclang-rt-14-dev"
# Bench: wrk (load), nginx-light (the HTTP ceiling to compare with), gnuplot-nox (the chart);
# it also uses valgrind (in TEST_PKGS above): callgrind counts the worker's instructions per
# request, callgrind_control zeroes and dumps the counts
BENCH_PKGS="wrk nginx-light gnuplot-nox"

PACKAGES="$BUILD_PKGS $CORE_PKGS $DB_PKGS $TEST_PKGS $NODE_PKGS $FUZZ_PKGS $BENCH_PKGS"

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

# npm packages: `npm ci` from the committed lock file, again whenever the lock file changes.
npm_deps() {
    stamp=web/node_modules/.spacer-lock
    if [ -f "$stamp" ] && cmp -s web/package-lock.json "$stamp"; then
        echo "deps: npm packages of web/package-lock.json present"
        return 0
    fi
    echo "deps: npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    cp web/package-lock.json "$stamp"
}

if [ -z "$missing" ]; then
    # shellcheck disable=SC2086 # counting the words
    set -- $PACKAGES
    echo "deps: all $# packages present"
    npm_deps
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
npm_deps
echo "deps: done"
