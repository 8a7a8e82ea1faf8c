//! The CPU sampler against an independent reference: the process's CPU time
//! from `getrusage` over the same window.

use std::hint::black_box;
use std::time::{Duration, Instant};

use firewatch_agent::cpu::CpuProfiler;

fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[inline(never)]
fn burn(until: Instant) -> u64 {
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
    }
    x
}

#[test]
fn cpu_time_in_the_profile_matches_getrusage() {
    for (hz, threads) in [(100, 2), (1000, 1)] {
        let before = process_cpu();
        let profiler = CpuProfiler::start(hz).unwrap();
        let until = Instant::now() + Duration::from_millis(1500);
        let workers: Vec<_> = (0..threads)
            .map(|_| std::thread::spawn(move || burn(until)))
            .collect();
        burn(until);
        for w in workers {
            w.join().unwrap();
        }
        let capture = profiler.stop_raw().unwrap();
        let used = process_cpu() - before;
        let ratio = capture.cpu_ns as f64 / used.as_nanos() as f64;
        eprintln!(
            "{hz} Hz, {} busy threads: profile {:.3}s, getrusage {:.3}s, ratio {ratio:.3}; {} samples, {} dropped ns, {} unwalked, {} truncated",
            threads + 1,
            capture.cpu_ns as f64 / 1e9,
            used.as_secs_f64(),
            capture.samples,
            capture.dropped_ns,
            capture.unwalked,
            capture.truncated
        );
        assert!((0.9..=1.05).contains(&ratio), "ratio {ratio}");
    }
}
