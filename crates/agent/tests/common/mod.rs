//! What the agent's tests share: CPU clocks as the reference, and work
//! measured in CPU time rather than wall time, so a busy machine makes a
//! test slower but never changes what it measures.

#![allow(dead_code)] // each test file uses part of this module

use std::hint::black_box;
use std::time::{Duration, SystemTime};

fn clock(id: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    assert_eq!(unsafe { libc::clock_gettime(id, &mut t) }, 0);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time the whole process has used (all threads, live and exited).
pub fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Spins until the calling thread has used `cpu` more CPU time (however
/// long that takes in wall time) or `stop()` says so.
#[inline(never)]
pub fn burn_cpu_until(cpu: Duration, mut stop: impl FnMut() -> bool) -> u64 {
    let until = thread_cpu() + cpu;
    let mut x = 1u64;
    while thread_cpu() < until && !stop() {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7));
        }
    }
    x
}

/// Spins until the calling thread has used `cpu` more CPU time.
pub fn burn_cpu(cpu: Duration) -> u64 {
    burn_cpu_until(cpu, || false)
}

/// A thread's CPU clock at wall time `at`, interpolated between its
/// records of (wall time, CPU clock), taken in order.
pub fn cpu_at(record: &[(SystemTime, Duration)], at: SystemTime) -> Duration {
    let after = record.partition_point(|&(wall, _)| wall <= at);
    if after == 0 {
        return record[0].1;
    }
    if after == record.len() {
        return record[after - 1].1;
    }
    let ((w0, c0), (w1, c1)) = (record[after - 1], record[after]);
    let span = w1.duration_since(w0).unwrap_or_default().as_secs_f64();
    let into = at.duration_since(w0).unwrap_or_default().as_secs_f64();
    let share = if span > 0.0 { into / span } else { 0.0 };
    c0 + (c1 - c0).mul_f64(share.clamp(0.0, 1.0))
}
