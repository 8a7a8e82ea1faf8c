//! Throughput and memory cost of heap sampling on an allocation-heavy
//! workload: two threads, each a fixed, deterministic number of operations
//! (a small box replacing one in a ring, a `Vec<u32>` grown by pushes and
//! kept in a ring of 256Ki, a `format!`ed `String` inserted into a
//! `HashMap<u64, String>` of up to 256Ki keys, replacing an older one),
//! sized to about 1.5 s at start-up. The rings and maps are what stays live:
//! ~150 MiB at the retention point (the end of the workload, before anything
//! is dropped).
//!
//! The global allocator dispatches on a mode read once (lazily, with
//! `getenv`, before the first allocation is served) from
//! `FIREWATCH_HEAP_MODE`, and loaded (`Relaxed`) in every call, so every
//! mode pays the same dispatch:
//!
//! - `system`: `std::alloc::System` (glibc malloc), the baseline;
//! - `sampling-512k`: `SamplingAllocator<System>` at the default 512 KiB;
//! - `sampling-64k`: `SamplingAllocator<System>` at 64 KiB (information);
//!
//! and with `--features jemalloc-bench` (builds jemalloc 5 from C):
//!
//! - `jemalloc`: tikv-jemallocator, profiling compiled in but off, the
//!   baseline for the two below;
//! - `jemalloc-prof`: the same with `_RJEM_MALLOC_CONF=prof:true,lg_prof_sample:19`
//!   (jemalloc's own heap profiling, one sample per 512 KiB; checked in the
//!   child through `opt.prof` and `opt.lg_prof_sample`);
//! - `sampling-512k-jemalloc`: `SamplingAllocator<Jemalloc>` at 512 KiB.
//!
//! Each run is a child process (this binary, with `FIREWATCH_HEAP_MODE`
//! set), so every mode starts from a fresh heap; rounds run every mode once,
//! the order rotated each round so drift hits every mode evenly. The child
//! spawns the workers parked on a barrier, times from releasing them until
//! they are joined (wall clock and process CPU time), then, at the
//! retention point, reads RSS, glibc's `mallinfo2`, and the sampling
//! allocator's `heap::stats()`; peak RSS is `VmHWM` at the end.
//!
//! ```text
//! cargo bench --bench heap_overhead
//! ROUNDS=11 cargo bench --bench heap_overhead
//! cargo bench --bench heap_overhead --features jemalloc-bench
//! ```
//!
//! Env: `ROUNDS` (default 7), `WORKLOAD_MS` (1500, the calibration target),
//! `ITERS` (operations per thread; skips calibration), `MODES` (comma-
//! separated subset). Exits non-zero only on harness errors.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use common::{
    env_u64, field, glibc_in_use_bytes, machine_info, max, median, mib, min, peak_rss_bytes,
    process_cpu_ns, rss_bytes, run_child, BoxError, Parked,
};
use firewatch_agent::SamplingAllocator;

const ENV_MODE: &str = "FIREWATCH_HEAP_MODE";
const THREADS: usize = 2;
/// Small boxes replaced at random in a ring of this many per thread.
const BOX_RING: usize = 4096;
/// Grown vectors kept, in turn, in a ring of this many per thread.
const VEC_RING: usize = 1 << 18;
/// Keys of each thread's map.
const KEYS: u64 = 1 << 18;

// ---------------------------------------------------------------------------
// The dispatching global allocator.

const UNSET: u8 = 0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    System = 1,
    Sampling512k = 2,
    Sampling64k = 3,
    Jemalloc = 4,
    JemallocProf = 5,
    Sampling512kJemalloc = 6,
    /// `FIREWATCH_HEAP_MODE` named no mode this build has (served by System).
    Invalid = 7,
}

