//! Cost of `firewatch_agent::heap::snapshot()` with 100k live samples.
//!
//! The global allocator samples every allocation while the live set is
//! built: `SamplingAllocator<System>` at interval 1. It makes `LIVE`
//! (100,000) live allocations from 1,024 distinct call stacks (a 10-level
//! recursion through `left`/`right`, the path given by the bits of the
//! stack's number) in 4 sizes (24, 48, 96, 200 bytes): 4,096 buckets. Then
//! it takes `REPEATS` snapshots in a row. For each: wall time, bytes
//! allocated during the call (the allocator's own counter, folded before
//! and after), peak RSS growth (`VmHWM` after the call − RSS before it, the
//! peak reset through `/proc/self/clear_refs`), and the profile's encoded
//! size, raw and gzip. The first snapshot pays symbolization setup (loading
//! the binary's debug info into `backtrace`'s process-wide cache), so it is
//! reported apart from the median of the others.
//!
//! Two configurations, each in its own child process (this binary with
//! `FIREWATCH_SNAPSHOT_INTERVAL` set):
//!
//! - **interval 1 throughout**: the snapshot's own allocations are sampled
//!   too (a stack walk, a bucket lookup and a region slot, one resident page,
//!   each, until the region is full): an upper bound, and its RSS growth is
//!   mostly those slots;
//! - **interval 1 to build, then 512 KiB** (the default) for the snapshots:
//!   what a service pays. The global allocator holds two
//!   `SamplingAllocator<System>` instances (interval 1 and 512 KiB) and
//!   serves allocations from the first until the live set is built, then
//!   from the second; frees go through the first. That is sound because
//!   both wrap `System` and share all their state (process-wide statics):
//!   the interval is only read when allocating.
//!
//! ```text
//! cargo bench --bench heap_snapshot
//! REPEATS=11 LIVE=100000 cargo bench --bench heap_snapshot
//! ```
//!
//! Env: `LIVE` (default 100000), `REPEATS` (7), `DEPTH` (10: 2^DEPTH
//! call stacks; `LIVE` must be at least 4 × 2^DEPTH for every bucket to exist). Exits non-zero only on
//! harness errors.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use common::{
    env_u64, machine_info, max, median, mib, min, peak_rss_bytes, reset_peak_rss, rss_bytes,
    BoxError,
};
use firewatch_agent::SamplingAllocator;
use firewatch_profile::Profile;

const ENV_INTERVAL: &str = "FIREWATCH_SNAPSHOT_INTERVAL";
const DEFAULT_INTERVAL: usize = firewatch_agent::DEFAULT_SAMPLE_INTERVAL;

static EVERY: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 1);
static DEFAULT: SamplingAllocator<System> = SamplingAllocator::new(System);
/// Set once the live set is built, in the 512 KiB configuration.
static USE_DEFAULT: AtomicBool = AtomicBool::new(false);

struct Phased;

#[global_allocator]
static ALLOC: Phased = Phased;

impl Phased {
    #[inline]
    fn current(&self) -> &'static SamplingAllocator<System> {
        if USE_DEFAULT.load(Relaxed) {
            &DEFAULT
        } else {
            &EVERY
        }
    }
}

// SAFETY: both instances wrap `System` and share every table; a block from
// either is freed correctly by either (the interval is read only when
// allocating), so frees may go through `EVERY` whichever served them.
unsafe impl GlobalAlloc for Phased {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.current().alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.current().alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract (see above).
        unsafe { EVERY.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract (see above).
        unsafe { self.current().realloc(ptr, layout, new_size) }
    }
}

/// Levels of the recursion by default: 2^DEPTH distinct stacks (`DEPTH`
/// in the environment changes it, e.g. 12 for 16,384 buckets).
const DEPTH: u32 = 10;
const SIZES: [usize; 4] = [24, 48, 96, 200];

