#!/bin/sh
# fuzz.sh: `make fuzz`: runs every built libFuzzer target (or those named) for FUZZ_SECONDS
# each, on a scratch copy of its committed corpus so the tree stays as it is. Reports crashes
# and property failures, and says how to keep what was found. Exit 1 if anything crashed.
set -u
cd "$(dirname "$0")/.."
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
work=$FUZZ_BUILD/work

if [ $# -eq 0 ]; then
    set -- $(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
fi

crashed=""
for t in "$@"; do
    bin=$FUZZ_BUILD/fuzz_$t
    corpus=tests/fuzz/corpus/$t
    [ -x "$bin" ] || { echo "fuzz: $bin is not built"; crashed="$crashed $t"; continue; }
    mkdir -p "$corpus"
    rm -rf "$work/$t" "$work/$t-crashes"
    mkdir -p "$work/$t" "$work/$t-crashes"
    cp "$corpus"/* "$work/$t"/ 2>/dev/null
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    echo "== fuzz_$t for ${FUZZ_SECONDS}s ($(ls "$corpus" | wc -l) seeds)"
    # shellcheck disable=SC2086 # dict is one word or none
    "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$t-crashes/" $dict "$work/$t" >"$work/$t.log" 2>&1
    status=$?
    grep -a -E '^(stat::number_of_executed_units|stat::new_units_added)' "$work/$t.log" |
        sed 's/^stat::/   /'
    if [ "$status" -ne 0 ] || [ -n "$(ls "$work/$t-crashes")" ]; then
        crashed="$crashed $t"
        grep -a -E 'property broken|ERROR:|SUMMARY:|runtime error' "$work/$t.log" | head -5 |
            sed 's/^/   /'
        for c in "$work/$t-crashes"/*; do
            [ -f "$c" ] && echo "   input: $c (replay: $bin $c; log: $work/$t.log)"
        done
    fi
done

echo
echo "To keep what the fuzzers found, minimise it into the committed corpus (only inputs that"
echo "add coverage are copied), then commit tests/fuzz/corpus/:"
echo "    $FUZZ_BUILD/fuzz_NAME -merge=1 tests/fuzz/corpus/NAME $work/NAME"
echo "A crash: fix it, copy the input into tests/fuzz/corpus/NAME/ under a name that says what"
echo "it is, and add a unit, Lua or API test for the behaviour; \`make test\` replays it."
if [ -n "$crashed" ]; then
    echo "fuzz: crashes or broken properties in:$crashed"
    exit 1
fi
echo "fuzz: nothing found"