const ALL_MODES: [Mode; 6] = [
    Mode::System,
    Mode::Sampling512k,
    Mode::Sampling64k,
    Mode::Jemalloc,
    Mode::JemallocProf,
    Mode::Sampling512kJemalloc,
];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::Sampling512k => "sampling-512k",
            Mode::Sampling64k => "sampling-64k",
            Mode::Jemalloc => "jemalloc",
            Mode::JemallocProf => "jemalloc-prof",
            Mode::Sampling512kJemalloc => "sampling-512k-jemalloc",
            Mode::Invalid => "invalid",
        }
    }

    fn from_label(label: &[u8]) -> Mode {
        ALL_MODES
            .into_iter()
            .find(|m| m.label().as_bytes() == label && m.available())
            .unwrap_or(Mode::Invalid)
    }

    fn available(self) -> bool {
        match self {
            Mode::System | Mode::Sampling512k | Mode::Sampling64k => true,
            Mode::Jemalloc | Mode::JemallocProf | Mode::Sampling512kJemalloc => {
                cfg!(feature = "jemalloc-bench")
            }
            Mode::Invalid => false,
        }
    }

    /// What the mode is measured against.
    fn baseline(self) -> Mode {
        match self {
            Mode::JemallocProf | Mode::Sampling512kJemalloc => Mode::Jemalloc,
            _ => Mode::System,
        }
    }

    /// Extra environment of the child.
    fn child_env(self) -> Vec<(&'static str, String)> {
        let mut env = vec![(ENV_MODE, self.label().to_string())];
        if self == Mode::JemallocProf {
            env.push(("_RJEM_MALLOC_CONF", "prof:true,lg_prof_sample:19".into()));
        }
        env
    }

    fn sampling(self) -> bool {
        matches!(
            self,
            Mode::Sampling512k | Mode::Sampling64k | Mode::Sampling512kJemalloc
        )
    }
}

static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// The mode, read from the environment on the first call. `getenv` does
/// not allocate; racing first calls store the same value.
#[cold]
fn init_mode() -> u8 {
    // SAFETY: a NUL-terminated name; nothing in this process sets the
    // environment, and the returned string is read before returning.
    let mode = unsafe {
        let value = libc::getenv(c"FIREWATCH_HEAP_MODE".as_ptr());
        if value.is_null() {
            Mode::System
        } else {
            Mode::from_label(std::ffi::CStr::from_ptr(value).to_bytes())
        }
    };
    MODE.store(mode as u8, Relaxed);
    mode as u8
}

#[inline(always)]
fn mode() -> u8 {
    match MODE.load(Relaxed) {
        UNSET => init_mode(),
        m => m,
    }
}

fn current_mode() -> Mode {
    let m = mode();
    ALL_MODES
        .into_iter()
        .find(|&x| x as u8 == m)
        .unwrap_or(Mode::Invalid)
}

static SAMPLING_512K: SamplingAllocator<System> = SamplingAllocator::new(System);
static SAMPLING_64K: SamplingAllocator<System> =
    SamplingAllocator::with_sample_interval(System, 64 * 1024);
#[cfg(feature = "jemalloc-bench")]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "jemalloc-bench")]
static SAMPLING_512K_JEMALLOC: SamplingAllocator<tikv_jemallocator::Jemalloc> =
    SamplingAllocator::new(tikv_jemallocator::Jemalloc);

struct Dispatch;

#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

/// One match per call, the same in every mode; a mode is fixed for the
/// life of the process, so every block is freed by its allocator.
macro_rules! dispatch {
    ($method:ident($($arg:expr),*)) => {
        match mode() {
            2 => SAMPLING_512K.$method($($arg),*),
            3 => SAMPLING_64K.$method($($arg),*),
            #[cfg(feature = "jemalloc-bench")]
            4 | 5 => JEMALLOC.$method($($arg),*),
            #[cfg(feature = "jemalloc-bench")]
            6 => SAMPLING_512K_JEMALLOC.$method($($arg),*),
            _ => System.$method($($arg),*),
        }
    };
}

// SAFETY: forwards every call to the one allocator of this process's mode.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(alloc(layout)) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(alloc_zeroed(layout)) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(dealloc(ptr, layout)) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(realloc(ptr, layout, new_size)) }
    }
}

// ---------------------------------------------------------------------------
// The workload.

struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A small heap object (32 bytes).
struct Node {
    key: u64,
    payload: [u64; 3],
}

/// What a worker leaves live at the retention point.
struct Retained {
    boxes: Vec<Option<Box<Node>>>,
    vecs: Vec<Vec<u32>>,
    map: HashMap<u64, String>,
    checksum: u64,
}

#[inline(never)]
fn grow_vec(x: u64) -> Vec<u32> {
    let n = (x >> 40) % 64;
    let mut v = Vec::new();
    for j in 0..n {
        v.push(j as u32 ^ x as u32);
    }
    v
}

