//! What one stack costs to capture and unwind, on a stack 30 frames deep
//! (a recursion of `#[inline(never)]` functions below the benchmark's own
//! frames), each step against a baseline measured in the same run:
//!
//! - **copy**: the signal handler's part, registers plus one
//!   `process_vm_readv` of the stack above the stack pointer (32 KiB
//!   window, as the sampler uses; the copy stops at the stack's top),
//!   against `memcpy` of the same number of bytes;
//! - **unwind a copy**: the sampler thread's part (framehop over
//!   `.eh_frame`, warm cache), against `backtrace::trace` (libgcc's
//!   unwinder) walking the live stack;
//! - **unwind in place**: the sampling allocator's walk of its own stack,
//!   against the same `backtrace::trace`.
//!
//! ```text
//! cargo bench --bench unwind
//! RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=target/fp cargo bench --bench unwind
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use firewatch_agent::testing::{prepare_in_place, unwind_in_place_here, StackSample, Unwinder};

const DEPTH: u32 = 30;
const WINDOW: usize = 32 * 1024;

/// Recurses `depth` levels, then runs `f` at the bottom.
#[inline(never)]
fn deep(depth: u32, f: &mut dyn FnMut()) -> u32 {
    if depth == 0 {
        f();
        return 0;
    }
    // Work after the call keeps it from being a tail call.
    black_box(deep(black_box(depth - 1), f)) + 1
}

fn benches(c: &mut Criterion) {
    prepare_in_place();
    let mut group = c.benchmark_group("unwind, 30 frames");

    let mut sample = StackSample::default();
    let mut copied = 0;
    deep(DEPTH, &mut || {
        sample.capture_here(WINDOW);
        copied = sample.copied();
    });
    let source = vec![1u8; copied];
    let mut target = vec![0u8; copied];
    group.bench_function(format!("memcpy of {copied} bytes (baseline)"), |b| {
        b.iter(|| {
            target.copy_from_slice(black_box(&source));
            black_box(&target);
        })
    });
    group.bench_function("copy: registers + process_vm_readv", |b| {
        deep(DEPTH, &mut || {
            b.iter(|| sample.capture_here(black_box(WINDOW)))
        });
    });

    let mut unwinder = Unwinder::default();
    let mut frames = Vec::with_capacity(128);
    deep(DEPTH, &mut || sample.capture_here(WINDOW));
    let n = unwinder.unwind(&sample, &mut frames);
    eprintln!("a copied stack of {copied} bytes unwinds to {n} frames");
    assert!(n > DEPTH as usize, "{n} frames");
    group.bench_function("backtrace::trace, live stack (baseline)", |b| {
        deep(DEPTH, &mut || {
            b.iter(|| {
                let mut n = 0;
                backtrace::trace(|_| {
                    n += 1;
                    true
                });
                black_box(n)
            })
        });
    });
    group.bench_function("unwind a copy: framehop, warm cache", |b| {
        b.iter(|| black_box(unwinder.unwind(&sample, &mut frames)))
    });
    let mut in_place = [0u64; 64];
    group.bench_function("unwind in place (allocator)", |b| {
        deep(DEPTH, &mut || {
            b.iter(|| black_box(unwind_in_place_here(&mut in_place)))
        });
    });
    group.finish();
}

criterion_group!(unwind, benches);
criterion_main!(unwind);
