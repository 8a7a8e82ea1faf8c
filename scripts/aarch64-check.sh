#!/usr/bin/env bash
# Checks firewatch-agent on aarch64 Linux under qemu-user. Installs nothing.
#
#   scripts/aarch64-check.sh [--shim] [--no-tests] [--no-stacks]
#
# 1. `cargo test -p firewatch-agent` built for aarch64-unknown-linux-gnu, run
#    by qemu-aarch64.
# 2. The `stacks` example (release), with and without forced frame pointers,
#    run under qemu: the share of the `worker` thread's CPU samples whose stack
#    reaches `stage_one` (tests/stacks.rs wants >= 95%) and the in-use heap
#    attributed to `stage_one_alloc` out of 32 MiB (>= 90%), read with
#    `go tool pprof` (skipped without go).
#
# What qemu-user (checked with 7.2) cannot do, so what fails without help:
# - process_vm_readv answers ENOSYS (`qemu-aarch64 -strace`): the agent copies
#   no stack and no unwind table, CPU samples keep only their PC. `--shim`
#   preloads into the guest a process_vm_readv for its own pid that copies
#   through a pipe (qemu checks the pages on write(2) and answers EFAULT, as
#   the kernel would), so the CPU and CFI paths run for real.
# - execve of an aarch64 binary fails (ENOEXEC) without binfmt_misc: the
#   unwind_faults tests, which re-run their own binary, fail; with --shim
#   their cases are also run in-process (FIREWATCH_FAULT_CASE), the way the
#   child would run them. The dlclose-fp case still fails: qemu ignores
#   MAP_FIXED_NOREPLACE and maps elsewhere.
#
# Environment: AARCH64_TARGET_BASE (target directories; default
# target/aarch64-check), QEMU_LD_PREFIX (guest sysroot; /usr/aarch64-linux-gnu).
set -euo pipefail

shim=0 tests=1 stacks=1
for arg in "$@"; do
  case "$arg" in
    --shim) shim=1 ;;
    --no-tests) tests=0 ;;
    --no-stacks) stacks=0 ;;
    *) echo "usage: $0 [--shim] [--no-tests] [--no-stacks]" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
target=aarch64-unknown-linux-gnu
sysroot=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
base=${AARCH64_TARGET_BASE:-$repo/target/aarch64-check}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Prerequisites (Debian/Ubuntu: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# qemu-user; rustup target add aarch64-unknown-linux-gnu).
missing=0
for tool in cargo rustup aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; missing=1; }
done
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  { echo "missing: rust std for $target" >&2; missing=1; }
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] ||
  { echo "missing: aarch64 sysroot at $sysroot" >&2; missing=1; }
[ "$missing" = 0 ] || exit 1
have_go=0
command -v go >/dev/null && have_go=1 || echo "note: no go; stacks figures skipped"
echo "qemu: $(qemu-aarch64 --version | head -1)"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
qemu=(qemu-aarch64 -L "$sysroot")

# --- The process_vm_readv shim (--shim).
if [ "$shim" = 1 ]; then
  cat >"$tmp/pvr.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
/* Our own pid only; each remote iovec whole or not at all (the agent sends
 * page-sized pieces). Async-signal-safe. */
ssize_t process_vm_readv(pid_t pid, const struct iovec *l, unsigned long ln,
                         const struct iovec *r, unsigned long rn, unsigned long flags) {
  if (pid != (pid_t)syscall(SYS_getpid) || flags)
    return syscall(SYS_process_vm_readv, pid, l, ln, r, rn, flags);
  int p[2];
  if (pipe2(p, O_CLOEXEC)) return -1;
  size_t total = 0, li = 0, lo = 0;
  int err = 0;
  char buf[4096];
  for (unsigned long i = 0; i < rn && !err; i++) {
    for (size_t done = 0; done < r[i].iov_len && !err;) {
      size_t n = r[i].iov_len - done < sizeof buf ? r[i].iov_len - done : sizeof buf;
      ssize_t w = write(p[1], (char *)r[i].iov_base + done, n);
      if (w <= 0 || read(p[0], buf, w) != w) { err = w < 0 ? errno : EFAULT; break; }
      for (size_t put = 0; put < (size_t)w;) {
        if (li >= ln) { err = EFAULT; break; }
        size_t c = l[li].iov_len - lo < (size_t)w - put ? l[li].iov_len - lo : (size_t)w - put;
        memcpy((char *)l[li].iov_base + lo, buf + put, c);
        put += c, lo += c;
        if (lo == l[li].iov_len) li++, lo = 0;
      }
      done += w;
    }
    if (!err) total += r[i].iov_len;
  }
  close(p[0]), close(p[1]);
  if (!total && err) { errno = err; return -1; }
  return total;
}
EOF
  aarch64-linux-gnu-gcc -O2 -shared -fPIC -o "$tmp/libpvr.so" "$tmp/pvr.c"
  qemu+=(-E "LD_PRELOAD=$tmp/libpvr.so")
  echo "shim: process_vm_readv preloaded into the guest"