#[inline(never)]
fn worker(seed: u64, iterations: u64) -> Retained {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut boxes: Vec<Option<Box<Node>>> = (0..BOX_RING).map(|_| None).collect();
    let mut vecs: Vec<Vec<u32>> = (0..VEC_RING).map(|_| Vec::new()).collect();
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut checksum = 0u64;
    for i in 0..iterations {
        let x = rng.next();
        // A small box, replacing (freeing) an older one.
        let slot = (x as usize) % BOX_RING;
        let node = Box::new(Node {
            key: x,
            payload: [x, i, x ^ i],
        });
        if let Some(old) = boxes[slot].replace(black_box(node)) {
            checksum = checksum.wrapping_add(old.key ^ old.payload[2]);
        }
        // A vector grown by pushes, kept in turn (freeing the one it replaces).
        let v = grow_vec(x);
        checksum = checksum.wrapping_add(v.len() as u64);
        vecs[(i as usize) % VEC_RING] = v;
        // A formatted string into a map (an existing key frees the old one).
        let s = format!("user-{:x}/item-{}", x >> 36, i);
        checksum = checksum.wrapping_add(s.len() as u64);
        if let Some(old) = map.insert(x % KEYS, s) {
            checksum = checksum.wrapping_add(old.len() as u64);
        }
    }
    Retained {
        boxes,
        vecs,
        map,
        checksum,
    }
}

// ---------------------------------------------------------------------------
// Child: one timed run.

/// jemalloc modes: that profiling is on exactly in `jemalloc-prof`, at
/// 2^19 bytes; returns fields for the result line.
#[cfg(feature = "jemalloc-bench")]
fn check_jemalloc(mode: Mode) -> Result<String, BoxError> {
    if !matches!(mode, Mode::Jemalloc | Mode::JemallocProf) {
        return Ok(String::new());
    }
    let prof =
        tikv_jemalloc_ctl::profiling::prof::read().map_err(|e| format!("read opt.prof: {e}"))?;
    let lg = tikv_jemalloc_ctl::profiling::lg_prof_sample::read()
        .map_err(|e| format!("read opt.lg_prof_sample: {e}"))?;
    if prof != (mode == Mode::JemallocProf) || (prof && lg != 19) {
        return Err(format!("{}: opt.prof = {prof}, lg_prof_sample = {lg}", mode.label()).into());
    }
    Ok(format!(" jemalloc_prof={prof} lg_prof_sample={lg}"))
}

#[cfg(not(feature = "jemalloc-bench"))]
fn check_jemalloc(_: Mode) -> Result<String, BoxError> {
    Ok(String::new())
}

fn child(expected: &str) -> Result<(), BoxError> {
    let mode = current_mode();
    if mode.label() != expected {
        return Err(format!(
            "{ENV_MODE}={expected}: not a mode of this build (features: jemalloc-bench = {})",
            cfg!(feature = "jemalloc-bench")
        )
        .into());
    }
    let iterations = env_u64("ITERS", 0)?;
    let rss_start = rss_bytes().unwrap_or(0);
    let extra = check_jemalloc(mode)?;

    let parked = Parked::spawn(THREADS, move |i| worker(i as u64 + 1, iterations))?;
    let cpu0 = process_cpu_ns()?;
    let t0 = Instant::now();
    let retained = parked.release_and_join()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = (process_cpu_ns()? - cpu0) as f64 / 1e9;

    // The retention point: everything the workers keep is still live.
    let rss_retained = rss_bytes().unwrap_or(0);
    let glibc = if matches!(mode, Mode::System | Mode::Sampling512k | Mode::Sampling64k) {
        glibc_in_use_bytes()
    } else {
        0
    };
    let stats = firewatch_agent::heap::stats();
    let checksum = retained.iter().fold(0u64, |a, r| {
        let kept = r.boxes.iter().flatten().count() as u64
            + r.vecs.iter().map(|v| v.len() as u64).sum::<u64>()
            + r.map.len() as u64;
        a ^ r.checksum ^ kept
    });
    let peak = peak_rss_bytes().unwrap_or(0);
    let (in_use, allocated) = if mode.sampling() {
        (stats.in_use_bytes, stats.allocated_bytes)
    } else {
        (0, 0)
    };
    println!(
        "RESULT mode={} wall_s={wall_s} cpu_s={cpu_s} checksum={checksum} rss_start={rss_start} \
         rss_retained={rss_retained} peak_rss={peak} glibc_in_use={glibc} in_use={in_use} \
         allocated={allocated} \
         live_samples={} buckets={} slots={} dropped={} dropped_detail={},{},{}{extra}",
        mode.label(),
        stats.live_samples,
        stats.buckets,
        stats.region_slots_used,
        stats.dropped.no_slot + stats.dropped.no_large_entry + stats.dropped.no_bucket,
        stats.dropped.no_slot,
        stats.dropped.no_large_entry,
        stats.dropped.no_bucket,
    );
    // Exit without freeing the retained heap (not part of the measurement).
    std::mem::forget(retained);
    Ok(())
}

