//! The CPU sampler's own cost in a process with thousands of threads: the
//! sampler thread lists `/proc/self/task` every 20 ms and tracks every
//! thread (a timer each). `THREADS` threads (default 4,096, 64 KiB stacks)
//! sleep on a barrier while a 100 Hz profile runs for `SECONDS` (10): the
//! threads use no CPU, so what the process uses is the sampler's discovery
//! and bookkeeping (and the main thread's wait). Baseline in the same run:
//! the same process and threads for the same time without a profile.
//!
//! ```text
//! cargo bench --bench many_threads
//! THREADS=1000 SECONDS=5 cargo bench --bench many_threads
//! ```

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{env_u64, machine_info, process_cpu_ns, BoxError};
use firewatch_agent::cpu::CpuProfiler;

fn main() -> Result<(), BoxError> {
    let threads = env_u64("THREADS", 4096)? as usize;
    let seconds = env_u64("SECONDS", 10)?;
    println!("# CPU sampler cost with {threads} threads\n");
    print!("{}", machine_info());

    let release = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let release = release.clone();
            std::thread::Builder::new()
                .name(format!("idle-{i}"))
                .stack_size(64 << 10)
                .spawn(move || {
                    release.wait();
                })
        })
        .collect::<Result<_, _>>()?;

    let window = Duration::from_secs(seconds);
    let measure =
        |profile: bool| -> Result<(f64, Option<firewatch_agent::cpu::CpuCapture>), BoxError> {
            let profiler = if profile {
                Some(CpuProfiler::start(100).map_err(|e| format!("start: {e}"))?)
            } else {
                None
            };
            let cpu0 = process_cpu_ns()?;
            std::thread::sleep(window);
            let cpu = process_cpu_ns()? - cpu0;
            let capture = match profiler {
                Some(p) => Some(p.stop_raw().map_err(|e| format!("stop: {e}"))?),
                None => None,
            };
            Ok((cpu as f64 / 1e9, capture))
        };
    let (idle_cpu, _) = measure(false)?;
    let (profiled_cpu, capture) = measure(true)?;
    let capture = capture.ok_or("no capture")?;
    release.wait();
    for h in handles {
        h.join().map_err(|_| "a thread panicked")?;
    }

    let scans = window.as_secs_f64() / 0.020;
    let extra = profiled_cpu - idle_cpu;
    println!("| | CPU over {seconds} s | % of one core |");
    println!("|---|---:|---:|");
    println!(
        "| {threads} idle threads, no profile (baseline) | {idle_cpu:.3} s | {:.2}% |",
        100.0 * idle_cpu / window.as_secs_f64()
    );
    println!(
        "| same, 100 Hz profile | {profiled_cpu:.3} s | {:.2}% |",
        100.0 * profiled_cpu / window.as_secs_f64()
    );
    println!(
        "\nThe profile's own cost: {extra:.3} s over {seconds} s ({:.2}% of a core), about {:.0} µs per 20 ms round; \
         threads seen {}, not profiled (no slot) {}, timer failures {}.",
        100.0 * extra / window.as_secs_f64(),
        extra * 1e6 / scans,
        capture.threads_seen,
        capture.untracked,
        capture.timer_failures
    );
    Ok(())
}
