//! More threads than the CPU sampler has slots (4,096, its own threads
//! included): the ones without a slot are not sampled, and the profile says
//! how many, instead of the sampler stopping to track threads in silence.

use std::sync::{Arc, Barrier};

use firewatch_agent::cpu::CpuProfiler;

/// The sampler's slots (`cpu::MAX_SLOTS`, not public).
const SLOTS: usize = 4096;
const EXTRA: usize = 16;

#[test]
fn threads_beyond_the_slots_are_counted_in_the_profile() {
    let release = Arc::new(Barrier::new(SLOTS + EXTRA + 1));
    let threads: Vec<_> = (0..SLOTS + EXTRA)
        .map(|_| {
            let release = release.clone();
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    release.wait();
                })
                .unwrap()
        })
        .collect();
    // `start` returns once every thread that exists has a timer or has been
    // found to have no slot.
    let profiler = CpuProfiler::start(10).unwrap();
    let profile = profiler.stop().unwrap();
    release.wait();
    for t in threads {
        t.join().unwrap();
    }
    let comments: Vec<&str> = profile.comment.iter().map(|&c| profile.string(c)).collect();
    let said = comments
        .iter()
        .find(|c| c.contains("threads were not profiled"))
        .unwrap_or_else(|| panic!("no word of the threads without a slot: {comments:?}"));
    let count: usize = said
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a number in the comment");
    // At least the extra threads (plus the test's own main thread and the
    // harness's) have no slot; at most all threads beyond the slots.
    assert!(
        (EXTRA..=EXTRA + 8).contains(&count),
        "{count} threads said to be unprofiled: {said}"
    );
}
