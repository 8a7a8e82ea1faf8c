#!/usr/bin/env bash
# Side-by-side wall time and peak RSS of `firewatch analyze` and `go tool pprof -top`
# on the same inputs, same machine, same run; plus firewatch at --threads 1 vs 2.
#
#   benches/compare.sh                 # from anywhere; prints a Markdown report on stdout
#
# Inputs: google/pprof's large.cpu (from $FIREWATCH_CONFORMANCE_DIR/google-pprof/; skipped
# with a message when the variable is unset) and a synthetic 1M-sample CPU profile, gzip and
# raw, generated into bench-data/ (gitignored) by `cargo run --release --example synth-profile`
# when missing. Each command runs REPEAT times; the table shows medians.
#
# Environment: REPEAT (3), TIMEOUT seconds per run (1200; go tool pprof on the 1M-sample
# profile takes minutes and GBs), SAMPLES (1000000), SEED (1).
# Needs GNU time at /usr/bin/time (Debian/Ubuntu: apt-get install time) and, for the pprof
# rows, Go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

REPEAT=${REPEAT:-3}
TIMEOUT=${TIMEOUT:-1200}
SAMPLES=${SAMPLES:-1000000}
SEED=${SEED:-1}
TIME=/usr/bin/time

log() { printf '%s\n' "compare.sh: $*" >&2; }

if ! "$TIME" -f '%e %M' true >/dev/null 2>&1; then
    log "needs GNU time at $TIME (Debian/Ubuntu: apt-get install time)"
    exit 1
fi
command -v timeout >/dev/null || { log "needs timeout (coreutils)"; exit 1; }

# --- tools -------------------------------------------------------------------------------
fw="$root/target/release/firewatch"
log "building firewatch (release)"
if ! cargo build --release -p firewatch-analyzer >&2; then
    log "firewatch failed to build: its rows are skipped"
    fw=""
elif ! "$fw" analyze --help 2>&1 | grep -q -- --format; then
    log "$fw has no working 'analyze' subcommand: its rows are skipped"
    fw=""
fi
have_go=1
if ! go version >/dev/null 2>&1; then
    log "go not found: the pprof rows are skipped"
    have_go=""
fi

# --- inputs ------------------------------------------------------------------------------
mkdir -p bench-data
synth_gz="bench-data/synth-$SAMPLES-seed$SEED.pb.gz"
synth_raw="bench-data/synth-$SAMPLES-seed$SEED.pb"
if [ ! -s "$synth_gz" ] || [ ! -s "$synth_raw" ]; then
    log "generating the synthetic profile ($SAMPLES samples, seed $SEED)"
    cargo build --release --example synth-profile >&2
    for out in "$synth_gz" "$synth_raw"; do
        # A temporary name (same suffix) so an interrupted run leaves nothing half-written.
        tmp="bench-data/.tmp$$-$(basename "$out")"
        target/release/examples/synth-profile "$tmp" --samples "$SAMPLES" --seed "$SEED" >&2
        mv "$tmp" "$out"
    done
fi

inputs=()
if [ -z "${FIREWATCH_CONFORMANCE_DIR:-}" ]; then
    log "FIREWATCH_CONFORMANCE_DIR is not set: large.cpu skipped"
elif [ -f "$FIREWATCH_CONFORMANCE_DIR/google-pprof/large.cpu" ]; then
    inputs+=("$FIREWATCH_CONFORMANCE_DIR/google-pprof/large.cpu")
else
    log "no google-pprof/large.cpu in FIREWATCH_CONFORMANCE_DIR=$FIREWATCH_CONFORMANCE_DIR"
    exit 1
fi
inputs+=("$synth_gz" "$synth_raw")

# --- measuring ---------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# measure CMD...: prints "WALL_S RSS_KB" (medians of REPEAT runs), "timeout" or "failed".
measure() {
    local tfile errfile i status walls=() rsss=() wall rss
    tfile=$(mktemp)
    errfile=$(mktemp)
    for ((i = 0; i < REPEAT; i++)); do
        status=0
        "$TIME" -f '%e %M' -o "$tfile" timeout --kill-after=30 "$TIMEOUT" "$@" \
            >/dev/null 2>"$errfile" || status=$?
        if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
            echo timeout
            rm -f "$tfile" "$errfile"
            return
        elif [ "$status" -ne 0 ]; then
            log "failed (exit $status): $*"
            tail -n 5 "$errfile" >&2
            echo failed
            rm -f "$tfile" "$errfile"
            return
        fi
        read -r wall rss < <(tail -n 1 "$tfile")
        walls+=("$wall")
        rsss+=("$rss")
    done
    rm -f "$tfile" "$errfile"
    echo "$(median "${walls[@]}") $(median "${rsss[@]}")"
}

