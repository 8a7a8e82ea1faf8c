//! What the agent's CPU look-back (`lookback`) costs a service: CPU while
//! it samples between captures, and the memory of its windows.
//!
//! **CPU**: a fixed, deterministic CPU-bound workload (2 threads, a fixed
//! number of splitmix64 rounds each, sized to about `WORKLOAD_MS` at
//! start-up) runs under an agent without look-back (the baseline) and under
//! one with `lookback(30 s)` at `lookback_hz` (`HZ`, default 19), in
//! alternate order each round. Each run starts its agent with the workers
//! already parked (so the look-back sampler arms their timers at once, as
//! it does for a service's long-lived threads), burns `WARMUP_MS` of CPU
//! on the main thread (the sampler's first samples copy the modules'
//! unwind tables: a once-per-process cost), then times from releasing the
//! workers until they are joined: the process's CPU (`getrusage`, user +
//! system: the sampler thread and the signal handlers included) and, with
//! look-back, the `firewatch-cpu` thread's own CPU clock. The report gives
//! the paired ratio (look-back / baseline, each run against the baseline
//! beside it) as a median with min–max, and the sampler thread's share.
//!
//! **Memory**: the look-back windows filled with synthetic stacks (32
//! frames, 8 threads) through `firewatch_agent::testing::LookbackHistory`:
//! 60 one-second windows holding 10,000 distinct stacks in all, without a
//! limit and within the default 4 MiB; and every window holding the same
//! 10,000 stacks (600,000 entries) within 4 MiB. For each, the windows'
//! own estimate (what `lookback_memory_limit` is checked against), what
//! glibc's malloc holds more (`mallinfo2`), RSS added, and the time to copy
//! every window as a capture does when it begins.
//!
//! ```text
//! cargo bench --bench lookback
//! ROUNDS=15 WORKLOAD_MS=3000 cargo bench --bench lookback
//! ```
//!
//! Env: `ROUNDS` (default 9), `HZ` (19), `WORKLOAD_MS` (2000), `WARMUP_MS`
//! (300), `STACKS` (10000), `WINDOWS` (60), `DEPTH` (32). Exits non-zero
//! only on harness errors.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{
    calibrate, env_u64, glibc_in_use_bytes, machine_info, max, median, mib, min, process_cpu_ns,
    rss_bytes, worker, BoxError, Parked,
};
use firewatch_agent::testing::LookbackHistory;
use firewatch_agent::Agent;

const THREADS: usize = 2;
/// The default `lookback_memory_limit`.
const DEFAULT_LIMIT: usize = 4 << 20;

/// The CPU clock of this process's thread named `name`, if there is one
/// (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, readable for any thread of
/// the process).
fn thread_cpu_ns(name: &str) -> Option<u64> {
    let tid: libc::pid_t = std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()?;
    let clock = ((!tid) << 3) | 6;
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    (unsafe { libc::clock_gettime(clock, &mut t) } == 0)
        .then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// One timed run of the workload under an agent, with or without look-back.
struct Run {
    cpu_s: f64,
    wall_s: f64,
    /// The look-back sampler thread's CPU over the timed part.
    sampler_s: f64,
}

fn run(lookback: bool, hz: u32, iterations: u64, warmup: Duration) -> Result<Run, BoxError> {
    let dir = tempfile::tempdir()?;
    let parked = Parked::spawn(THREADS, move |i| worker(i as u64 + 1, iterations))?;
    let agent = Agent::builder()
        .output_dir(dir.path())
        .signal(None)
        .cpu_threshold_percent(None)
        .rss_threshold_percent(None)
        .lookback(lookback.then_some(Duration::from_secs(30)))
        .lookback_hz(hz)
        .start()
        .map_err(|e| format!("agent: {e}"))?;
    let until = Instant::now() + warmup;
    let mut x = 0u64;
    while Instant::now() < until {
        x = black_box(worker(x, 10_000));
    }
    let sampler0 = thread_cpu_ns("firewatch-cpu").unwrap_or(0);
    let cpu0 = process_cpu_ns()?;
    let t0 = Instant::now();
    let results = parked.release_and_join()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_ns = process_cpu_ns()? - cpu0;
    let sampler_ns = thread_cpu_ns("firewatch-cpu").unwrap_or(0) - sampler0;
    if lookback && sampler0 == 0 {
        return Err("look-back on, but no firewatch-cpu thread".into());
    }
    black_box(results);
    drop(agent);
    Ok(Run {
        cpu_s: cpu_ns as f64 / 1e9,
        wall_s,
        sampler_s: sampler_ns as f64 / 1e9,
    })
}

fn cpu_part(rounds: usize, hz: u32, iterations: u64, warmup: Duration) -> Result<(), BoxError> {
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for lookback in order {
            let result = run(lookback, hz, iterations, warmup)?;
            eprintln!(
                "round {r} {:<11} cpu {:.4} s wall {:.4} s sampler {:.5} s",
                if lookback { "look-back" } else { "baseline" },
                result.cpu_s,
                result.wall_s,
                result.sampler_s
            );
            if lookback {
                with.push(result);
            } else {
                base.push(result);
            }
        }
    }
    let cpu = |runs: &[Run]| runs.iter().map(|r| r.cpu_s).collect::<Vec<_>>();
    let (bc, wc) = (cpu(&base), cpu(&with));
    let paired: Vec<f64> = bc.iter().zip(&wc).map(|(b, w)| w / b - 1.0).collect();
    let sampler_share: Vec<f64> = with.iter().map(|r| r.sampler_s / r.cpu_s).collect();
    let sampler_per_s: Vec<f64> = with.iter().map(|r| r.sampler_s / r.wall_s).collect();
    println!("## CPU: the look-back sampler at {hz} Hz\n");
    println!(
        "| | baseline CPU s (median, min–max) | look-back CPU s (median, min–max) | \
         look-back / baseline, paired (median, min–max) | sampler thread / process CPU \
         (median, min–max) | sampler thread, % of a core |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {rounds} rounds | {:.4} ({:.4}–{:.4}) | {:.4} ({:.4}–{:.4}) | {:+.2}% ({:+.2}% to {:+.2}%) | \
         {:.3}% ({:.3}–{:.3}%) | {:.3}% |",
        median(&bc),
        min(&bc),
        max(&bc),
        median(&wc),
        min(&wc),
        max(&wc),
        median(&paired) * 100.0,
        min(&paired) * 100.0,
        max(&paired) * 100.0,
        median(&sampler_share) * 100.0,
        min(&sampler_share) * 100.0,
        max(&sampler_share) * 100.0,
        median(&sampler_per_s) * 100.0,
    );
    println!();
    Ok(())
}

