#!/usr/bin/env bash
# Seeds the fuzz corpora, fuzz/corpus/<target>/, with every profile fixture:
# the repository's own (fixtures/*.pb.gz) and the third-party profiles in the
# directory FIREWATCH_CONFORMANCE_DIR names (google/pprof's test data; copied
# at run time only: those files are not part of this repository, and
# fuzz/.gitignore keeps corpus/ out of it). Without that variable the
# third-party seeds are skipped, with a message. Each gzip fixture is added
# twice: as it is, and gunzipped (raw protobuf), because the gzip wrapping
# hides the protobuf structure from the fuzzer's mutations.
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
else
    echo "seed.sh: FIREWATCH_CONFORMANCE_DIR is not set: skipping the third-party seeds (repository fixtures only)" >&2
fi

for target in "${targets[@]}"; do
    dir="$fuzz_dir/corpus/$target"
    mkdir -p "$dir"
    count=0
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
    echo "seed.sh: $target: $count seed files ($(ls "$dir" | wc -l) files in corpus/$target)"
done
