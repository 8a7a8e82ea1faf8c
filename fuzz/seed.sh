#!/usr/bin/env bash
# Seeds the fuzz corpora, fuzz/corpus/<target>/, from the fixtures of the
# format each target reads:
#
#   decode, analyze  every pprof fixture: the repository's own
#                    (fixtures/*.pb.gz) and the third-party profiles in the
#                    directory FIREWATCH_CONFORMANCE_DIR names (google/pprof's
#                    test data; copied at run time only: those files are not
#                    part of this repository, and fuzz/.gitignore keeps
#                    corpus/ out of it). Without that variable the
#                    third-party seeds are skipped, with a message. Each gzip
#                    fixture is added twice: as it is, and gunzipped (raw
#                    protobuf), because the gzip wrapping hides the protobuf
#                    structure from the fuzzer's mutations.
#   heapsnapshot     V8 heap snapshots written here by the repository's
#                    generators (fixtures/node/): a live one from
#                    snapshot-workload.js cut to its first nodes
#                    (shrink-snapshot.js: a live snapshot is 4 MB, over
#                    -max_len), small graphs from snapshot-large.js, and the
#                    hand-made graph of crates/analyzer/tests/node_heapsnapshot.rs
#                    (a cycle, a weak edge, a shortcut, an orphan, an
#                    unreachable cycle); one of them also gzipped.
#   node             fixtures/node/*.cpuprofile and *.heapprofile, and small
#                    profiles from large-cpuprofile.js and large-heapprofile.js.
#
# The generated seeds need `node`; without it they are skipped, with a
# message (the hand-made snapshot and the kept Node fixtures remain).
#
# Usage: fuzz/seed.sh [target...]   (default: every target in fuzz_targets/)
# Environment:
#   FIREWATCH_CONFORMANCE_DIR  the third-party profiles (as for the tests)
set -euo pipefail

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz_dir")"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz_dir"/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

# Whether a target is seeded in this run.
wants() {
    local t
    for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}

# The third-party profiles: only where FIREWATCH_CONFORMANCE_DIR says. A
# setting that names no directory is an error, not a reason to skip.
shared=""
if [ -n "${FIREWATCH_CONFORMANCE_DIR:-}" ]; then
    if [ ! -d "$FIREWATCH_CONFORMANCE_DIR" ]; then
        echo "seed.sh: FIREWATCH_CONFORMANCE_DIR=$FIREWATCH_CONFORMANCE_DIR is not a directory" >&2
        exit 2
    fi
    shared="$(cd "$FIREWATCH_CONFORMANCE_DIR" && pwd)"
fi

# name <- source path, for every fixture.
declare -a names=() paths=()
add() { names+=("$1"); paths+=("$2"); }
for f in "$root"/fixtures/*.pb.gz; do
    [ -f "$f" ] && add "repo-$(basename "$f")" "$f"
done
if [ -n "$shared" ]; then
    while IFS= read -r -d '' f; do
        rel="${f#"$shared"/}"
        case "$(basename "$f")" in LICENSE* | README* | *.md) continue ;; esac
        add "shared-${rel//\//_}" "$f"
    done < <(find "$shared" -type f -print0 | sort -z)
elif wants decode || wants analyze; then
    echo "seed.sh: FIREWATCH_CONFORMANCE_DIR is not set: skipping the third-party seeds (repository fixtures only)" >&2
fi

# Heap snapshot and Node profile seeds, generated once per run into a
# temporary directory.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
declare -a snapshot_seeds=() node_seeds=()
have_node=false
if command -v node >/dev/null 2>&1; then have_node=true; fi
if wants heapsnapshot; then
    # The hand-made graph of tests/node_heapsnapshot.rs: node fields type,
    # name, id, self_size, edge_count; edges type, name_or_index, to_node.
    cat >"$tmp/handmade.heapsnapshot" <<'JSON'
{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count"],
"node_types":[["hidden","object","synthetic"],"string","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["element","property","weak","shortcut"],"string_or_number","node"]}},
"nodes":[2,0,1,0,2, 1,1,3,10,3, 1,2,5,20,1, 1,3,7,30,1, 1,4,9,40,1, 1,5,11,50,0, 1,6,13,60,0, 1,7,15,70,1, 1,8,17,80,1],
"edges":[0,0,5, 3,9,10, 1,9,10, 1,9,15, 2,9,30, 1,9,20, 1,9,20, 1,9,5, 1,9,40, 1,9,35],
"strings":["(root)","A","B","C","D","E","W","F","G","x"]}
JSON
    snapshot_seeds+=("$tmp/handmade.heapsnapshot")
    if $have_node; then
        node "$root/fixtures/node/snapshot-workload.js" "$tmp/live" workload
        for n in 400 1500; do
            node "$fuzz_dir/shrink-snapshot.js" "$tmp/live/workload.heapsnapshot" "$tmp/live-$n.heapsnapshot" "$n"
            snapshot_seeds+=("$tmp/live-$n.heapsnapshot")
        done
        gzip -c "$tmp/live-400.heapsnapshot" >"$tmp/live-400.heapsnapshot.gz"
        snapshot_seeds+=("$tmp/live-400.heapsnapshot.gz")
        for n in 20 300 1000; do
            node "$root/fixtures/node/snapshot-large.js" "$tmp/graph-$n.heapsnapshot" "$n" 2>/dev/null
            snapshot_seeds+=("$tmp/graph-$n.heapsnapshot")
        done
    else
        echo "seed.sh: node is not on PATH: skipping the generated heap snapshot seeds (hand-made one only)" >&2
    fi
fi
if wants node; then
    for f in "$root"/fixtures/node/*.cpuprofile "$root"/fixtures/node/*.heapprofile; do
        [ -f "$f" ] && node_seeds+=("$f")
    done
    if $have_node; then
        node "$root/fixtures/node/large-cpuprofile.js" 300 60 >"$tmp/generated.cpuprofile"
        node "$root/fixtures/node/large-heapprofile.js" 300 30 100 >"$tmp/generated.heapprofile"
        node_seeds+=("$tmp/generated.cpuprofile" "$tmp/generated.heapprofile")
    else
        echo "seed.sh: node is not on PATH: skipping the generated Node profile seeds" >&2
    fi
fi

for target in "${targets[@]}"; do
    dir="$fuzz_dir/corpus/$target"
    mkdir -p "$dir"
    count=0
    case "$target" in
        heapsnapshot | node)
            if [ "$target" = heapsnapshot ]; then
                seeds=("${snapshot_seeds[@]}")
            else
                seeds=("${node_seeds[@]}")
            fi
            for path in "${seeds[@]}"; do
                cp -f "$path" "$dir/seed-$(basename "$path")"
                count=$((count + 1))
            done
            ;;
        *)
            for i in "${!names[@]}"; do
                name="${names[$i]}" path="${paths[$i]}"
                cp -f "$path" "$dir/seed-$name"
                count=$((count + 1))
                # gzip magic 1f 8b: also add the raw protobuf inside.
                if [ "$(head -c 2 "$path" | od -An -tx1 | tr -d ' \n')" = "1f8b" ]; then
                    if gzip -dc <"$path" >"$dir/seed-$name.raw" 2>/dev/null; then
                        count=$((count + 1))
                    else
                        rm -f "$dir/seed-$name.raw"
                    fi
                fi
            done
            ;;
    esac
    echo "seed.sh: $target: $count seed files ($(ls "$dir" | wc -l) files in corpus/$target)"
done
