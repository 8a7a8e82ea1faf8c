#!/usr/bin/env bash
# Many files, as a fleet writes them: `firewatch analyze DIR` against
# `go tool pprof -top FILE…` on the same 100 and 1,000 profiles (~100 KB gzip each,
# sharing most functions and stacks), same machine, same run: wall time and peak RSS,
# medians of REPEAT runs, as a Markdown table on stdout.
#
#   benches/fleet.sh            # REPEAT (3), FILES (1000), TIMEOUT seconds per run (1800)
#
# The profiles are generated into bench-data/fleet-FILES/ by
# `cargo run --release --example synth-fleet` when missing; the 100-file set is the
# first 100 of them (bench-data/fleet-first-100/, symbolic links).
# Needs GNU time at /usr/bin/time and Go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
REPEAT=${REPEAT:-3}
FILES=${FILES:-1000}
TIMEOUT=${TIMEOUT:-1800}
TIME=/usr/bin/time
log() { printf '%s\n' "fleet.sh: $*" >&2; }

"$TIME" -f '%e %M' true >/dev/null 2>&1 || { log "needs GNU time at $TIME"; exit 1; }
go version >/dev/null 2>&1 || { log "needs Go (go tool pprof)"; exit 1; }
cargo build --release -p firewatch-analyzer >&2
cargo build --release --example synth-fleet >&2
fw="$root/target/release/firewatch"
[ -n "${CARGO_TARGET_DIR:-}" ] && fw="$CARGO_TARGET_DIR/release/firewatch"
gen="$(dirname "$fw")/examples/synth-fleet"

all="bench-data/fleet-$FILES"
if [ "$(find "$all" -name '*.pb.gz' 2>/dev/null | wc -l)" -ne "$FILES" ]; then
    log "generating $FILES profiles into $all"
    rm -rf "$all"
    "$gen" "$all" --files "$FILES"
fi
first="bench-data/fleet-first-100"
rm -rf "$first" && mkdir -p "$first"
for f in $(ls "$all" | head -100); do ln -s "$root/$all/$f" "$first/$f"; done

# median of REPEAT runs of "$@": prints "seconds peak_kib"
measure() {
    local runs=()
    for _ in $(seq "$REPEAT"); do
        runs+=("$(timeout "$TIMEOUT" "$TIME" -f '%e %M' "$@" 2>&1 >/dev/null | tail -1)")
    done
    printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p"
}

echo "| files | tool | wall s | peak RSS MiB | pprof ÷ firewatch time | firewatch ÷ pprof RSS |"
echo "|---:|---|---:|---:|---:|---:|"
for set in "$first" "$all"; do
    n=$(ls "$set" | wc -l)
    files=$(ls -d "$set"/* | sort)
    log "$n files: firewatch"
    read -r fw_s fw_k < <(measure "$fw" analyze --sample-index cpu "$set")
    log "$n files: go tool pprof"
    # shellcheck disable=SC2086 # one argument per file
    read -r go_s go_k < <(measure go tool pprof -top -symbolize=none -sample_index=cpu $files)
    ratio_t=$(awk -v a="$go_s" -v b="$fw_s" 'BEGIN { printf "%.1f", a / b }')
    ratio_m=$(awk -v a="$fw_k" -v b="$go_k" 'BEGIN { printf "%.2f", a / b }')
    mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
    echo "| $n | firewatch | $fw_s | $(mib "$fw_k") | **$ratio_t** | **$ratio_m** |"
    echo "| $n | go tool pprof | $go_s | $(mib "$go_k") | | |"
done
