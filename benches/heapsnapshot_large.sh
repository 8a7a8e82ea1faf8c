#!/usr/bin/env bash
# Wall time, CPU time, peak RSS and phase timings of firewatch's heap snapshot analysis on a
# generated ~2 GB snapshot: the Node.js issue's acceptance (a 20 M+ node snapshot analysed in
# at most 60 s with at most 8 GiB on 2 cores).
#
#   benches/heapsnapshot_large.sh      # from anywhere; prints a Markdown report on stdout
#
# Input: bench-data/large-NODES.heapsnapshot (gitignored), written when missing by
# fixtures/node/snapshot-large.js NODES: a 4-ary tree of objects, each with a link to a
# pseudo-random one and every tenth a weak edge; about 53 bytes and 2.1 edges per node, so
# 40 M nodes make about 2.1 GB (the generator streams: its memory does not grow with NODES).
#
# - firewatch: `firewatch analyze --top 20 FILE` on the plain file (memory-mapped, as the
#   binary does by default; the mapped pages count in the peak RSS), with FIREWATCH_TIMINGS=1
#   for the phases; all cores (the default).
# - wall, CPU (user + system) and peak RSS from GNU time, per run; phases: median seconds
#   over the runs, and the largest peak RSS reported at the end of each phase.
#
# Environment: NODES (40000000), REPEAT (1). Needs node, GNU time at /usr/bin/time.
# The machine's load average is printed before and after: other work on the machine slows
# wall time, not CPU time much.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
NODES=${NODES:-40000000}
REPEAT=${REPEAT:-1}
TIME=/usr/bin/time
log() { printf '%s\n' "heapsnapshot_large.sh: $*" >&2; }

"$TIME" -f '%e %M' true >/dev/null 2>&1 || { log "needs GNU time at $TIME"; exit 1; }
command -v node >/dev/null || { log "needs node"; exit 1; }
log "building firewatch (release)"
cargo build --release -p firewatch-analyzer --bin firewatch >&2
fw="${CARGO_TARGET_DIR:-$root/target}/release/firewatch"

mkdir -p bench-data
snap="bench-data/large-$NODES.heapsnapshot"
if [ ! -s "$snap" ]; then
    log "writing $snap"
    "$TIME" -f 'heapsnapshot_large.sh: generated in %e s, node peak RSS %M kB' \
        node fixtures/node/snapshot-large.js "$snap.tmp" "$NODES" >&2
    mv "$snap.tmp" "$snap"
fi
bytes=$(wc -c < "$snap")

# median of a list of numbers
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
runs=() phases=$(mktemp) report=$(mktemp)
trap 'rm -f "$phases" "$report"' EXIT
for i in $(seq "$REPEAT"); do
    log "firewatch run $i of $REPEAT"
    if ! err=$(FIREWATCH_TIMINGS=1 "$TIME" -f 'time %e %M %U %S' "$fw" analyze --top 20 "$snap" 2>&1 >"$report"); then
        log "firewatch failed: $err"
        exit 1
    fi
    printf '%s\n' "$err" | grep '^firewatch: .*: [0-9.]* s (RSS' >>"$phases" || true
    read -r _ wall rss user sys <<<"$(printf '%s\n' "$err" | grep '^time ' | tail -1)"
    runs+=("$wall $rss $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# "Nodes: N, edges: M, total size: …" heads the report.
read -r nodes edges < <(sed -n 's/^Nodes: \([0-9]*\), edges: \([0-9]*\),.*/\1 \2/p' "$report")

cat <<EOF
Input: \`$snap\`, $bytes bytes, $nodes nodes, $edges edges (\`fixtures/node/snapshot-large.js $NODES\`);
$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $load_before before and $load_after after;
\`firewatch analyze --top 20\`, release build.

| run | wall s | CPU s | peak RSS MiB |
|---|---:|---:|---:|
EOF
walls=()
for i in "${!runs[@]}"; do
    read -r wall rss cpu <<<"${runs[$i]}"
    walls+=("$wall")
    printf '| %d | %s | %s | %d |\n' "$((i + 1))" "$wall" "$cpu" "$((rss / 1024))"
done
max_rss=$(for r in "${runs[@]}"; do echo "$r"; done | awk '$2 > m {m = $2} END {print m}')
med_wall=$(printf '%s\n' "${walls[@]}" | median)

echo
echo '| phase (FIREWATCH_TIMINGS) | s (median) | peak RSS at its end MiB |'
echo '|---|---:|---:|'
# "firewatch: PHASE: S s (RSS R kB, peak P kB)", in the order the phases ran.
sed 's/^firewatch: \(.*\): \([0-9.]*\) s (RSS [0-9]* kB, peak \([0-9]*\) kB).*/\1\t\2\t\3/' "$phases" |
    awk -F'\t' '!($1 in n) {order[++k] = $1} {n[$1]++; s[$1, n[$1]] = $2; if ($3 > p[$1]) p[$1] = $3}
        END {
            for (i = 1; i <= k; i++) {
                ph = order[i]; m = n[ph]
                for (a = 1; a <= m; a++) v[a] = s[ph, a]
                for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (v[b] < v[a]) {t = v[a]; v[a] = v[b]; v[b] = t}
                printf "| %s | %s | %d |\n", ph, v[int((m + 1) / 2)], p[ph] / 1024
            }
        }'
echo
awk -v w="$med_wall" -v r="$max_rss" 'BEGIN {
    verdict = (w <= 60 && r <= 8 * 1024 * 1024) ? "within" : "outside"
    printf "- Median wall %.1f s, largest peak RSS %.2f GiB: %s the acceptance (at most 60 s and 8 GiB).\n",
        w, r / 1024 / 1024, verdict
}'
