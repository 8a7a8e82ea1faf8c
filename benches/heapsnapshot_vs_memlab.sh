#!/usr/bin/env bash
# Side-by-side wall time, CPU time and peak RSS of firewatch's heap snapshot analysis and memlab's
# full heap load, on the same snapshot, same machine, same run; plus firewatch's parsing
# with 1 and 2 threads.
#
#   benches/heapsnapshot_vs_memlab.sh      # from anywhere; prints a Markdown report on stdout
#
# Input: a snapshot of a Node process holding OBJECTS objects in a Map
# (fixtures/node/snapshot-workload.js map OBJECTS), written into bench-data/ (gitignored)
# when missing: 257 MB and 3.4 M nodes for 200,000 objects with Node 20.
#
# - memlab: @memlab/core as pinned in crates/analyzer/tests/node/memlab (installed there
#   with `PUPPETEER_SKIP_DOWNLOAD=true npm ci --ignore-scripts`): getSnapshotFromFile and
#   preparePathFinder (shortest paths, dominators, retained sizes), what
#   @memlab/heap-analysis's getFullHeapFromFile does; node --max-old-space-size=8192.
# - firewatch: `firewatch analyze --top 20 FILE`: parse, dominators, retained sizes,
#   summary by constructor, top objects with retaining paths, duplicated strings, largest
#   collections, text report.
# - parse only: the `parse heap snapshots` phase of FIREWATCH_TIMINGS=1, --threads 1 and 2.
#
# Environment: REPEAT (3), OBJECTS (200000). Needs node, GNU time at /usr/bin/time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
REPEAT=${REPEAT:-3}
OBJECTS=${OBJECTS:-200000}
TIME=/usr/bin/time
log() { printf '%s\n' "heapsnapshot_vs_memlab.sh: $*" >&2; }

"$TIME" -f '%e %M' true >/dev/null 2>&1 || { log "needs GNU time at $TIME"; exit 1; }
command -v node >/dev/null || { log "needs node"; exit 1; }
memlab_dir=crates/analyzer/tests/node/memlab
if [ ! -e "$memlab_dir/node_modules/@memlab/core/package.json" ]; then
    log "installing memlab into $memlab_dir"
    (cd "$memlab_dir" && PUPPETEER_SKIP_DOWNLOAD=true npm ci --ignore-scripts --no-audit --no-fund) >&2
fi
log "building firewatch (release)"
cargo build --release -p firewatch-analyzer >&2
fw="${CARGO_TARGET_DIR:-$root/target}/release/firewatch"

mkdir -p bench-data
snap="bench-data/map-$OBJECTS.heapsnapshot"
if [ ! -s "$snap" ]; then
    log "writing $snap"
    node fixtures/node/snapshot-workload.js bench-data/tmp-snapshot map "$OBJECTS" >&2
    mv bench-data/tmp-snapshot/map.heapsnapshot "$snap"
    rmdir bench-data/tmp-snapshot
fi
bytes=$(wc -c < "$snap")
nodes=$(head -c 4096 "$snap" | grep -o '"node_count":[0-9]*' | cut -d: -f2)

# median of a list of numbers
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Runs "$@" REPEAT times; prints "median_wall median_rss_kb median_cpu" (CPU: user +
# system seconds, steadier than wall time when other work shares the machine).
measure() {
    local walls=() rsss=() cpus=() out wall rss user sys
    for _ in $(seq "$REPEAT"); do
        out=$("$TIME" -f '%e %M %U %S' "$@" 2>&1 >/dev/null | tail -1)
        read -r wall rss user sys <<<"$out"
        walls+=("$wall")
        rsss+=("$rss")
        cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
    done
    printf '%s %s %s\n' "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${rsss[@]}" | median)" \
        "$(printf '%s\n' "${cpus[@]}" | median)"
}

# Median parse time (s) with $1 threads.
parse_time() {
    for _ in $(seq "$REPEAT"); do
        FIREWATCH_TIMINGS=1 "$fw" analyze --threads "$1" --top 1 "$snap" 2>&1 >/dev/null |
            sed -n 's/^firewatch: parse heap snapshots: \([0-9.]*\) s.*/\1/p'
    done | median
}

log "memlab ($REPEAT runs)"
read -r ml_wall ml_rss ml_cpu < <(measure node --max-old-space-size=8192 "$memlab_dir/memlab_heap.js" --load-only "$snap")
log "firewatch ($REPEAT runs)"
read -r fw_wall fw_rss fw_cpu < <(measure "$fw" analyze --top 20 "$snap")
log "firewatch --threads 1 ($REPEAT runs)"
read -r fw1_wall fw1_rss fw1_cpu < <(measure "$fw" analyze --threads 1 --top 20 "$snap")
log "parse only, 1 and 2 threads"
p1=$(parse_time 1)
p2=$(parse_time 2)

cat <<EOF
Input: \`$snap\`, $bytes bytes, $nodes nodes ($(node --version)); $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg); median of $REPEAT.

| tool | wall s | CPU s | peak RSS MB |
|---|---:|---:|---:|
| memlab full heap load | $ml_wall | $ml_cpu | $((ml_rss / 1024)) |
| firewatch analyze (2 threads) | $fw_wall | $fw_cpu | $((fw_rss / 1024)) |
| firewatch analyze --threads 1 | $fw1_wall | $fw1_cpu | $((fw1_rss / 1024)) |

- firewatch is $(awk -v a="$ml_wall" -v b="$fw_wall" 'BEGIN {printf "%.1f", a / b}')× faster than memlab and uses $(awk -v a="$fw_rss" -v b="$ml_rss" 'BEGIN {printf "%.2f", a / b}') of its peak memory.
- Parsing: $p1 s with 1 thread, $p2 s with 2: $(awk -v a="$p1" -v b="$p2" 'BEGIN {printf "%.2f", a / b}')×.
EOF
