#!/usr/bin/env bash
# The memory one capture adds to a service, measured from outside: the
# agent's example service (crates/agent/examples/service.rs, release build,
# `debug = 1`, and a stripped copy of it) asked for one heap snapshot or one
# 1 s CPU profile with SIGUSR1 (`--usr1 heap|cpu`), under each
# FIREWATCH_CAPTURE_MEMORY_LIMIT in LIMITS; optionally the axum service of
# benches/axum-service under wrk load.
#
# Peak increase = VmHWM - VmRSS, VmHWM reset with `echo 5 >
# /proc/<pid>/clear_refs` just before the request and read when the service
# says the file is written. The example's service leaks 16 MiB in
# `remember_session`, then stops (waited for), so its own memory stands still;
# each run is a fresh process, so every capture is the process's first.
# Also printed: the time the agent took to symbolize and write the file (its
# log line; after sampling, for a CPU profile) and its own in-process figure
# (RSS read at points, "highest seen").
#
# Usage: bash benches/capture_memory.sh
# Environment: RUNS (3), LIMITS ("8M off"; "default" = unset; "symbolize-off" =
# FIREWATCH_SYMBOLIZE=off with the default limit), BUILDS
# ("release stripped"), AXUM_BINARY (an axum-service binary: defaults to the
# one benches/axum_stacks.sh builds, skipped when absent), PORT (18090),
# SKIP_BUILD=1.
# Outputs: $CARGO_TARGET_DIR/capture-memory/ (logs; target/ by default) and a Markdown table on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TARGET/capture-memory"
RUNS=${RUNS:-3}
LIMITS=${LIMITS:-"8M off"}
BUILDS=${BUILDS:-"release stripped"}
PORT=${PORT:-18090}
AXUM_BINARY=${AXUM_BINARY:-$ROOT/target/axum-stacks-default/release/axum-service}

mkdir -p "$OUT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p firewatch-agent --example service >&2
fi
cp "$TARGET/release/examples/service" "$OUT/service-release"
strip --strip-all -o "$OUT/service-stripped" "$OUT/service-release"

PID=""
LOAD_PID=""
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
}
trap cleanup EXIT

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# wait_line FILE TEXT: until FILE has a line containing TEXT (the service
# dies: fail).
wait_line() {
    until [ -f "$1" ] && grep -qF -- "$2" "$1"; do
        if [ -n "$PID" ] && ! kill -0 "$PID" 2>/dev/null; then
            echo "the service exited; log:" >&2
            cat "$1" >&2
            exit 1
        fi
        sleep 0.01
    done
}

# One capture; prints "peak_kib before_kib ms inprocess_mib".
# measure LOG TRIGGER...: TRIGGER asks for the capture; LOG gets the agent's
# words: its log line ("profile built in N ms, written in M ms; RSS ...
# highest seen X MiB (+Y MiB)", the example's stderr) or, for the axum
# service (no logger; TRIGGER a blocking curl), the response, which carries
# the profile's capture-memory comment ("highest seen X MiB (+Y MiB over
# the start) ... took N ms"). The time is building the profile,
# symbolization included.
measure() {
    local log=$1
    shift
    local before hwm
    before=$(status_kib "$PID" VmRSS)
    echo 5 >"/proc/$PID/clear_refs"
    "$@"
    wait_line "$log" "highest seen"
    hwm=$(status_kib "$PID" VmHWM)
    local line ms inside
    line=$(grep -F "highest seen" "$log" | tail -1)
    ms=$(sed -n -e 's/.*profile built in \([0-9]*\) ms.*/\1/p' \
        -e 's/.*symbolization included, took \([0-9]*\) ms.*/\1/p' <<<"$line")
    inside=$(sed -n 's/.*highest seen [0-9.]* MiB (+\([0-9.]*\) MiB.*/\1/p' <<<"$line")
    echo "$((hwm - before)) $before $ms $inside"
}

# median of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

ROWS=()
# row NAME LIMIT KIND FILE: a table row from FILE's lines of `measure` output.
row() {
    local peaks befores
    peaks=$(awk '{ printf "%.1f\n", $1 / 1024 }' "$4")
    befores=$(awk '{ printf "%.1f\n", $2 / 1024 }' "$4")
    ROWS+=("| $1 | $2 | $3 | $(median <<<"$befores") MiB | **+$(median <<<"$peaks") MiB** ($(range <<<"$peaks")) | $(awk '{ print $4 }' "$4" | median) MiB | $(awk '{ print $3 }' "$4" | median) ms ($(awk '{ print $3 }' "$4" | range)) |")
}

