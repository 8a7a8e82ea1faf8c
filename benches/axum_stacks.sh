#!/usr/bin/env bash
# What the agent's CPU stacks look like in a real async service built the
# default way: benches/axum-service (tokio multi-thread + axum, the sampling
# allocator, the agent) is built with Cargo's defaults (`cargo build
# --release`, no frame pointers) and with `-C force-frame-pointers=yes`, each
# in a target directory of its own; each build is started on 127.0.0.1, driven
# by `wrk` for a bounded time, and profiled by the agent at 100 Hz for
# PROFILE_SECONDS during the load. The service computes the figures from the
# profile it wrote (benches/axum-service/src/figures.rs):
#
#   worker loop %   of samples on tokio worker threads, the share with a frame
#                   named tokio::runtime::scheduler::multi_thread::worker::run
#                   (target: >= 90%)
#   libc alone %    of all samples, the share that is one location in libc's
#                   mapping and nothing else (target: < 1%)
#   median depth    locations per stack (sample-weighted median)
#   truncated %     samples under [firewatch: truncated stack]
#
# Usage: bash benches/axum_stacks.sh
# Environment: PORT (18089), WORKERS (2, tokio worker threads), WRK_THREADS
# (2), WRK_CONNECTIONS (32), LOAD_SECONDS (15), WARMUP_SECONDS (3),
# PROFILE_SECONDS (10), BUILDS ("default frame-pointers"), SKIP_BUILD=1 (reuse
# the binaries).
# Outputs: target/axum-stacks/<build>/ (profile .pb.gz, service log, full
# report with the most common outermost frames of stacks that miss the worker
# loop, wrk output) and the Markdown table on stdout.
# The service listens on 127.0.0.1 only; the load is LOAD_SECONDS long.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MANIFEST="$ROOT/benches/axum-service/Cargo.toml"
OUT="$ROOT/target/axum-stacks"
PORT=${PORT:-18089}
WORKERS=${WORKERS:-2}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
LOAD_SECONDS=${LOAD_SECONDS:-15}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
BUILDS=${BUILDS:-"default frame-pointers"}

if ((WARMUP_SECONDS + PROFILE_SECONDS + 1 > LOAD_SECONDS)); then
    echo "LOAD_SECONDS must cover WARMUP_SECONDS + PROFILE_SECONDS + 1" >&2
    exit 2
fi

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y wrk >&2
    else
        echo "wrk is missing: apt-get install -y wrk" >&2
        exit 1
    fi
fi
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

rustflags_of() {
    case "$1" in
    default) echo "" ;;
    frame-pointers) echo "-C force-frame-pointers=yes" ;;
    *) echo "unknown build $1" >&2; exit 2 ;;
    esac
}

binary_of() { echo "$ROOT/target/axum-stacks-$1/release/axum-service"; }

# Builds one at a time, before any load runs.
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    for build in $BUILDS; do
        echo "== building $build (RUSTFLAGS='$(rustflags_of "$build")')" >&2
        env -u CARGO_ENCODED_RUSTFLAGS \
            RUSTFLAGS="$(rustflags_of "$build")" \
            CARGO_TARGET_DIR="$ROOT/target/axum-stacks-$build" \
            cargo build --release --locked --manifest-path "$MANIFEST" >&2
    done
fi

mkdir -p "$OUT"
cat >"$OUT/mix.lua" <<'EOF'
-- wrk: the four work endpoints in turn.
local paths = { "/orders?n=40", "/ingest", "/hash?n=2000", "/alloc?n=2000" }
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
EOF

SERVICE_PID=""
WRK_PID=""
cleanup() {
    [ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null || true
    [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null || true
}
trap cleanup EXIT

declare -A FIG RPS
for build in $BUILDS; do
    dir="$OUT/$build"
    rm -rf "$dir"
    mkdir -p "$dir/profiles"
    echo "== running $build" >&2
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
        echo "something already listens on 127.0.0.1:$PORT; set PORT" >&2
        exit 1
    fi
    "$(binary_of "$build")" --port "$PORT" --workers "$WORKERS" --out "$dir/profiles" \
        >"$dir/service.log" 2>&1 &
    SERVICE_PID=$!
    up=0
    for _ in $(seq 1 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$PORT/hash?n=10"; then up=1; break; fi
        sleep 0.1
    done
    if [ "$up" != 1 ] || ! kill -0 "$SERVICE_PID" 2>/dev/null; then
        echo "$build: the service did not come up:" >&2
        cat "$dir/service.log" >&2
        exit 1
    fi

    wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${LOAD_SECONDS}s" --latency \
        -s "$OUT/mix.lua" "http://127.0.0.1:$PORT" >"$dir/wrk.txt" 2>&1 &
    WRK_PID=$!
    sleep "$WARMUP_SECONDS"
    # Blocks for PROFILE_SECONDS plus symbolization; returns the report.
    curl -sS --max-time $((PROFILE_SECONDS + 120)) \
        "http://127.0.0.1:$PORT/profile?seconds=$PROFILE_SECONDS" >"$dir/report.txt"
    wait "$WRK_PID" || true
    WRK_PID=""
    kill "$SERVICE_PID"
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=""

    line=$(grep '^FIGURES ' "$dir/report.txt" || true)
    if [ -z "$line" ]; then
        echo "$build: no figures; report:" >&2
        cat "$dir/report.txt" "$dir/service.log" >&2
        exit 1
    fi
    FIG[$build]=$line
    RPS[$build]=$(awk '/^Requests\/sec:/ { print $2 }' "$dir/wrk.txt")
    echo "--- $build: $dir/report.txt" >&2
    cat "$dir/report.txt" >&2
done

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

echo
echo "| build | worker samples | with \`worker::run\` (≥ 90%) | libc leaf alone (< 1%) | median depth (all / workers) | truncated | wrk req/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for build in $BUILDS; do
    l=${FIG[$build]}
    loop=$(field worker_loop_pct "$l")
    libc=$(field libc_alone_pct "$l")
    ok_loop=$(awk -v v="$loop" 'BEGIN { print (v >= 90 ? "pass" : "FAIL") }')
    ok_libc=$(awk -v v="$libc" 'BEGIN { print (v < 1 ? "pass" : "FAIL") }')
    case "$build" in
    default) name='`cargo build --release` (no frame pointers)' ;;
    frame-pointers) name='`-C force-frame-pointers=yes`' ;;
    *) name=$build ;;
    esac
    echo "| $name | $(field worker_samples "$l") of $(field total_samples "$l") | $loop% ($ok_loop) | $libc% ($ok_libc) | $(field median_depth "$l") / $(field median_worker_depth "$l") | $(field truncated_pct "$l")% | ${RPS[$build]} |"
done
