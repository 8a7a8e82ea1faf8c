#!/usr/bin/env bash
# How close `firewatch analyze` (text report) comes to the cost of merely inflating the same
# file: `zcat FILE > /dev/null` and `firewatch analyze FILE > /dev/null` timed with hyperfine in
# one run, on a 1M-sample synthetic profile with ~312k distinct stacks 8–64 frames deep
# (`synth-profile --stacks 333334`: samples drawn from 333,334 generated ones), 48 MB gzip,
# 130 MB raw. Prints both means and their ratio (the target is ≤ 1.5), and the ratio of their
# CPU times (user + system: the wall-time ratio on a single core).
#
#   benches/inflate_ratio.sh            # RUNS (10); honours CARGO_TARGET_DIR
#   ONE_CORE=1 benches/inflate_ratio.sh # both pinned to CPU 0 (taskset): the worst case of a
#                                       # machine whose other cores are taken
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-10}
target="${CARGO_TARGET_DIR:-$PWD/target}"
command -v hyperfine >/dev/null || { echo "inflate_ratio.sh: needs hyperfine" >&2; exit 1; }
cargo build --release -p firewatch-analyzer >&2
input=bench-data/synth-1000000-stacks333334.pb.gz
if [ ! -s "$input" ]; then
    cargo build --release --example synth-profile >&2
    mkdir -p bench-data
    "$target/release/examples/synth-profile" "$input.tmp.gz" --stacks 333334 >&2
    mv "$input.tmp.gz" "$input"
fi
json=$(mktemp)
trap 'rm -f "$json"' EXIT
pin=""
if [ "${ONE_CORE:-0}" = 1 ]; then pin="taskset -c 0 "; fi
hyperfine -N -w 2 -r "$RUNS" --export-json "$json" \
    "${pin}zcat $input" "${pin}$target/release/firewatch analyze $input" >&2
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
z, f = r[0], r[1]
print(f"| command | mean s | user s | system s |\n|---|---:|---:|---:|")
for x, name in ((z, "zcat FILE > /dev/null"), (f, "firewatch analyze FILE")):
    print(f"| `{name}` | {x['mean']:.3f} ± {x['stddev']:.3f} | {x['user']:.3f} | {x['system']:.3f} |")
print(f"\nfirewatch ÷ zcat: **{f['mean'] / z['mean']:.2f}**")
# CPU time (user + system): the ratio if the analyzer had one core, as on
# a machine whose other cores are busy.
cpu = lambda x: x['user'] + x['system']
print(f"CPU time, firewatch ÷ zcat: {cpu(f) / cpu(z):.2f}")
PY
