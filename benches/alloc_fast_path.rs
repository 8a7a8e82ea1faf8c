//! The sampling allocator's fast path: an alloc+free pair through
//! `SamplingAllocator<System>` at the default 512 KiB interval against plain
//! `System`, side by side in the same run (issue 4: at most 2 ns more per
//! pair than `System`).
//!
//! The `GlobalAlloc` methods are called directly on static instances; this
//! binary's own global allocator stays `System`, so criterion's allocations
//! do not touch the sampling state. That state (per-thread countdowns, the
//! region, the tables) is process-wide statics shared by every
//! `SamplingAllocator` instance; each block here is freed through the
//! instance that allocated it.
//!
//! Groups (one per size; times are per pair, or per alloc+realloc+free):
//!
//! - `alloc_free/<size>`: `System`, `sampling-512KiB` (what a service pays:
//!   the amortized cost includes the fold of the in-use counters every
//!   256 KiB and a sample every ~512 KiB), and `sampling-off` (interval 0:
//!   the countdown, the sampled-block check on free and the in-use
//!   accounting, but never a sample; isolates the unsampled path).
//! - `realloc_grow/<from>-<to>`: alloc, realloc to a larger size, free.
//! - `sampled_path/64`: interval 1, every allocation sampled (stack walk,
//!   bucket lookup, region slot): the cost of one sample, for information.
//!
//! ```text
//! cargo bench --bench alloc_fast_path
//! cargo bench --bench alloc_fast_path -- alloc_free/64
//! cargo bench --bench alloc_fast_path -- --measurement-time 10
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use firewatch_agent::SamplingAllocator;

static SAMPLING: SamplingAllocator<System> = SamplingAllocator::new(System);
static SAMPLING_OFF: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 0);
static SAMPLING_ALL: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 1);

const SIZES: [usize; 4] = [16, 64, 256, 4096];
const DEFAULT_INTERVAL: usize = firewatch_agent::DEFAULT_SAMPLE_INTERVAL;

/// Restarts this thread's sample countdown for `interval` before a bench
/// (a new seed each time). The countdown is per thread, not per instance:
/// after `sampling-off` it is parked at "never", and an instance with
/// another interval would go on from there without sampling.
fn reseed(interval: usize) {
    static SEED: AtomicU64 = AtomicU64::new(1);
    firewatch_agent::testing::reseed_allocator_thread(SEED.fetch_add(1, Relaxed), interval);
}
const REALLOCS: [(usize, usize); 2] = [(64, 256), (1024, 4096)];

/// One alloc+free pair through `a`.
#[inline(always)]
fn alloc_free<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is freed with the
    // layout it was allocated with, through the same allocator.
    unsafe {
        let p = a.alloc(layout);
        assert!(!p.is_null());
        a.dealloc(black_box(p), layout);
    }
}

/// alloc, realloc to `to` bytes, free.
#[inline(always)]
fn alloc_realloc_free<A: GlobalAlloc>(a: &A, layout: Layout, to: usize) {
    // SAFETY: as above; `to` is non-zero and valid for the alignment, and
    // the reallocated block is freed with its new layout.
    unsafe {
        let p = a.alloc(layout);
        assert!(!p.is_null());
        let q = a.realloc(black_box(p), layout, to);
        assert!(!q.is_null());
        a.dealloc(
            black_box(q),
            Layout::from_size_align_unchecked(to, layout.align()),
        );
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("layout")
}

/// Sampled allocations so far (all buckets).
fn sampled_so_far() -> u64 {
    firewatch_agent::testing::bucket_records()
        .iter()
        .map(|r| r.allocs)
        .sum()
}

fn fast_path(c: &mut Criterion) {
    let before = sampled_so_far();
    let mut group = c.benchmark_group("alloc_free");
    for size in SIZES {
        let l = layout(size);
        group.bench_with_input(BenchmarkId::new("System", size), &l, |b, &l| {
            b.iter(|| alloc_free(&System, black_box(l)))
        });
        group.bench_with_input(BenchmarkId::new("sampling-512KiB", size), &l, |b, &l| {
            reseed(DEFAULT_INTERVAL);
            b.iter(|| alloc_free(&SAMPLING, black_box(l)))
        });
        group.bench_with_input(BenchmarkId::new("sampling-off", size), &l, |b, &l| {
            reseed(0);
            b.iter(|| alloc_free(&SAMPLING_OFF, black_box(l)))
        });
    }
    group.finish();
    let after_alloc_free = sampled_so_far();

    let mut group = c.benchmark_group("realloc_grow");
    for (from, to) in REALLOCS {
        let l = layout(from);
        let id = format!("{from}-{to}");
        group.bench_with_input(BenchmarkId::new("System", &id), &l, |b, &l| {
            b.iter(|| alloc_realloc_free(&System, black_box(l), black_box(to)))
        });
        group.bench_with_input(BenchmarkId::new("sampling-512KiB", &id), &l, |b, &l| {
            reseed(DEFAULT_INTERVAL);
            b.iter(|| alloc_realloc_free(&SAMPLING, black_box(l), black_box(to)))
        });
    }
    group.finish();
    let after_realloc = sampled_so_far();

    let mut group = c.benchmark_group("sampled_path");
    let l = layout(64);
    group.bench_with_input(BenchmarkId::new("sampling-every-alloc", 64), &l, |b, &l| {
        reseed(1);
        b.iter(|| alloc_free(&SAMPLING_ALL, black_box(l)))
    });
    group.finish();

    // Evidence that the 512 KiB benches did sample (sampling-off never does).
    let stats = firewatch_agent::heap::stats();
    eprintln!(
        "alloc_fast_path: sampled allocations: {} in alloc_free, {} in realloc_grow, {} in \
         sampled_path; {} buckets, {} live samples, {} region slots used, dropped {:?}",
        after_alloc_free - before,
        after_realloc - after_alloc_free,
        sampled_so_far() - after_realloc,
        stats.buckets,
        stats.live_samples,
        stats.region_slots_used,
        stats.dropped
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = fast_path
}
criterion_main!(benches);
