//! CPU-time accuracy of firewatch's sampler against pprof-rs 0.15.
//!
//! For every rate × busy-thread count, N threads spin in a tight integer
//! loop for a fixed wall window while the main thread waits on `join`. The
//! CPU time a profile accounts for is compared with what `getrusage(RUSAGE_SELF)`
//! (user + system) says the process used over the same window:
//!
//! - firewatch: `CpuCapture::cpu_ns` (samples weighted by 1 + timer overruns;
//!   the CPU no sample stands for, which the profile shows as its own
//!   `[firewatch: unsampled]` frame, is reported beside it, not added);
//! - pprof-rs: Σ sample counts × 1e9 / hz, which is what pprof-rs writes as
//!   `cpu/nanoseconds`.
//!
//! The measured window runs from just after the profiler has started (and
//! settled, see `SETTLE_MS`) until the workers have been joined; profiler
//! start-up and the report/stop that follows are outside it on both sides
//! (pprof-rs symbolizes in `report().build()` while its timer still runs).
//! Workers are created before the profiler starts and parked on a barrier,
//! unless `SPAWN=inside`, which spawns them inside the window, after the
//! profiler has started (this exercises firewatch's thread discovery).
//!
//! Both profilers own SIGPROF, so only one runs at a time, and every
//! firewatch cell runs before any pprof-rs cell: pprof-rs sets SIGPROF to
//! SIG_IGN when it stops, and firewatch installs its handler only once per
//! process.
//!
//! ```text
//! cargo bench --bench cpu_accuracy
//! WINDOW_MS=5000 cargo bench --bench cpu_accuracy
//! SPAWN=inside cargo bench --bench cpu_accuracy
//! ```
//!
//! Env: `WINDOW_MS` (default 2000), `SETTLE_MS` (60), `SPAWN` (`before` |
//! `inside`), `HZ` and `THREADS` (comma-separated lists overriding the grid).
//! Exits non-zero only on harness errors, never on missed targets.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{env_u64, finish_pprof_rs, machine_info, process_cpu_ns, settle, BoxError, Parked};
use firewatch_agent::cpu::CpuProfiler;

const DEFAULT_HZ: [u32; 3] = [99, 250, 1000];
const DEFAULT_THREADS: [usize; 4] = [1, 2, 4, 8];
const TARGET: (f64, f64) = (0.97, 1.03);

/// What one profiled cell measured.
#[derive(Default, Clone)]
struct Measured {
    rusage_ns: u64,
    profiled_ns: u64,
    samples: u64,
    /// firewatch only.
    dropped_ns: u64,
    unsampled_ns: u64,
    truncated: u64,
    unwalked: u64,
    threads_seen: usize,
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.profiled_ns as f64 / self.rusage_ns as f64
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Spawn {
    Before,
    Inside,
}

/// Spins until `window` has passed; returns the iteration count.
#[inline(never)]
fn spin(window: Duration) -> u64 {
    let deadline = Instant::now() + window;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut iterations = 0u64;
    loop {
        for _ in 0..65_536 {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        iterations += 65_536;
        if Instant::now() >= deadline {
            return black_box(iterations ^ (x & 1));
        }
    }
}

/// Workers parked before the profiler started, or none for `Spawn::Inside`.
fn prepare(
    threads: usize,
    window: Duration,
    spawn: Spawn,
) -> Result<Option<Parked<u64>>, BoxError> {
    match spawn {
        Spawn::Before => Ok(Some(Parked::spawn(threads, move |_| spin(window))?)),
        Spawn::Inside => Ok(None),
    }
}

/// Runs the busy threads for `window` (releasing the parked ones, or
/// spawning them now) and returns the process CPU time used from just before
/// they start until all of them have been joined.
fn busy_window(
    parked: Option<Parked<u64>>,
    threads: usize,
    window: Duration,
) -> Result<u64, BoxError> {
    let cpu0 = process_cpu_ns()?;
    match parked {
        Some(parked) => {
            parked.release_and_join()?;
        }
        None => {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    std::thread::Builder::new()
                        .name(format!("busy-{i}"))
                        .spawn(move || spin(window))
                })
                .collect::<Result<_, _>>()?;
            for h in handles {
                h.join().map_err(|_| "a workload thread panicked")?;
            }
        }
    }
    Ok(process_cpu_ns()? - cpu0)
}

fn firewatch_cell(
    hz: u32,
    threads: usize,
    window: Duration,
    spawn: Spawn,
) -> Result<Measured, BoxError> {
    let parked = prepare(threads, window, spawn)?;
    let profiler = CpuProfiler::start(hz).map_err(|e| format!("firewatch start({hz}): {e}"))?;
    std::thread::sleep(settle()?);
    let rusage_ns = busy_window(parked, threads, window)?;
    let capture = profiler
        .stop_raw()
        .map_err(|e| format!("firewatch stop_raw: {e}"))?;
    Ok(Measured {
        rusage_ns,
        profiled_ns: capture.cpu_ns,
        samples: capture.samples,
        dropped_ns: capture.dropped_ns,
        unsampled_ns: capture.unsampled_ns,
        truncated: capture.truncated,
        unwalked: capture.unwalked,
        threads_seen: capture.threads_seen,
    })
}

