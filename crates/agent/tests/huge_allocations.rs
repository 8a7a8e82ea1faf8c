//! Allocation sizes at the limit of what a `Layout` allows must fail
//! cleanly, not panic inside `GlobalAlloc` (a panic there aborts the
//! process). In a build with overflow checks (`cargo test`'s), the
//! countdown arithmetic of the sampling allocator used to overflow on
//! `try_reserve_exact(isize::MAX)`: "panicked while processing panic,
//! aborting". And a refused request is not memory in use: the allocator's
//! counter must not jump by what was asked and never given.

use std::alloc::System;

use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 4096);

#[test]
fn allocations_too_large_to_succeed_fail_cleanly() {
    let before = firewatch_agent::heap::stats();
    for size in [
        isize::MAX as usize,
        isize::MAX as usize / 2 + 1,
        1 << 62,
        1 << 50,
    ] {
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve_exact(size).is_err(), "{size}");
        // Growing a live block to an impossible size fails too (realloc).
        let mut w: Vec<u8> = vec![1; 100];
        assert!(w.try_reserve_exact(size).is_err(), "{size}");
        assert_eq!(w, vec![1; 100]);
        // The allocator goes on working, sampling included.
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        assert_eq!(blocks.len(), 1000);
    }
    let after = firewatch_agent::heap::stats();
    // What the loop kept (nothing) plus what threads have not folded yet
    // (at most 256 KiB each way per thread).
    let grew = after.in_use_bytes.abs_diff(before.in_use_bytes);
    assert!(
        grew < 8 << 20,
        "in use {} → {}",
        before.in_use_bytes,
        after.in_use_bytes
    );
    assert!(after.allocated_bytes < 1 << 40, "{after:?}");
}
