#!/usr/bin/env bash
# Coverage-guided fuzzing of the profile decoder, the analyzer and its
# readers of Node.js's formats with cargo-fuzz (libFuzzer, AddressSanitizer,
# debug assertions and overflow checks on), on the nightly toolchain.
#
# Usage: fuzz/run.sh [seconds-per-target] [target...]
#   seconds-per-target  default 60 (CI-sized); every target in fuzz_targets/
#                       (decode, analyze, heapsnapshot, node) unless targets
#                       are named.
# Environment:
#   FUZZ_MAX_LEN        -max_len in bytes (default 1048576 = 1 MiB)
#   FUZZ_SANITIZER      address (default) or none (faster, catches less)
#   FUZZ_ARGS           extra libFuzzer flags, e.g. "-seed=1"
#   RAYON_NUM_THREADS   decoder/aggregator threads (default 1 here: inputs are
#                       small, and one core stays free)
#   FIREWATCH_CONFORMANCE_DIR  the third-party profiles (google/pprof's test
#                       data) to seed with; without it, repository fixtures
#                       only (see seed.sh)
#
# Per target it prints executions, exec/s, final cov/ft, corpus size and
# the crash/timeout/OOM files found; it exits non-zero if any target found
# one (reproduce with `cargo +nightly fuzz run <target> <file>` in fuzz/).
# Logs: fuzz/logs/<target>.log. New corpus entries go to fuzz/corpus/<target>/,
# crashes to fuzz/artifacts/<target>/ (both ignored by git; a reproducer
# worth keeping goes to fuzz/regressions/<target>/).
set -euo pipefail

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [seconds-per-target] [target...]" >&2
    exit 2
fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
max_len="${FUZZ_MAX_LEN:-1048576}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"

# --- Tools: nightly (libFuzzer needs -Zsanitizer and sanitizer coverage) and cargo-fuzz.
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
# libFuzzer itself is C++, built by libfuzzer-sys's build script.
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    echo "run.sh: a C++ compiler is needed to build libFuzzer: apt-get install g++" >&2
    exit 2
fi

build_flags=(--sanitizer "$sanitizer" --debug-assertions)
# Only the targets run are built, one at a time (the build of one does not
# depend on the others compiling).
for target in "${targets[@]}"; do
    echo "== build: cargo +nightly fuzz build ${build_flags[*]} $target"
    cargo +nightly fuzz build "${build_flags[@]}" "$target"
done

echo "== seed"
./seed.sh "${targets[@]}"

mkdir -p logs
status=0
summary=()
for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target" "corpus/$target"
    before="$(find "artifacts/$target" -type f | sort)"
    log="logs/$target.log"
    # The target's own dictionary (heapsnapshot.dict, node.dict), else pprof's.
    dict="pprof.dict"
    if [ -f "$target.dict" ]; then dict="$target.dict"; fi
    # shellcheck disable=SC2206
    libfuzzer_flags=(
        -max_total_time="$seconds"
        -max_len="$max_len"
        -rss_limit_mb=2048
        -timeout=10
        -dict="$dict"
        -print_final_stats=1
        ${FUZZ_ARGS:-}
    )
    echo "== $target: ${seconds}s: cargo +nightly fuzz run ${build_flags[*]} $target corpus/$target -- ${libfuzzer_flags[*]}"
    started=$(date +%s)
    set +e
    cargo +nightly fuzz run "${build_flags[@]}" "$target" "corpus/$target" -- "${libfuzzer_flags[@]}" >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(( $(date +%s) - started ))

    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    # The last status line: "#N  DONE|pulse|NEW  cov: C ft: F corp: K/S ... exec/s: E ..."
    last="$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
    corp="$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")"
    rate="$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$last")"
    rss="$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    after="$(find "artifacts/$target" -type f | sort)"
    new="$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d' || true)"
    crashes=$(grep -c '^crash-' <<<"$(xargs -r -n1 basename <<<"$new")" || true)
    timeouts=$(grep -c '^timeout-' <<<"$(xargs -r -n1 basename <<<"$new")" || true)
    ooms=$(grep -c '^oom-' <<<"$(xargs -r -n1 basename <<<"$new")" || true)
    leaks=$(grep -c '^leak-' <<<"$(xargs -r -n1 basename <<<"$new")" || true)
    files="$(find "corpus/$target" -type f | wc -l)"

    line="$target: rc=$rc, ${elapsed}s, executions=${execs:-?}, exec/s=${rate:-?}, cov=${cov:-?}, ft=${ft:-?}, corpus=${corp:-?} (${files} files), peak_rss=${rss:-?}MB, crashes=$crashes, timeouts=$timeouts, ooms=$ooms, leaks=$leaks"
    summary+=("$line")
    echo "$line"
    if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
        status=1
        echo "!! $target found a problem; log: fuzz/$log" >&2
        for f in $new; do echo "!! reproducer: fuzz/$f ($(stat -c %s "$f") bytes): cd fuzz && cargo +nightly fuzz run $target $f" >&2; done
        grep -m1 -A40 -E '^==[0-9]+==ERROR|panicked at|^thread .* panicked' "$log" >&2 || tail -40 "$log" >&2
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
total=0
for line in "${summary[@]}"; do
    n="$(sed -nE 's/.*executions=([0-9]+).*/\1/p' <<<"$line")"
    total=$((total + ${n:-0}))
done
echo "total executions: $total"
exit "$status"
