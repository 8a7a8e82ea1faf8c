//! Throughput cost of CPU profiling: a fixed, deterministic CPU-bound
//! workload (2 threads, each a fixed number of splitmix64/hash rounds, sized
//! to about 1.5 s at start-up), timed (a) unprofiled, (b) under firewatch at
//! 100 Hz, (c) under pprof-rs 0.15 at 100 Hz.
//!
//! Both profilers own SIGPROF and pprof-rs sets it to SIG_IGN when it stops
//! (firewatch installs its handler once per process), so all firewatch runs
//! come before any pprof-rs run. The runs go in two phases, each with its
//! own unprofiled baseline, interleaved A/B then B/A in alternate rounds so
//! drift hits both sides evenly:
//!
//! - phase 1: unprofiled and firewatch;
//! - phase 2: unprofiled and pprof-rs.
//!
//! Each run spawns the workers parked on a barrier, starts the profiler,
//! waits `SETTLE_MS` idle, then times from releasing the workers until they
//! are joined: wall clock and process CPU time (`getrusage`, user + system;
//! it includes the profiler's own thread and signal handlers). Stopping the
//! profiler (firewatch `stop_raw`, pprof-rs `report().build()`, which
//! symbolizes) is outside the timing and reported separately.
//!
//! ```text
//! cargo bench --bench cpu_overhead
//! ROUNDS=15 cargo bench --bench cpu_overhead
//! ```
//!
//! Env: `ROUNDS` (default 7), `HZ` (100), `WORKLOAD_MS` (1500, the target for
//! calibration), `ITERS` (iterations per thread, skips calibration),
//! `SETTLE_MS` (60). Exits non-zero only on harness errors.

mod common;

use std::time::{Duration, Instant};

use common::{
    calibrate, env_u64, finish_pprof_rs, machine_info, max, median, min, process_cpu_ns, settle,
    worker, BoxError, Parked,
};
use firewatch_agent::cpu::CpuProfiler;

const THREADS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Unprofiled,
    Firewatch,
    Pprof,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Unprofiled => "unprofiled",
            Mode::Firewatch => "firewatch",
            Mode::Pprof => "pprof-rs",
        }
    }
}

/// One timed run.
#[derive(Clone)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    /// Samples in the profile (0 unprofiled).
    samples: u64,
    /// CPU time the profile accounts for / getrusage CPU time (profiled runs).
    coverage: f64,
    /// Time to stop the profiler and get its data.
    teardown_ms: f64,
    checksum: u64,
}

fn run(mode: Mode, iterations: u64, hz: u32) -> Result<Run, BoxError> {
    let parked = Parked::spawn(THREADS, move |i| worker(i as u64 + 1, iterations))?;
    enum Active {
        None,
        Firewatch(CpuProfiler),
        Pprof(pprof::ProfilerGuard<'static>),
    }
    let active = match mode {
        Mode::Unprofiled => Active::None,
        Mode::Firewatch => Active::Firewatch(
            CpuProfiler::start(hz).map_err(|e| format!("firewatch start({hz}): {e}"))?,
        ),
        Mode::Pprof => Active::Pprof(
            pprof::ProfilerGuardBuilder::default()
                .frequency(hz as i32)
                .build()
                .map_err(|e| format!("pprof-rs build({hz}): {e}"))?,
        ),
    };
    std::thread::sleep(settle()?);
    let cpu0 = process_cpu_ns()?;
    let t0 = Instant::now();
    let results = parked.release_and_join()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_ns = process_cpu_ns()? - cpu0;
    let t1 = Instant::now();
    let (samples, profiled_ns) = match active {
        Active::None => (0, 0.0),
        Active::Firewatch(profiler) => {
            let capture = profiler
                .stop_raw()
                .map_err(|e| format!("firewatch stop_raw: {e}"))?;
            (capture.samples, capture.cpu_ns as f64)
        }
        Active::Pprof(guard) => {
            let samples = finish_pprof_rs(guard)?;
            (samples, samples as f64 * 1e9 / f64::from(hz))
        }
    };
    let teardown_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(Run {
        wall_s,
        cpu_s: cpu_ns as f64 / 1e9,
        samples,
        coverage: profiled_ns / cpu_ns as f64,
        teardown_ms,
        checksum: results.iter().fold(0, |a, &r| a ^ r),
    })
}

/// Runs one phase: `rounds` pairs of (unprofiled, `mode`), order alternating.
fn phase(
    mode: Mode,
    rounds: usize,
    iterations: u64,
    hz: u32,
    checksum: &mut Option<u64>,
) -> Result<(Vec<Run>, Vec<Run>), BoxError> {
    let (mut base, mut profiled) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [Mode::Unprofiled, mode]
        } else {
            [mode, Mode::Unprofiled]
        };
        for m in order {
            let result = run(m, iterations, hz)?;
            match checksum {
                Some(c) if *c != result.checksum => {
                    return Err(format!("checksum changed in a {} run", m.label()).into())
                }
                _ => *checksum = Some(result.checksum),
            }
            eprintln!(
                "round {r} {:<10} wall {:.4} s cpu {:.4} s samples {}",
                m.label(),
                result.wall_s,
                result.cpu_s,
                result.samples
            );
            if m == Mode::Unprofiled {
                base.push(result);
            } else {
                profiled.push(result);
            }
        }
    }
    Ok((base, profiled))
}

