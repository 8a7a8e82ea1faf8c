#!/usr/bin/env bash
# Runs the decoder's tests under valgrind memcheck: firewatch-profile's own
# (hostile inputs, gzip bombs, unit tests) and the root package's
# tests/profile_mutation.rs (2,788 mutated and truncated profiles) and
# tests/profile_round_trip.rs (round trips). Fails on any memory error or
# definite leak. Results: docs/reliability.md.
#
#   scripts/valgrind-decoder.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get install -y valgrind >/dev/null; }
mapfile -t tests < <({
    cargo test -p firewatch-profile --no-run --message-format=json
    cargo test -p firewatch --test profile_mutation --test profile_round_trip --no-run --message-format=json
} 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
status=0
for t in "${tests[@]}"; do
    echo "== $(basename "$t")"
    # One test thread: valgrind serialises threads anyway, and reports read
    # better. proptest cases are kept as the tests set them.
    log=$(mktemp)
    rc=0
    valgrind --quiet --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        "$t" --test-threads=1 -q >"$log" 2>&1 || rc=$?
    tail -n 5 "$log"
    if [ "$rc" -ne 0 ]; then
        echo "FAILED (exit $rc): full log in $log"
        status=1
    else
        rm -f "$log"
    fi
done
exit $status