for build in $BUILDS; do
    for limit in $LIMITS; do
        for kind in heap cpu; do
            results="$OUT/$build-$limit-$kind.txt"
            : >"$results"
            for run in $(seq 1 "$RUNS"); do
                dir="$OUT/$build-$limit-$kind-$run"
                rm -rf "$dir"
                mkdir -p "$dir"
                env_limit=()
                case "$limit" in default) ;; symbolize-off) env_limit=(FIREWATCH_SYMBOLIZE=off) ;; *) env_limit=(FIREWATCH_CAPTURE_MEMORY_LIMIT="$limit") ;; esac
                env "${env_limit[@]}" FIREWATCH_CPU_THRESHOLD_PERCENT=off \
                    "$OUT/service-$build" --dir "$dir/out" --threads 1 --seconds 600 \
                    --leak-kib-per-sec 8192 --leak-stop-mib 16 --usr1 "$kind" \
                    >"$dir/stdout" 2>"$dir/log" &
                PID=$!
                wait_line "$dir/log" "leak stopped at"
                measure "$dir/log" kill -USR1 "$PID" >>"$results"
                kill "$PID"
                wait "$PID" 2>/dev/null || true
                PID=""
            done
            row "example, $build" "$limit" "$kind" "$results"
            echo "== example $build, limit $limit, $kind: $(tr '\n' ';' <"$results")" >&2
        done
    done
done

if [ -x "$AXUM_BINARY" ] && command -v wrk >/dev/null && command -v curl >/dev/null; then
    cat >"$OUT/mix.lua" <<'EOF'
local paths = { "/orders?n=40", "/ingest", "/hash?n=2000", "/alloc?n=2000" }
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
EOF
    for limit in $LIMITS; do
        for kind in heap cpu; do
            results="$OUT/axum-$limit-$kind.txt"
            : >"$results"
            for run in $(seq 1 "$RUNS"); do
                dir="$OUT/axum-$limit-$kind-$run"
                rm -rf "$dir"
                mkdir -p "$dir"
                env_limit=()
                case "$limit" in default) ;; symbolize-off) env_limit=(FIREWATCH_SYMBOLIZE=off) ;; *) env_limit=(FIREWATCH_CAPTURE_MEMORY_LIMIT="$limit") ;; esac
                env "${env_limit[@]}" "$AXUM_BINARY" --port "$PORT" --workers 2 \
                    --out "$dir/profiles" >"$dir/log" 2>&1 &
                PID=$!
                until curl -sf -o /dev/null "http://127.0.0.1:$PORT/hash?n=10"; do
                    kill -0 "$PID" || { cat "$dir/log" >&2; exit 1; }
                    sleep 0.1
                done
                wrk -t2 -c32 -d30s -s "$OUT/mix.lua" "http://127.0.0.1:$PORT" \
                    >"$dir/wrk.txt" 2>&1 &
                LOAD_PID=$!
                sleep 5 # warm-up under load: the service's RSS levels off
                if [ "$kind" = heap ]; then
                    path="/heap"
                else
                    path="/profile?seconds=3"
                fi
                measure "$dir/response.txt" curl -sf -o "$dir/response.txt" \
                    "http://127.0.0.1:$PORT$path" >>"$results"
                kill "$LOAD_PID" 2>/dev/null || true
                wait "$LOAD_PID" 2>/dev/null || true
                LOAD_PID=""
                kill "$PID"
                wait "$PID" 2>/dev/null || true
                PID=""
            done
            row "axum, under wrk load" "$limit" "$kind" "$results"
            echo "== axum, limit $limit, $kind: $(tr '\n' ';' <"$results")" >&2
        done
    done
else
    echo "(no axum-service binary at $AXUM_BINARY, or no wrk/curl: axum rows skipped)" >&2
fi

echo
echo "| service | capture_memory_limit | capture | RSS before | peak RSS increase, median (min–max) | agent's own figure (highest seen) | building the profile, median (min–max) |"
echo "|---|---|---|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
