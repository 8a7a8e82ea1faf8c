#!/usr/bin/env bash
# Checks the memory ordering of the agent's "announce, load, use, leave" /
# "swap, wait, free" protocols (the CPU sampler's pool, the in-place
# unwinder's tables; issue 10, finding 5) with the models in
# models/ring_retirement: an exhaustive RC11 (C++20/Rust memory model)
# checker and loom. Exits non-zero if any verdict differs from the expected
# one: the old orderings must show a use after free, the code's must not.
#
#   scripts/model-check.sh [--witness]
#
# --witness prints, for every check that found something, the execution
# (which write each read read from, the race).
#
# Needs only cargo: loom comes from crates.io (the crate's Cargo.lock pins
# it). Builds in $CARGO_TARGET_DIR if set, else target/model-check. About
# 25 s to build from nothing on 2 cores, ~2 s to run.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/model-check}"
manifest="$repo/models/ring_retirement/Cargo.toml"

# The model has the code's orderings written into it
# (models/ring_retirement/src/protocols.rs, `NOW`): make sure the code still
# has them, so a change to either is seen.
agent="$repo/crates/agent/src"
missing=0
while IFS= read -r text; do
  if ! grep -rqF -- "$text" "$agent"; then
    echo "model-check: crates/agent/src no longer has: $text" >&2
    missing=1
  fi
done <<'LINES'
ACTIVE.fetch_add(1, Ordering::SeqCst);
let pool = POOL.load(Ordering::SeqCst);
ACTIVE.fetch_sub(1, Ordering::SeqCst);
while ACTIVE.load(Ordering::SeqCst) != 0 {
let pool = POOL.swap(std::ptr::null_mut(), Ordering::SeqCst);
WALKERS.fetch_add(1, Ordering::SeqCst);
PUBLISHED.load(Ordering::SeqCst).as_ref()
WALKERS.fetch_sub(1, Ordering::SeqCst);
let old = PUBLISHED.swap(fresh, Ordering::SeqCst);
while WALKERS.load(Ordering::SeqCst) != 0 {
ENABLED.store(false, Ordering::SeqCst);
if ENABLED.load(Ordering::SeqCst) {
LINES
if [ "$missing" = 1 ]; then
  echo "model-check: update models/ring_retirement/src/protocols.rs (NOW) to the code's orderings, then re-run" >&2
  exit 1
fi

began=$(date +%s.%N)
cargo build --release --locked --quiet --manifest-path "$manifest"
built=$(date +%s.%N)
"$CARGO_TARGET_DIR/release/ring-retirement-model" "$@"
ran=$(date +%s.%N)
awk -v a="$began" -v b="$built" -v c="$ran" \
  'BEGIN { printf "model-check: build %.1f s, run %.1f s\n", b - a, c - b }'