#[inline(never)]
fn leaf_alloc(size: usize, out: &mut Vec<Box<[u8]>>) -> usize {
    out.push(black_box(vec![7u8; size].into_boxed_slice()));
    out.len()
}

/// Descends `depth` more levels, through `left` or `right` as the bits of
/// `path` say, then allocates: each path is its own call stack.
#[inline(never)]
fn step(path: u32, depth: u32, size: usize, out: &mut Vec<Box<[u8]>>) -> usize {
    let n = if depth == 0 {
        leaf_alloc(size, out)
    } else if path & 1 == 0 {
        left(path >> 1, depth - 1, size, out)
    } else {
        right(path >> 1, depth - 1, size, out)
    };
    // Not a tail call: the frame stays on the stack.
    black_box(n)
}

// `left` and `right` must compile to different code: rustc merges
// identical functions, and the two would then be one frame.
#[inline(never)]
fn left(path: u32, depth: u32, size: usize, out: &mut Vec<Box<[u8]>>) -> usize {
    black_box(step(path, depth, size, out)).wrapping_add(1)
}

#[inline(never)]
fn right(path: u32, depth: u32, size: usize, out: &mut Vec<Box<[u8]>>) -> usize {
    black_box(step(path, depth, size, out)).wrapping_mul(3)
}

struct Snap {
    ms: f64,
    allocated: f64,
    peak_growth: f64,
    samples: usize,
    workload_samples: usize,
    locations: usize,
    raw: usize,
    gzip: usize,
}

/// Samples whose stack holds `leaf_alloc`.
fn workload_samples(p: &Profile) -> usize {
    let leaf_functions: Vec<u64> = p
        .function
        .iter()
        .filter(|f| p.string(f.name).ends_with("leaf_alloc"))
        .map(|f| f.id)
        .collect();
    let leaf_locations: Vec<u64> = p
        .location
        .iter()
        .filter(|l| {
            l.line
                .iter()
                .any(|line| leaf_functions.contains(&line.function_id))
        })
        .map(|l| l.id)
        .collect();
    p.sample
        .iter()
        .filter(|s| s.location_id.iter().any(|id| leaf_locations.contains(id)))
        .count()
}

/// Bytes this process allocated through the sampling allocator, with this
/// thread's unfolded count folded in (restarting its sample generator, which
/// is the only way to fold on demand).
fn allocated_so_far(interval: usize) -> u64 {
    firewatch_agent::testing::reseed_allocator_thread(0x5eed, interval);
    firewatch_agent::heap::stats().allocated_bytes
}

fn snapshot_once(interval: usize) -> Result<Snap, BoxError> {
    let peak_reset = reset_peak_rss();
    let rss0 = rss_bytes().unwrap_or(0);
    let allocated0 = allocated_so_far(interval);
    let t0 = Instant::now();
    let profile = firewatch_agent::heap::snapshot()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let allocated = allocated_so_far(interval) - allocated0;
    let peak_growth = if peak_reset {
        peak_rss_bytes().unwrap_or(0).saturating_sub(rss0) as f64
    } else {
        f64::NAN
    };
    let raw = profile.encode().len();
    let gzip = profile.encode_gzip().len();
    Ok(Snap {
        ms,
        allocated: allocated as f64,
        peak_growth,
        samples: profile.sample.len(),
        workload_samples: workload_samples(&profile),
        locations: profile.location.len(),
        raw,
        gzip,
    })
}

