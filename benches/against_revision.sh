#!/usr/bin/env bash
# `firewatch analyze` of this working tree against the same command built from another revision,
# in one run on one machine: wall time (hyperfine, runs interleaved per input) and peak RSS
# (GNU time, median of the runs). For "unchanged or better" claims after a refactor.
#
#   benches/against_revision.sh REV        # e.g. d86a650; prints a Markdown table on stdout
#
# Inputs as benches/compare.sh: google/pprof's large.cpu (from $FIREWATCH_CONFORMANCE_DIR; skipped
# when unset) and the synthetic 1M-sample profile, gzip and raw, in bench-data/ (generated when
# missing). Environment: RUNS (10), SAMPLES (1000000), SEED (1). Needs hyperfine and GNU time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
rev=${1:?usage: benches/against_revision.sh REV}
RUNS=${RUNS:-10}
SAMPLES=${SAMPLES:-1000000}
SEED=${SEED:-1}
log() { printf '%s\n' "against_revision.sh: $*" >&2; }
command -v hyperfine >/dev/null || { log "needs hyperfine (apt-get install hyperfine)"; exit 1; }
/usr/bin/time -f '%M' true >/dev/null 2>&1 || { log "needs GNU time at /usr/bin/time"; exit 1; }

# The revision, built in its own checkout and target directory (kept between runs).
base_src="$root/target/against-revision/src-$rev"
if [ ! -d "$base_src" ]; then
    git worktree add --detach "$base_src" "$rev" >&2
fi
log "building $rev"
CARGO_TARGET_DIR="$root/target/against-revision/target" \
    cargo build --release -p firewatch-analyzer --manifest-path "$base_src/Cargo.toml" >&2
base="$root/target/against-revision/target/release/firewatch"
log "building the working tree"
cargo build --release -p firewatch-analyzer >&2
target="${CARGO_TARGET_DIR:-$root/target}"
new="$target/release/firewatch"

mkdir -p bench-data
gz="bench-data/synth-$SAMPLES-seed$SEED.pb.gz"
raw="bench-data/synth-$SAMPLES-seed$SEED.pb"
if [ ! -f "$gz" ] || [ ! -f "$raw" ]; then
    cargo build --release --example synth-profile >&2
    "$target/release/examples/synth-profile" "$gz" --samples "$SAMPLES" --seed "$SEED" >&2
    "$target/release/examples/synth-profile" "$raw" --samples "$SAMPLES" --seed "$SEED" >&2
fi
inputs=("$gz" "$raw")
if [ -n "${FIREWATCH_CONFORMANCE_DIR:-}" ] && [ -f "$FIREWATCH_CONFORMANCE_DIR/google-pprof/large.cpu" ]; then
    inputs=("$FIREWATCH_CONFORMANCE_DIR/google-pprof/large.cpu" "${inputs[@]}")
else
    log "FIREWATCH_CONFORMANCE_DIR unset or without google-pprof/large.cpu: large.cpu skipped"
fi

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
peak_kib() { for _ in $(seq 5); do /usr/bin/time -f '%M' "$1" analyze "$2" 2>&1 >/dev/null | tail -1; done | median; }

echo "| input | $rev median wall ms (min–max) | working tree median wall ms (min–max) | tree ÷ $rev | $rev CPU ms | tree CPU ms | $rev peak RSS MiB | tree peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for input in "${inputs[@]}"; do
    json=$(mktemp)
    hyperfine -N -w 2 -r "$RUNS" --export-json "$json" \
        "$base analyze $input" "$new analyze $input" >&2
    # Wall time, then CPU time (user + system, mean): the latter moves less on a busy machine.
    read -r b_mean b_min b_max n_mean n_min n_max b_cpu n_cpu < <(python3 - "$json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
walls = [f"{x * 1000:.0f}" for res in r for x in (res["median"], res["min"], res["max"])]
cpus = [f"{(res['user'] + res['system']) * 1000:.0f}" for res in r]
print(*walls, *cpus)
EOF
)
    rm -f "$json"
    b_rss=$(peak_kib "$base" "$input")
    n_rss=$(peak_kib "$new" "$input")
    ratio=$(awk -v a="$n_mean" -v b="$b_mean" 'BEGIN {printf "%.2f", a / b}')
    printf '| %s | %s (%s–%s) | %s (%s–%s) | %s | %s | %s | %.0f | %.0f |\n' "$(basename "$input")" \
        "$b_mean" "$b_min" "$b_max" "$n_mean" "$n_min" "$n_max" "$ratio" "$b_cpu" "$n_cpu" \
        "$(awk -v k="$b_rss" 'BEGIN {print k / 1024}')" "$(awk -v k="$n_rss" 'BEGIN {print k / 1024}')"
done