fn pprof_cell(
    hz: u32,
    threads: usize,
    window: Duration,
    spawn: Spawn,
) -> Result<Measured, BoxError> {
    let parked = prepare(threads, window, spawn)?;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz as i32)
        .build()
        .map_err(|e| format!("pprof-rs build({hz}): {e}"))?;
    std::thread::sleep(settle()?);
    let rusage_ns = busy_window(parked, threads, window)?;
    // Stops the timer and sets SIGPROF to SIG_IGN before the next cell.
    let samples = finish_pprof_rs(guard)?;
    let period_ns = 1e9 / f64::from(hz);
    Ok(Measured {
        rusage_ns,
        profiled_ns: (samples as f64 * period_ns).round() as u64,
        samples,
        ..Measured::default()
    })
}

/// A comma-separated list from the environment, or `default` when unset.
fn list<T>(name: &str, default: &[T]) -> Result<Vec<T>, BoxError>
where
    T: std::str::FromStr + Clone,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|e| format!("{name}={v:?}: {e}").into())
            })
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}

fn main() -> Result<(), BoxError> {
    let window = Duration::from_millis(env_u64("WINDOW_MS", 2000)?);
    let spawn = match std::env::var("SPAWN").as_deref() {
        Err(_) | Ok("before") => Spawn::Before,
        Ok("inside") => Spawn::Inside,
        Ok(other) => return Err(format!("SPAWN={other:?}: expected before or inside").into()),
    };
    let rates: Vec<u32> = list("HZ", &DEFAULT_HZ)?;
    let thread_counts: Vec<usize> = list("THREADS", &DEFAULT_THREADS)?;
    let cells: Vec<(u32, usize)> = rates
        .iter()
        .flat_map(|&hz| thread_counts.iter().map(move |&t| (hz, t)))
        .collect();

    println!("# CPU profile accuracy: profiled CPU time / getrusage CPU time\n");
    print!("{}", machine_info());
    println!(
        "- window: {} ms per cell, settle {} ms, workers spawned {}\n",
        window.as_millis(),
        settle()?.as_millis(),
        match spawn {
            Spawn::Before => "before the profiler starts (parked on a barrier)",
            Spawn::Inside => "inside the window, after the profiler started",
        }
    );

    // All firewatch cells first: see the module docs.
    let mut firewatch = Vec::with_capacity(cells.len());
    for &(hz, threads) in &cells {
        let m = firewatch_cell(hz, threads, window, spawn)?;
        eprintln!(
            "firewatch {hz:>4} Hz {threads} thr: ratio {:.4} ({} samples)",
            m.ratio(),
            m.samples
        );
        firewatch.push(m);
    }
    let mut pprof = Vec::with_capacity(cells.len());
    for &(hz, threads) in &cells {
        let m = pprof_cell(hz, threads, window, spawn)?;
        eprintln!(
            "pprof-rs  {hz:>4} Hz {threads} thr: ratio {:.4} ({} samples)",
            m.ratio(),
            m.samples
        );
        pprof.push(m);
    }

    println!("| hz | threads | firewatch ratio | pprof-rs ratio | firewatch samples | pprof-rs samples |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, &(hz, threads)) in cells.iter().enumerate() {
        println!(
            "| {hz} | {threads} | {:.4} | {:.4} | {} | {} |",
            firewatch[i].ratio(),
            pprof[i].ratio(),
            firewatch[i].samples,
            pprof[i].samples
        );
    }

    println!("\nDetails (CPU seconds by getrusage over each window; firewatch diagnostics):\n");
    println!("| hz | threads | fw rusage s | fw profiled s | fw dropped ms | fw unsampled ms | fw truncated | fw unwalked | fw threads seen | fw samples/s/CPU-s | pprof rusage s | pprof profiled s | pprof samples/CPU-s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, &(hz, threads)) in cells.iter().enumerate() {
        let (f, p) = (&firewatch[i], &pprof[i]);
        println!(
            "| {hz} | {threads} | {:.3} | {:.3} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.1} |",
            f.rusage_ns as f64 / 1e9,
            f.profiled_ns as f64 / 1e9,
            f.dropped_ns as f64 / 1e6,
            f.unsampled_ns as f64 / 1e6,
            f.truncated,
            f.unwalked,
            f.threads_seen,
            f.samples as f64 / (f.rusage_ns as f64 / 1e9),
            p.rusage_ns as f64 / 1e9,
            p.profiled_ns as f64 / 1e9,
            p.samples as f64 / (p.rusage_ns as f64 / 1e9),
        );
    }

    let misses: Vec<String> = cells
        .iter()
        .zip(&firewatch)
        .filter(|(_, m)| !(TARGET.0..=TARGET.1).contains(&m.ratio()))
        .map(|(&(hz, t), m)| format!("{hz} Hz × {t} threads: {:.4}", m.ratio()))
        .collect();
    let (lo, hi) = firewatch
        .iter()
        .map(Measured::ratio)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
    println!();
    if misses.is_empty() {
        println!(
            "**firewatch: all {} cells within {:.2}–{:.2}** (range {lo:.4}–{hi:.4}).",
            cells.len(),
            TARGET.0,
            TARGET.1
        );
    } else {
        println!(
            "**firewatch: {} of {} cells outside {:.2}–{:.2}** (range {lo:.4}–{hi:.4}): {}.",
            misses.len(),
            cells.len(),
            TARGET.0,
            TARGET.1,
            misses.join("; ")
        );
    }
    Ok(())
}