fi

status=0
mkdir -p "$base"

# --- 1. The agent's tests.
if [ "$tests" = 1 ]; then
  echo "== cargo test -p firewatch-agent --target $target (under ${qemu[*]})"
  log=$tmp/test.log
  (cd "$repo" && CARGO_TARGET_DIR=$base/tests \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]}" \
    cargo test -p firewatch-agent --target "$target" --no-fail-fast) >"$log" 2>&1 || status=1
  grep -E '^ +Running|^test result|^test .* FAILED$|^error: [0-9]+ target' "$log" || true
  cp "$log" "$base/test.log" && echo "(full log: $base/test.log)"

  # The unwind_faults cases, in-process (their child cannot be exec'd).
  faults=$(sed -n 's/.*Running tests\/unwind_faults.rs (\(.*\))$/\1/p' "$log")
  if [ "$shim" = 1 ] && [ -n "$faults" ]; then
    mkdir -p "$tmp/bin" && ln -s "$(command -v aarch64-linux-gnu-gcc)" "$tmp/bin/cc"
    for c in neighbour:the_stack_walk_survives_a_neighbour_unmapped_under_the_frame_pointer \
      jit:the_drain_thread_survives_jit_code_unmapped_under_the_stack_pointer \
      dlclose-fp:the_stack_walk_survives_a_dlclosed_library_under_the_frame_pointer \
      dlclose-sp:the_drain_thread_survives_dlclosed_code_under_the_stack_pointer; do
      if out=$("${qemu[@]}" -E "PATH=$tmp/bin:$PATH" -E "FIREWATCH_FAULT_CASE=${c%%:*}" \
        "$faults" "${c#*:}" --exact --nocapture --test-threads 1 2>&1); then
        echo "unwind_faults in-process ${c%%:*}: ok ($(grep -o '[0-9]* samples' <<<"$out"))"
      else
        echo "unwind_faults in-process ${c%%:*}: FAILED: $(grep -m1 -A1 panicked <<<"$out" | tail -1)"
      fi
    done
  fi
fi

# --- 2. The stacks example, without and with forced frame pointers.
# "Showing nodes accounting for N, ..." with every node shown: the total of
# the samples pprof's filters keep.
total() {
  go tool pprof -top -nodecount=1000000 "$@" 2>/dev/null |
    sed -n 's/^Showing nodes accounting for \([0-9.]*\)B\{0,1\},.*/\1/p'
}
if [ "$stacks" = 1 ]; then
  for fp in no yes; do
    dir=$base/stacks-fp-$fp
    echo "== stacks example, -C force-frame-pointers=$fp ($dir)"
    (cd "$repo" && CARGO_TARGET_DIR=$dir RUSTFLAGS="-C force-frame-pointers=$fp" \
      cargo build -q --release -p firewatch-agent --example stacks --target "$target")
    out=$dir/out && rm -rf "$out"
    "${qemu[@]}" "$dir/$target/release/examples/stacks" "$out" || { status=1; continue; }
    [ "$have_go" = 1 ] || continue
    worker=$(total -sample_index=samples -tagfocus=thread=worker "$out/cpu.pb")
    reach=$(total -sample_index=samples -tagfocus=thread=worker -focus='stage_one$' "$out/cpu.pb")
    heap=$(total -sample_index=inuse_space -unit=B -focus='stage_one_alloc$' "$out/heap.pb")
    awk -v w="${worker:-0}" -v s="${reach:-0}" -v h="${heap:-0}" -v fp="$fp" 'BEGIN {
      cpu = w ? s / w : 0; mem = h / (32 * 1048576)
      printf "force-frame-pointers=%s: %d worker samples, %.1f%% reach stage_one; heap: %.1f%% of 32 MiB under stage_one_alloc\n", fp, w, 100 * cpu, 100 * mem
      exit !(cpu >= 0.95 && mem >= 0.90) }' || status=1
    grep -h 'self-check failed' <(go tool pprof -comments "$out/cpu.pb" 2>/dev/null) || true
  done
fi

exit "$status"