fn pct(value: f64, base: f64) -> String {
    format!("{:+.2}%", (value / base - 1.0) * 100.0)
}

fn print_phase(name: &str, base: &[Run], profiled: &[Run], mode: Mode) {
    let wall = |runs: &[Run]| runs.iter().map(|r| r.wall_s).collect::<Vec<_>>();
    let cpu = |runs: &[Run]| runs.iter().map(|r| r.cpu_s).collect::<Vec<_>>();
    let (bw, pw, bc, pc) = (wall(base), wall(profiled), cpu(base), cpu(profiled));
    let paired_wall: Vec<f64> = bw.iter().zip(&pw).map(|(b, p)| p / b - 1.0).collect();
    let paired_cpu: Vec<f64> = bc.iter().zip(&pc).map(|(b, p)| p / b - 1.0).collect();
    for (label, w, c) in [
        (Mode::Unprofiled.label(), &bw, &bc),
        (mode.label(), &pw, &pc),
    ] {
        let is_base = label == Mode::Unprofiled.label();
        println!(
            "| {name} | {label} | {:.4} | {:.4} | {:.4} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} |",
            median(w),
            min(w),
            max(w),
            if is_base { "—".into() } else { pct(median(w), median(&bw)) },
            if is_base {
                "—".into()
            } else {
                format!("{:+.2}%", median(&paired_wall) * 100.0)
            },
            median(c),
            min(c),
            max(c),
            if is_base {
                "—".into()
            } else {
                format!("{:+.4} s ({})", median(c) - median(&bc), pct(median(c), median(&bc)))
            },
            if is_base {
                "—".into()
            } else {
                format!("{:+.2}%", median(&paired_cpu) * 100.0)
            },
        );
    }
}

fn main() -> Result<(), BoxError> {
    let rounds = env_u64("ROUNDS", 7)? as usize;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let hz = u32::try_from(env_u64("HZ", 100)?)?;
    let target = Duration::from_millis(env_u64("WORKLOAD_MS", 1500)?);
    let iterations = match std::env::var("ITERS") {
        Ok(_) => env_u64("ITERS", 0)?,
        Err(_) => calibrate(target),
    };

    println!("# CPU profiling overhead\n");
    print!("{}", machine_info());
    println!(
        "- workload: {THREADS} threads × {iterations} splitmix64 rounds (calibrated to ~{} ms), \
         {rounds} rounds per phase, {hz} Hz, settle {} ms\n",
        target.as_millis(),
        settle()?.as_millis()
    );

    let mut checksum = None;
    // Warm-up, discarded.
    run(Mode::Unprofiled, iterations, hz)?;
    let (base1, fw) = phase(Mode::Firewatch, rounds, iterations, hz, &mut checksum)?;
    let (base2, pp) = phase(Mode::Pprof, rounds, iterations, hz, &mut checksum)?;

    println!(
        "| phase | mode | median wall s | min wall s | max wall s | wall overhead (medians) | \
         wall overhead (paired median) | median CPU s | min CPU s | max CPU s | CPU overhead (medians) | \
         CPU overhead (paired median) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    print_phase("1", &base1, &fw, Mode::Firewatch);
    print_phase("2", &base2, &pp, Mode::Pprof);

    println!("\nProfiler side (medians over the profiled runs):\n");
    println!("| profiler | samples | profiled CPU / getrusage CPU | teardown ms |");
    println!("|---|---:|---:|---:|");
    for (mode, runs) in [(Mode::Firewatch, &fw), (Mode::Pprof, &pp)] {
        let samples: Vec<f64> = runs.iter().map(|r| r.samples as f64).collect();
        let coverage: Vec<f64> = runs.iter().map(|r| r.coverage).collect();
        let teardown: Vec<f64> = runs.iter().map(|r| r.teardown_ms).collect();
        println!(
            "| {} | {:.0} | {:.4} | {:.1} |",
            mode.label(),
            median(&samples),
            median(&coverage),
            median(&teardown)
        );
    }
    println!(
        "\nTeardown: firewatch `stop_raw` (no symbolization) vs pprof-rs `report().build()` \
         (symbolizes); not like for like."
    );
    Ok(())
}
