//! The sampler under a hostile workload: 8 threads that allocate, lock,
//! format, spawn and join short-lived threads, profiled at 1000 Hz for 30 s
//! (`FIREWATCH_STRESS_SECS` changes the length). It must not crash or
//! deadlock, and must lose no more than 1% of samples.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firewatch_agent::cpu::CpuProfiler;

fn churn(stop: &AtomicBool, shared: &Mutex<HashMap<u64, String>>, ops: &AtomicU64, id: u64) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let text = format!("thread {id} op {i} {:?}", vec![i; (i % 64) as usize]);
        let mut boxed: Vec<Box<[u8]>> = (0..8)
            .map(|n| vec![n as u8; 16 + (i as usize % 4096)].into())
            .collect();
        boxed.retain(|b| b.len() % 3 != 0);
        {
            let mut map = shared.lock().unwrap();
            map.insert(i % 1024, text);
            if map.len() > 512 {
                map.retain(|k, _| k % 2 == i % 2);
            }
        }
        if i % 2000 == 0 {
            let spawned =
                std::thread::spawn(move || (0..10_000u64).map(|x| x.wrapping_mul(x)).sum::<u64>());
            std::hint::black_box(spawned.join().unwrap());
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn eight_churning_threads_at_1000_hz() {
    let secs: u64 = std::env::var("FIREWATCH_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let done = Arc::new(AtomicBool::new(false));
    let watchdog_done = done.clone();
    // A deadlock must fail the test, not hang CI.
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(secs + 120);
        while Instant::now() < deadline {
            if watchdog_done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("stress test did not finish: deadlock?");
        std::process::abort();
    });

    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(HashMap::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let profiler = CpuProfiler::start(1000).unwrap();
    let workers: Vec<_> = (0..8)
        .map(|id| {
            let (stop, shared, ops) = (stop.clone(), shared.clone(), ops.clone());
            std::thread::Builder::new()
                .name(format!("churn-{id}"))
                .spawn(move || churn(&stop, &shared, &ops, id))
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let capture = profiler.stop_raw().unwrap();
    done.store(true, Ordering::Relaxed);

    let lost = capture.dropped_ns as f64 / (capture.cpu_ns + capture.dropped_ns).max(1) as f64;
    eprintln!(
        "{secs}s: {} ops, {} samples, {:.2}s CPU profiled, {:.3}% lost, {} truncated, {} unwalked, {} threads seen, {} timer failures",
        ops.load(Ordering::Relaxed),
        capture.samples,
        capture.cpu_ns as f64 / 1e9,
        lost * 100.0,
        capture.truncated,
        capture.unwalked,
        capture.threads_seen,
        capture.timer_failures,
    );
    assert!(
        ops.load(Ordering::Relaxed) > 1000,
        "the workload made progress"
    );
    assert!(capture.samples > 100 * secs, "samples were taken");
    assert!(lost <= 0.01, "lost {:.3}% of samples", lost * 100.0);
    assert!(
        capture.threads_seen >= 9,
        "the churn threads and the short-lived ones were seen"
    );
}
