//! A thread's name in the profile is the one it has while it runs, not the
//! one it had when the profiler found it: threads often name themselves
//! after they start (thread pools, runtimes). Before names were read again,
//! such a thread kept the process's name in every sample.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use firewatch_agent::cpu::CpuProfiler;

fn set_own_name(name: &str) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 15 bytes.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) }, 0);
}

#[test]
fn a_thread_that_names_itself_later_is_labelled_with_its_new_name() {
    let barrier = || Arc::new(Barrier::new(2));
    let (found, burnt, stopped) = (barrier(), barrier(), barrier());
    let worker = {
        let (found, burnt, stopped) = (found.clone(), burnt.clone(), stopped.clone());
        std::thread::spawn(move || {
            set_own_name("before-name");
            // The profiler has found this thread under its first name.
            found.wait();
            set_own_name("after-name");
            common::burn_cpu(Duration::from_millis(300));
            burnt.wait();
            // Alive until the profile has stopped (an exited thread's name
            // can no longer be read).
            stopped.wait();
        })
    };
    // `start` returns once every existing thread has its timer: the worker
    // is found as "before-name".
    let profiler = CpuProfiler::start(250).unwrap();
    found.wait();
    burnt.wait();
    let capture = profiler.stop_raw().unwrap();
    stopped.wait();
    worker.join().unwrap();
    let by_name = |name: &str| -> u64 {
        capture
            .stacks
            .iter()
            .filter(|s| s.thread == name)
            .map(|s| s.samples)
            .sum()
    };
    assert!(by_name("after-name") > 0, "samples of the renamed thread");
    assert_eq!(by_name("before-name"), 0);
}