fn memory_part(windows: usize, stacks: usize, depth: usize) -> Result<(), BoxError> {
    println!("## Memory: {windows} one-second windows, {depth}-frame stacks\n");
    println!(
        "| windows hold | limit | windows kept (dropped) | entries | estimate MiB | malloc \
         MiB | RSS MiB | copy at a capture's start |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let spread = stacks.div_ceil(windows);
    let cases: [(String, usize, bool, Option<usize>); 3] = [
        (
            format!("{stacks} distinct stacks in all ({spread} a window)"),
            spread,
            true,
            None,
        ),
        (
            format!("{stacks} distinct stacks in all ({spread} a window)"),
            spread,
            true,
            Some(DEFAULT_LIMIT),
        ),
        (
            format!("the same {stacks} stacks each"),
            stacks,
            false,
            Some(DEFAULT_LIMIT),
        ),
    ];
    for (what, per_window, distinct, limit) in cases {
        // SAFETY: malloc_trim has no preconditions; it returns freed memory
        // so the next reading starts from what is in use.
        unsafe { libc::malloc_trim(0) };
        let (rss0, heap0) = (rss_bytes().unwrap_or(0), glibc_in_use_bytes());
        let history = LookbackHistory::fill(
            windows,
            per_window,
            depth,
            distinct,
            limit.unwrap_or(usize::MAX),
        );
        let (rss1, heap1) = (rss_bytes().unwrap_or(0), glibc_in_use_bytes());
        let t = Instant::now();
        let copied = black_box(history.take_all());
        let copy = t.elapsed();
        println!(
            "| {what} | {} | {} ({}) | {} | {:.2} | {:.2} | {:.2} | {:.1} ms ({copied} stacks) |",
            limit.map_or("none".into(), |l| format!("{:.0} MiB", mib(l as f64))),
            history.windows(),
            history.dropped(),
            history.entries(),
            mib(history.estimated_bytes() as f64),
            mib(heap1.saturating_sub(heap0) as f64),
            mib(rss1.saturating_sub(rss0) as f64),
            copy.as_secs_f64() * 1e3,
        );
        drop(history);
    }
    println!();
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let rounds = env_u64("ROUNDS", 9)? as usize;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let hz = u32::try_from(env_u64("HZ", 19)?)?;
    let target = Duration::from_millis(env_u64("WORKLOAD_MS", 2000)?);
    let warmup = Duration::from_millis(env_u64("WARMUP_MS", 300)?);
    let windows = env_u64("WINDOWS", 60)? as usize;
    let stacks = env_u64("STACKS", 10_000)? as usize;
    let depth = env_u64("DEPTH", 32)? as usize;

    println!("# CPU look-back: cost\n");
    print!("{}", machine_info());
    // First, in a heap nothing has used yet.
    memory_part(windows, stacks, depth)?;

    let iterations = calibrate(target);
    println!(
        "- workload: {THREADS} threads × {iterations} splitmix64 rounds (~{} ms each), \
         {rounds} rounds, warm-up {} ms\n",
        target.as_millis(),
        warmup.as_millis()
    );
    // Discarded: the first agent pays for what the process does once.
    run(true, hz, iterations / 4, warmup)?;
    cpu_part(rounds, hz, iterations, warmup)?;
    Ok(())
}