// ---------------------------------------------------------------------------
// Parent: calibrate, run the rounds, report.

#[derive(Clone, Debug)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    checksum: u64,
    rss_start: f64,
    rss_retained: f64,
    peak_rss: f64,
    glibc_in_use: f64,
    in_use: f64,
    allocated: f64,
    live_samples: f64,
    buckets: f64,
    slots: f64,
    dropped: f64,
}

fn run(mode: Mode, iterations: u64) -> Result<Run, BoxError> {
    let mut env = mode.child_env();
    env.push(("ITERS", iterations.to_string()));
    let f = run_child(&env)?;
    Ok(Run {
        wall_s: field(&f, "wall_s")?,
        cpu_s: field(&f, "cpu_s")?,
        checksum: field(&f, "checksum")?,
        rss_start: field(&f, "rss_start")?,
        rss_retained: field(&f, "rss_retained")?,
        peak_rss: field(&f, "peak_rss")?,
        glibc_in_use: field(&f, "glibc_in_use")?,
        in_use: field(&f, "in_use")?,
        allocated: field(&f, "allocated")?,
        live_samples: field(&f, "live_samples")?,
        buckets: field(&f, "buckets")?,
        slots: field(&f, "slots")?,
        dropped: field(&f, "dropped")?,
    })
}

fn modes() -> Result<Vec<Mode>, BoxError> {
    match std::env::var("MODES") {
        Ok(list) => list
            .split(',')
            .map(|l| match Mode::from_label(l.trim().as_bytes()) {
                Mode::Invalid => Err(format!("MODES: {l:?} is not a mode of this build").into()),
                m => Ok(m),
            })
            .collect(),
        Err(_) => Ok(ALL_MODES.into_iter().filter(|m| m.available()).collect()),
    }
}

fn pct(ratio: f64) -> String {
    format!("{:+.2}%", (ratio - 1.0) * 100.0)
}