declare -A result
tools=()
[ -n "$fw" ] && tools+=("firewatch" "firewatch --threads 1" "firewatch --threads 2")
[ -n "$have_go" ] && tools+=("go tool pprof")

for input in "${inputs[@]}"; do
    cat "$input" >/dev/null # into the page cache, for every tool alike
    for tool in "${tools[@]}"; do
        case $tool in
            "firewatch") cmd=("$fw" analyze --format text "$input") ;;
            "firewatch --threads "*) cmd=("$fw" analyze --format text --threads "${tool##* }" "$input") ;;
            "go tool pprof") cmd=(go tool pprof -top "$input") ;;
        esac
        log "$(basename "$input"): $tool ($REPEAT runs)"
        result["$input|$tool"]=$(measure "${cmd[@]}")
    done
done

# --- report ------------------------------------------------------------------------------
# wall_of / rss_mb_of KEY: a result's median wall seconds / peak RSS in MB, or what happened
# instead ("timeout", "failed", "skipped").
wall_of() {
    local wall rss
    read -r wall rss <<<"${result["$1"]:-skipped}"
    echo "$wall"
}
rss_mb_of() {
    local wall rss
    read -r wall rss <<<"${result["$1"]:-skipped}"
    if [ -n "$rss" ]; then awk -v kb="$rss" 'BEGIN { printf "%.0f", kb / 1024 }'; else echo "$wall"; fi
}
ratio() { # a / b when both are numbers; a lower bound when a timed out
    awk -v a="$1" -v b="$2" -v limit="$TIMEOUT" 'BEGIN {
        num = "^[0-9.]+$"
        if (a ~ num && b ~ num && b > 0) printf "%.2f", a / b
        else if (a == "timeout" && b ~ num && b > 0) printf "> %.0f", limit / b
        else print "–" }'
}
size_of() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

echo "## firewatch analyze vs go tool pprof"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- hardware: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "- firewatch: $([ -n "$fw" ] && { "$fw" --version 2>/dev/null || echo "built from $(basename "$root")"; } || echo "not built"); $(rustc --version)"
echo "- pprof: $([ -n "$have_go" ] && go version || echo "go not found")"
echo "- method: /usr/bin/time -f '%e %M', median of $REPEAT runs, output to /dev/null, timeout ${TIMEOUT}s;"
echo "  firewatch: \`firewatch analyze --format text FILE\` (default threads = all cores);"
echo "  pprof: \`go tool pprof -top FILE\`"
echo "- inputs:"
for input in "${inputs[@]}"; do
    echo "  - \`${input#"$root"/}\`: $(size_of "$input")"
done
echo
echo "| input | tool | wall s | peak RSS MB | pprof/firewatch time | firewatch/pprof RSS |"
echo "|---|---|---:|---:|---:|---:|"
for input in "${inputs[@]}"; do
    name=$(basename "$input")
    pprof_wall=$(wall_of "$input|go tool pprof")
    pprof_rss=$(rss_mb_of "$input|go tool pprof")
    for tool in "${tools[@]}"; do
        wall=$(wall_of "$input|$tool")
        rss=$(rss_mb_of "$input|$tool")
        if [ "$tool" = "go tool pprof" ]; then
            time_ratio="" rss_ratio=""
        else
            time_ratio=$(ratio "$pprof_wall" "$wall")
            rss_ratio=$(ratio "$rss" "$pprof_rss")
        fi
        echo "| $name | $tool | $wall | $rss | $time_ratio | $rss_ratio |"
    done
done

if [ -n "$fw" ]; then
    echo
    echo "Decode scaling (firewatch, whole run):"
    echo
    echo "| input | --threads 1 s | --threads 2 s | speedup |"
    echo "|---|---:|---:|---:|"
    for input in "${inputs[@]}"; do
        t1=$(wall_of "$input|firewatch --threads 1")
        t2=$(wall_of "$input|firewatch --threads 2")
        echo "| $(basename "$input") | $t1 | $t2 | $(ratio "$t1" "$t2") |"
    done
fi