/// One configuration, in a fresh process: builds the live set, snapshots,
/// prints its section of the report.
fn child(snapshot_interval: usize) -> Result<(), BoxError> {
    let live = env_u64("LIVE", 100_000)? as usize;
    let repeats = env_u64("REPEATS", 7)? as usize;
    if repeats < 2 {
        return Err("REPEATS must be at least 2".into());
    }

    let depth = env_u64("DEPTH", u64::from(DEPTH))?.min(20) as u32;
    let stacks = 1u32 << depth;
    let rss_before = rss_bytes().unwrap_or(0);
    let t0 = Instant::now();
    let mut blocks: Vec<Box<[u8]>> = Vec::with_capacity(live);
    for i in 0..live {
        let path = (i as u32) % stacks;
        let size = SIZES[(i / stacks as usize) % SIZES.len()];
        step(path, depth, size, &mut blocks);
    }
    let build_s = t0.elapsed().as_secs_f64();
    let rss_built = rss_bytes().unwrap_or(0);
    let stats = firewatch_agent::heap::stats();
    if snapshot_interval != 1 {
        USE_DEFAULT.store(true, Relaxed);
    }

    println!(
        "## Interval 1 to build, {} during the snapshots\n",
        if snapshot_interval == 1 {
            "still 1".to_string()
        } else {
            format!("{snapshot_interval} bytes")
        }
    );
    println!(
        "- {live} live allocations from {stacks} call stacks × {} sizes, made in {build_s:.3} s \
         ({:.0} ns per sampled allocation); RSS {:.1} → {:.1} MiB",
        SIZES.len(),
        build_s * 1e9 / live as f64,
        mib(rss_before as f64),
        mib(rss_built as f64),
    );
    println!(
        "- allocator before the first snapshot: {} live samples, {} buckets, {} region slots \
         used, dropped {:?}\n",
        stats.live_samples, stats.buckets, stats.region_slots_used, stats.dropped
    );

    let mut snaps = Vec::with_capacity(repeats);
    for i in 0..repeats {
        let s = snapshot_once(snapshot_interval)?;
        eprintln!(
            "snapshot {i}: {:.1} ms, allocated {:.1} MiB, peak RSS +{:.1} MiB, {} samples",
            s.ms,
            mib(s.allocated),
            mib(s.peak_growth),
            s.samples
        );
        snaps.push(s);
    }
    let after = firewatch_agent::heap::stats();

    let rest = &snaps[1..];
    let col = |f: fn(&Snap) -> f64| rest.iter().map(f).collect::<Vec<f64>>();
    let first = &snaps[0];
    println!("| snapshot | wall ms | allocated during the call MiB | peak RSS growth MiB |");
    println!("|---|---:|---:|---:|");
    println!(
        "| first (symbolization setup) | {:.1} | {:.1} | {:.1} |",
        first.ms,
        mib(first.allocated),
        mib(first.peak_growth)
    );
    let ms = col(|s| s.ms);
    println!(
        "| later: median of {} (min–max) | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1} |",
        rest.len(),
        median(&ms),
        min(&ms),
        max(&ms),
        mib(median(&col(|s| s.allocated))),
        mib(median(&col(|s| s.peak_growth))),
    );
    let last = snaps.last().expect("repeats ≥ 2");
    println!(
        "\nProfile (last snapshot): {} samples ({} of them through `leaf_alloc`), {} locations; \
         encoded {:.2} MiB raw, {:.2} MiB gzip.",
        last.samples,
        last.workload_samples,
        last.locations,
        mib(last.raw as f64),
        mib(last.gzip as f64),
    );
    println!(
        "\nAllocator after the snapshots: {} live samples, {} buckets, {} region slots used, \
         dropped {:?}.",
        after.live_samples, after.buckets, after.region_slots_used, after.dropped
    );
    black_box(blocks);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    if let Ok(interval) = std::env::var(ENV_INTERVAL) {
        return child(interval.parse()?);
    }
    println!("# Heap snapshot cost\n");
    print!("{}", machine_info());
    println!();
    for interval in [1, DEFAULT_INTERVAL] {
        use std::io::Write;
        std::io::stdout().flush()?;
        let status = std::process::Command::new(std::env::current_exe()?)
            .env(ENV_INTERVAL, interval.to_string())
            .stdin(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("{ENV_INTERVAL}={interval}: {status}").into());
        }
        println!();
    }
    Ok(())
}
