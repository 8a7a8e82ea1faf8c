//! The CPU sampler against an independent reference: the process's CPU
//! clock (`CLOCK_PROCESS_CPUTIME_ID`, the clock `getrusage` sums) over the
//! profile's window.
//!
//! The work is measured in CPU time, not wall time, and the tolerance comes
//! from how the sampler can miss CPU, not from the machine: each thread may
//! lose what it used after its last signal (less than one period), so the
//! test runs until those tails are at most 1% of the CPU used.

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
        let tails = workers as u32 + 3;
        let target = (period * tails * 100).max(Duration::from_secs(1));

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

        // Samples lost to a full ring are in the profile too, as their own frame.
        let profiled = capture.cpu_ns + capture.dropped_ns;
        let ratio = profiled as f64 / used.as_nanos() as f64;
        let tail = (period * tails).as_secs_f64() / used.as_secs_f64();
        let (low, high) = (1.0 - tail - 0.005, 1.0 + 0.005);
        eprintln!(
            "{hz} Hz, {} busy threads: profile {:.3}s, process clock {:.3}s, ratio {ratio:.4} \
             (allowed {low:.4}..={high:.4}); {} samples, {} dropped ns, {} unwalked, {} truncated",
            workers + 1,
            profiled as f64 / 1e9,
            used.as_secs_f64(),
            capture.samples,
            capture.dropped_ns,
            capture.unwalked,
            capture.truncated
        );
        assert!((low..=high).contains(&ratio), "ratio {ratio}");
    }
}