fn main() -> Result<(), BoxError> {
    if let Ok(expected) = std::env::var(ENV_MODE) {
        return child(&expected);
    }
    let rounds = env_u64("ROUNDS", 7)? as usize;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let modes = modes()?;
    let target_ms = env_u64("WORKLOAD_MS", 1500)?;
    let iterations = match std::env::var("ITERS") {
        Ok(_) => env_u64("ITERS", 0)?,
        Err(_) => {
            // Three probes with glibc; the fastest one scales.
            const PROBE: u64 = 1_000_000;
            let best = (0..3)
                .map(|_| run(Mode::System, PROBE).map(|r| r.wall_s))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .fold(f64::INFINITY, f64::min);
            ((target_ms as f64 / 1e3 / best) * PROBE as f64) as u64
        }
    };

    println!("# Heap sampling overhead\n");
    print!("{}", machine_info());
    println!(
        "- workload: {THREADS} threads × {iterations} operations (calibrated to ~{target_ms} ms \
         with glibc), {rounds} rounds, modes: {}\n",
        modes
            .iter()
            .map(|m| m.label())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
    let mut checksum = None;
    // Warm-up (page cache, CPU frequency), discarded.
    run(modes[0], iterations)?;
    for r in 0..rounds {
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let mode = modes[i];
            let result = run(mode, iterations)?;
            match checksum {
                Some(c) if c != result.checksum => {
                    return Err(format!("checksum changed in a {} run", mode.label()).into())
                }
                _ => checksum = Some(result.checksum),
            }
            eprintln!(
                "round {r} {:<24} wall {:.4} s cpu {:.4} s rss {:.1} MiB peak {:.1} MiB",
                mode.label(),
                result.wall_s,
                result.cpu_s,
                mib(result.rss_retained),
                mib(result.peak_rss)
            );
            runs[i].push(result);
        }
    }

    let col = |i: usize, f: fn(&Run) -> f64| runs[i].iter().map(f).collect::<Vec<f64>>();
    let index = |m: Mode| modes.iter().position(|&x| x == m);

    println!(
        "| mode | baseline | median wall s | min | max | wall vs baseline (medians) | \
         wall vs baseline (paired median) | median CPU s | CPU vs baseline (medians) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &mode) in modes.iter().enumerate() {
        let wall = col(i, |r| r.wall_s);
        let cpu = col(i, |r| r.cpu_s);
        let (vs_wall, vs_paired, vs_cpu, base_label) = match index(mode.baseline()) {
            Some(b) if b != i => {
                let bw = col(b, |r| r.wall_s);
                let bc = col(b, |r| r.cpu_s);
                let paired: Vec<f64> = wall.iter().zip(&bw).map(|(p, b)| p / b).collect();
                (
                    pct(median(&wall) / median(&bw)),
                    pct(median(&paired)),
                    pct(median(&cpu) / median(&bc)),
                    mode.baseline().label(),
                )
            }
            _ => ("—".into(), "—".into(), "—".into(), "—"),
        };
        println!(
            "| {} | {base_label} | {:.4} | {:.4} | {:.4} | {vs_wall} | {vs_paired} | {:.4} | {vs_cpu} |",
            mode.label(),
            median(&wall),
            min(&wall),
            max(&wall),
            median(&cpu),
        );
    }

    // The live heap: the sampling allocator's exact counter (requested
    // bytes), the same in every mode since the workload is deterministic.
    let sampled = modes
        .iter()
        .enumerate()
        .find(|(_, m)| m.sampling())
        .map(|(i, _)| {
            (
                median(&col(i, |r| r.in_use)),
                median(&col(i, |r| r.allocated)),
            )
        });
    let live = sampled.map(|(live, _)| live);
    match sampled {
        Some((live, allocated)) => println!(
            "\nBytes allocated per run (the sampling allocator's counter): {:.2} GiB, \
             {:.0} bytes per operation.\n\nMemory at the retention point (medians; live heap = \
             the sampling allocator's in-use counter, {:.1} MiB):\n",
            allocated / (1u64 << 30) as f64,
            allocated / (THREADS as f64 * iterations as f64),
            mib(live)
        ),
        None => println!("\nMemory at the retention point (medians; no sampling mode run):\n"),
    }
    println!(
        "| mode | RSS at start MiB | RSS retained MiB | Δ RSS vs baseline MiB | Δ as % of live heap | \
         peak RSS MiB | Δ peak vs baseline MiB | glibc in use MiB | live samples | buckets | \
         region slots used | dropped |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &mode) in modes.iter().enumerate() {
        let rss = median(&col(i, |r| r.rss_retained));
        let peak = median(&col(i, |r| r.peak_rss));
        let (d_rss, d_pct, d_peak) = match index(mode.baseline()) {
            Some(b) if b != i => {
                let d = rss - median(&col(b, |r| r.rss_retained));
                let dp = peak - median(&col(b, |r| r.peak_rss));
                (
                    format!("{:+.1}", mib(d)),
                    live.map_or("—".into(), |l| format!("{:+.2}%", d / l * 100.0)),
                    format!("{:+.1}", mib(dp)),
                )
            }
            _ => ("—".into(), "—".into(), "—".into()),
        };
        let glibc = median(&col(i, |r| r.glibc_in_use));
        let sampling_stat = |f: fn(&Run) -> f64| {
            if mode.sampling() {
                format!("{:.0}", median(&col(i, f)))
            } else {
                "—".into()
            }
        };
        println!(
            "| {} | {:.1} | {:.1} | {d_rss} | {d_pct} | {:.1} | {d_peak} | {} | {} | {} | {} | {} |",
            mode.label(),
            mib(median(&col(i, |r| r.rss_start))),
            mib(rss),
            mib(peak),
            if glibc > 0.0 {
                format!("{:.1}", mib(glibc))
            } else {
                "—".into()
            },
            sampling_stat(|r| r.live_samples),
            sampling_stat(|r| r.buckets),
            sampling_stat(|r| r.slots),
            sampling_stat(|r| r.dropped),
        );
    }
    Ok(())
}
