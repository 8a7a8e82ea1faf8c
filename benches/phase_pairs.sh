#!/usr/bin/env bash
# Two `firewatch` binaries on the same profile, runs alternated (old, new, old, new, …) so that
# both see the same moments of a shared machine: median and minimum of the wall time and of the
# aggregate phase (`FIREWATCH_TIMINGS=1`). For changes inside one phase, where
# benches/against_revision.sh's whole-run times are too coarse.
#
#   benches/phase_pairs.sh OLD_BINARY NEW_BINARY [PAIRS] [PROFILE]
#
# PAIRS defaults to 10, PROFILE to bench-data/synth-1000000-stacks333334.pb.gz (made by
# benches/inflate_ratio.sh). Build the old binary with benches/against_revision.sh REV or
# `git worktree add`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=${1:?usage: benches/phase_pairs.sh OLD_BINARY NEW_BINARY [PAIRS] [PROFILE]}
new=${2:?usage: benches/phase_pairs.sh OLD_BINARY NEW_BINARY [PAIRS] [PROFILE]}
pairs=${3:-10}
profile=${4:-bench-data/synth-1000000-stacks333334.pb.gz}
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for _ in $(seq "$pairs"); do
    for bin in "$old" "$new"; do
        start=$(date +%s.%N)
        aggregate=$(FIREWATCH_TIMINGS=1 "$bin" analyze "$profile" 2>&1 >/dev/null \
            | awk '$2 == "aggregate:" {print $3}')
        end=$(date +%s.%N)
        echo "$bin $start $end ${aggregate:?no aggregate timing from $bin}" >>"$runs"
    done
done
python3 - "$runs" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    b, s, e, a = line.split()
    runs[b].append((float(e) - float(s), float(a)))
print("| binary | runs | wall median s | wall min s | aggregate median s | aggregate min s |")
print("|---|---:|---:|---:|---:|---:|")
for b, v in runs.items():
    w, a = [x[0] for x in v], [x[1] for x in v]
    print(f"| `{b}` | {len(v)} | {statistics.median(w):.3f} | {min(w):.3f} | "
          f"{statistics.median(a):.3f} | {min(a):.3f} |")
PY
