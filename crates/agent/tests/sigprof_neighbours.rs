//! Other SIGPROF users in the same process: a handler installed before ours
//! still receives the signals that are not from our timers, and a profiler
//! that displaced ours (pprof-rs sets SIG_IGN when it stops) does not leave
//! later profiles empty.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::burn_cpu;

use firewatch_agent::cpu::CpuProfiler;

static FOREIGN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn foreign_handler(_: libc::c_int) {
    FOREIGN.fetch_add(1, Ordering::SeqCst);
}

fn set_sigprof(handler: usize) {
    // SAFETY: installing a valid handler (or SIG_IGN) with an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn foreign_signals_are_forwarded_and_a_displaced_handler_is_restored() {
    set_sigprof(foreign_handler as *const () as usize);
    let profiler = CpuProfiler::start(250).unwrap();
    burn_cpu(Duration::from_millis(400));
    // SAFETY: a SIGPROF sent by the process itself, not by our timers.
    unsafe { libc::kill(libc::getpid(), libc::SIGPROF) };
    let capture = profiler.stop_raw().unwrap();
    assert!(capture.samples > 20, "{} samples", capture.samples);
    assert!(capture.previous_handler);
    assert!(
        FOREIGN.load(Ordering::SeqCst) >= 1,
        "the earlier handler got the foreign signal"
    );

    // Another profiler takes SIGPROF and, stopping, leaves it ignored.
    set_sigprof(libc::SIG_IGN);
    let profiler = CpuProfiler::start(250).unwrap();
    burn_cpu(Duration::from_millis(400));
    let capture = profiler.stop_raw().unwrap();
    assert!(
        capture.samples > 20,
        "{} samples after SIG_IGN",
        capture.samples
    );
}
