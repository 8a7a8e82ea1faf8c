//! `fork()` while the CPU sampler runs and other threads allocate through
//! the sampling allocator (issue 5): the child must be able to allocate,
//! run and take a heap snapshot at once (nothing in the allocator is ever
//! locked), must not die of a profiling signal (POSIX timers are not
//! inherited), and the parent's profile must still complete.

use std::alloc::System;
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewatch_agent::cpu::CpuProfiler;
use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 4096);

const FORKS: usize = 10;

/// The child's work: allocate (sampled at 4 KiB, so the slow path runs),
/// burn CPU, take a heap snapshot. Exit code 0 when all of it worked.
fn child() -> i32 {
    let ok = std::panic::catch_unwind(|| {
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 200]).collect();
        common::burn_cpu(Duration::from_millis(50));
        let profile = firewatch_agent::heap::snapshot().ok()?;
        black_box(&blocks);
        (!profile.sample.is_empty()).then_some(())
    });
    match ok {
        Ok(Some(())) => 0,
        _ => 1,
    }
}

#[test]
fn fork_while_profiling_and_allocating() {
    // Parse debug info once here: children inherit it instead of each
    // parsing it again.
    firewatch_agent::heap::snapshot().unwrap();
    let profiler = CpuProfiler::start(1000).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Threads that are inside the allocator (slow paths included) at the
    // moment of a fork.
    let churners: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    kept.push(vec![i as u8; 64 + (i * 37) % 70_000]);
                    if kept.len() > 64 {
                        kept.drain(..32);
                    }
                    i += 1;
                }
            })
        })
        .collect();

    for round in 0..FORKS {
        common::burn_cpu(Duration::from_millis(20));
        // SAFETY: the child only runs code that is safe after fork in a
        // multi-threaded process for this crate's purposes (the allocator
        // is lock-free; glibc's malloc handles fork itself) and leaves with
        // _exit, without running the parent's destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child();
            // SAFETY: ends the child without unwinding into the test harness.
            unsafe { libc::_exit(code) };
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                break status;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("round {round}: the child hung (deadlock after fork?)");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            libc::WIFEXITED(status),
            "round {round}: the child died of signal {}",
            libc::WTERMSIG(status)
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "round {round}");
    }

    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    let profile = profiler.stop().unwrap();
    profile.validate().unwrap();
    let samples: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert!(samples > 0, "the parent's profile has samples");
}

/// A child forked while the parent profiles can start its own profile:
/// nothing of the parent's running profile (its "running" flag, pool,
/// handler count) may carry over. Before the fix the child got
/// "a CPU profile is already running" for good.
#[test]
fn a_child_forked_during_a_profile_can_profile() {
    let profiler = CpuProfiler::start(250).unwrap();
    common::burn_cpu(Duration::from_millis(20));
    // SAFETY: the child runs the agent's own code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match CpuProfiler::start(250) {
            Ok(child_profiler) => {
                common::burn_cpu(Duration::from_millis(200));
                match child_profiler.stop_raw() {
                    Ok(capture) if capture.samples > 0 => 0,
                    Ok(_) => 3,
                    Err(_) => 4,
                }
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child without unwinding into the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "the child died of signal {}",
        libc::WTERMSIG(status)
    );
    let code = libc::WEXITSTATUS(status);
    assert_eq!(
        code, 0,
        "child: 2 = could not start a profile, 3 = no samples, 4 = stop failed"
    );
    let capture = profiler.stop_raw().unwrap();
    assert!(capture.samples > 0);
}
