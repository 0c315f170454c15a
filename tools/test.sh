#!/bin/sh
# test.sh: every test against a fresh throw-away PostgreSQL, removed afterwards.
# C unit tests (cmocka), Lua script tests (`spacer test`), black-box HTTP tests (tests/api,
# which also run the node tests of tests/web: the OpenAPI validator and headless Chromium,
# each counted as one test). Screenshots and other output go to $SPACER_TEST_OUTPUT
# (default $BUILD/test-output, emptied at the start). The last line is the sum:
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=/usr/bin/python3

work=$(mktemp -d /tmp/spacer-test.XXXXXX)
chmod 755 "$work"
# Below the kernel's ephemeral range (32768 and up), so no outgoing connection of the tests
# can hold it, and not used by any socket, listening or not.
port=$(( 20000 + $$ % 12000 ))
while ss -tanH 2>/dev/null | awk '{print $4}' | grep -q ":$port\$"; do port=$((port + 1)); done
cleanup() {
    sh tools/devdb.sh destroy "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # then the EXIT trap cleans up; the run stops

passed=0
failed=0
add() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== preparing a throw-away PostgreSQL on port $port"
if ! sh tools/devdb.sh init "$work/pg" "$port" --fast >"$work/devdb.log" 2>&1 ||
   ! sh tools/devdb.sh start "$work/pg" "$port" >>"$work/devdb.log" 2>&1; then
    cat "$work/devdb.log"
    echo "0 passed, 1 failed"
    exit 1
fi
DATABASE_URL=$(sh tools/devdb.sh url "$work/pg" "$port")
SPACER_TEST_DATABASE_URL=$DATABASE_URL
export DATABASE_URL SPACER_TEST_DATABASE_URL
# Tests run with a known secret and the cheapest bcrypt cost that is still bcrypt.
export JWT_SECRET_KEY=test-secret-0123456789abcdef0123456789abcdef
export SPACER_AUTH_BCRYPT_COST=4
export SPACER_LOG_LEVEL=warn
SPACER_TEST_OUTPUT=${SPACER_TEST_OUTPUT:-$(pwd)/$BUILD/test-output}
rm -rf "$SPACER_TEST_OUTPUT"
mkdir -p "$SPACER_TEST_OUTPUT"
export SPACER_TEST_OUTPUT

if ! ./spacer migrate >"$work/migrate.log" 2>&1 || ! ./spacer seed >>"$work/migrate.log" 2>&1; then
    cat "$work/migrate.log"
    echo "0 passed, 1 failed"
    exit 1
fi

echo "== C unit tests"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    status=$?
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}
    f=${f:-0}
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -E 'FAIL|ERROR|error|Assert' | head -20; fi
    echo "$(basename "$t"): $p passed, $f failed"
    add "$p" "$f"
done

echo "== fuzz corpora (each target replays its committed corpus once)"
for t in "$BUILD"/replay/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t" | sed 's/^fuzz_//')
    if out=$("$t" "tests/fuzz/corpus/$name" 2>&1); then
        echo "fuzz_$name: $out"
        add 1 0
    else
        printf '%s\n' "$out" | tail -20
        echo "fuzz_$name: FAILED"
        add 0 1
    fi
done

echo "== Lua script tests (spacer test)"
out=$(./spacer test 2>&1)
printf '%s\n' "$out" | grep -v '^[0-9]* passed, [0-9]* failed$' | head -40
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
if [ -n "$line" ]; then
    echo "spacer test: $line"
    add "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
else
    echo "spacer test: no summary"
    add 0 1
fi

echo "== HTTP tests (tests/api)"
out=$(SPACER_BIN="$(pwd)/spacer" "$PY" tests/api/run.py 2>&1)
printf '%s\n' "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
if [ -n "$line" ]; then
    add "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
else
    add 0 1
fi

echo "(screenshots and test output: $SPACER_TEST_OUTPUT)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
