//! The CPU sampler against an independent reference: the process's CPU
//! clock (`CLOCK_PROCESS_CPUTIME_ID`, the total `getrusage` splits) over the
//! profile's window.
//!
//! Two checks, neither depending on how busy the machine is:
//!
//! - **Bookkeeping**: the profile's total (samples, samples dropped, and the
//!   `[firewatch: unsampled]` remainder) is the process's CPU time over the
//!   window, within 0.5%.
//! - **Sampling**: the samples themselves account for at least 90% of it.
//!   Each thread loses what it used after its last signal (a period plus a
//!   kernel tick when idle; more when the machine is so busy that the kernel
//!   checks its timers late), so the test runs until an idle machine's tails
//!   are 2% of the CPU used; the 0.97–1.03 grid on an idle machine is
//!   `cargo bench --bench cpu_accuracy`'s job, reported in
//!   docs/performance.md. Below 90% the sampler is broken, whatever the load.
//!
//! The work is measured in CPU time, not wall time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{burn_cpu_until, process_cpu};
use firewatch_agent::cpu::CpuProfiler;

#[test]
fn cpu_time_in_the_profile_matches_the_process_cpu_clock() {
    for (hz, workers) in [(100u32, 2usize), (1000, 1)] {
        let period = Duration::from_secs(1) / hz;
        // The busy threads, the profiler's own thread, and slack for one more.
        let threads = workers as u32 + 3;
        let tail = (period + Duration::from_millis(10)) * threads;
        let target = tail * 50;

        // Workers exist before the profile starts (so they have timers from
        // its first moment) and start burning when it has.
        let go = Arc::new(Barrier::new(workers + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (go, stop) = (go.clone(), stop.clone());
                std::thread::spawn(move || {
                    go.wait();
                    burn_cpu_until(Duration::MAX / 2, || stop.load(Ordering::Relaxed))
                })
            })
            .collect();
        let profiler = CpuProfiler::start(hz).unwrap();
        let before = process_cpu();
        go.wait();
        burn_cpu_until(Duration::MAX / 2, || process_cpu() - before >= target);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let used = process_cpu() - before;
        let capture = profiler.stop_raw().unwrap();

        // Samples lost to a full pool are in the profile too, as their own frame.
        let profiled = capture.cpu_ns + capture.dropped_ns;
        let ratio = profiled as f64 / used.as_nanos() as f64;
        let total = (profiled + capture.unsampled_ns) as f64 / used.as_nanos() as f64;
        let idle_tail = tail.as_secs_f64() / used.as_secs_f64();
        eprintln!(
            "{hz} Hz, {} busy threads: samples {:.3}s, process clock {:.3}s, ratio {ratio:.4} \
             (an idle machine's tails allow {:.4}); with the unsampled remainder {total:.4}; {} samples, {} dropped ns, {} unwalked, {} truncated, \
             {} stale, {} incomplete",
            workers + 1,
            profiled as f64 / 1e9,
            used.as_secs_f64(),
            1.0 - idle_tail,
            capture.samples,
            capture.dropped_ns,
            capture.unwalked,
            capture.truncated,
            capture.stale,
            capture.incomplete,
        );
        assert!(
            (0.995..=1.005).contains(&total),
            "profile total / CPU used: {total}"
        );
        assert!(
            (0.9..=1.005).contains(&ratio),
            "samples / CPU used: {ratio}"
        );
    }
}
