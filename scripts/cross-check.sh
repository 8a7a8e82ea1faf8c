#!/usr/bin/env bash
# The agent on targets other than the one it is developed on: clippy (which
# checks, with -D warnings) of firewatch-agent's library and examples for a
# 32-bit Linux target, macOS and aarch64 Linux. See docs/agent.md, "Targets":
# CPU profiling and unwinding are built for Linux on x86_64/aarch64 only,
# with stubs elsewhere; the sampling allocator builds everywhere.
#
#   scripts/cross-check.sh [TARGET...]
#
# Installs a missing target's standard library with `rustup target add`;
# where that cannot download (a machine without the Rust distribution
# server), the target is skipped with a message, or fails the run with
# FIREWATCH_CROSS_REQUIRED=1. Needs no C cross compiler: the agent depends
# on firewatch-profile without its `libdeflate` feature (C code), which this
# also checks.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(i686-unknown-linux-gnu x86_64-apple-darwin aarch64-unknown-linux-gnu)
fi

# No C code in the agent's dependencies, on any target.
if cargo tree -p firewatch-agent -e normal,build --target all --prefix none | grep -q '^libdeflate-sys '; then
  echo "firewatch-agent depends on libdeflate-sys (C): cross builds need a C compiler" >&2
  cargo tree -p firewatch-agent -e normal,build --target all -i libdeflate-sys >&2
  exit 1
fi

installed=$(rustup target list --installed)
skipped=()
for target in "${targets[@]}"; do
  if ! grep -qx "$target" <<<"$installed" && ! rustup target add "$target"; then
    if [ "${FIREWATCH_CROSS_REQUIRED:-0}" = 1 ]; then
      echo "cross-check: cannot install $target" >&2
      exit 1
    fi
    skipped+=("$target")
    continue
  fi
  echo "== $target"
  cargo clippy -p firewatch-agent --lib --examples --target "$target" -- -D warnings
done
if [ ${#skipped[@]} -gt 0 ]; then
  echo "cross-check: SKIPPED (standard library not installed, not downloadable): ${skipped[*]}" >&2
fi
