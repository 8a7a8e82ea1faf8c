//! Every path through the sampling allocator, made deterministic: at an
//! interval of 1 byte every allocation is sampled, so each block lives in a
//! region slot (up to 64 KiB) or in the large-block table, and every
//! `realloc` crosses between them. Contents must survive every move, zeroed
//! allocations must be zero even in a reused slot, and the allocator's own
//! bookkeeping must return to where it started once everything is freed.

use std::alloc::{GlobalAlloc, Layout, System};

use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 1);

/// The checks compare process-wide counters, and at this interval any
/// other test thread's allocation would move them: one test runs them all.
#[test]
fn every_allocator_path() {
    realloc_moves_between_slots_the_large_table_and_back();
    zeroed_blocks_are_zero_even_in_reused_slots();
    over_aligned_blocks_take_the_large_path();
    the_in_use_counter_follows_allocations_exactly_per_fold();
}

fn fill(ptr: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the caller owns `len` bytes at `ptr`.
        unsafe { ptr.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(ptr: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the caller owns `len` bytes at `ptr`.
        let b = unsafe { ptr.add(i).read() };
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of {len}");
    }
}

fn live_samples() -> u64 {
    firewatch_agent::heap::stats().live_samples
}

fn realloc_moves_between_slots_the_large_table_and_back() {
    // At interval 1 any other thread's allocation (the test harness's) is
    // sampled too, so the count may drift by a few; the sequence runs 50
    // times, so a bookkeeping leak on any transition would add 50 or more.
    const ROUNDS: u64 = 50;
    const SLACK: u64 = 8;
    let before = live_samples();
    // 100 B (slot) → 60 KiB (same slot) → 200 KiB (large) → 1 MiB (large)
    // → 10 KiB (slot) → 50 B (slot) → freed; alignment 16 and 4096.
    let sizes = [100usize, 60 << 10, 200 << 10, 1 << 20, 10 << 10, 50];
    for round in 0..ROUNDS {
        for align in [16usize, 4096] {
            let mut layout = Layout::from_size_align(sizes[0], align).unwrap();
            // SAFETY: non-zero size.
            let mut ptr = unsafe { ALLOC.alloc(layout) };
            assert!(!ptr.is_null());
            assert_eq!(ptr as usize % align, 0);
            let seed = round as u8;
            fill(ptr, layout.size(), seed);
            for &size in &sizes[1..] {
                // SAFETY: `ptr` is live with `layout`; `size` is non-zero.
                let new = unsafe { ALLOC.realloc(ptr, layout, size) };
                assert!(!new.is_null());
                assert_eq!(new as usize % align, 0);
                check(new, layout.size().min(size), seed);
                layout = Layout::from_size_align(size, align).unwrap();
                fill(new, size, seed);
                ptr = new;
            }
            // SAFETY: live with `layout`.
            unsafe { ALLOC.dealloc(ptr, layout) };
        }
    }
    let after = live_samples();
    assert!(
        after <= before + SLACK,
        "sampled blocks were not forgotten: {before} → {after} after {ROUNDS} rounds"
    );
}

fn zeroed_blocks_are_zero_even_in_reused_slots() {
    for round in 0..50 {
        let layout = Layout::from_size_align(4096 + round * 64, 8).unwrap();
        // SAFETY: non-zero size.
        let dirty = unsafe { ALLOC.alloc(layout) };
        fill(dirty, layout.size(), 0xAB);
        // SAFETY: live with `layout`.
        unsafe { ALLOC.dealloc(dirty, layout) };
        // SAFETY: non-zero size.
        let clean = unsafe { ALLOC.alloc_zeroed(layout) };
        // SAFETY: `clean` holds `layout.size()` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(clean, layout.size()) };
        assert!(bytes.iter().all(|&b| b == 0), "round {round}");
        // SAFETY: live with `layout`.
        unsafe { ALLOC.dealloc(clean, layout) };
    }
}

fn over_aligned_blocks_take_the_large_path() {
    let before = live_samples();
    // Small but aligned beyond a slot: must not be served from the region.
    let layout = Layout::from_size_align(64, 128 << 10).unwrap();
    // SAFETY: non-zero size.
    let ptr = unsafe { ALLOC.alloc(layout) };
    assert!(!ptr.is_null());
    assert_eq!(ptr as usize % (128 << 10), 0);
    assert_eq!(live_samples(), before + 1);
    // SAFETY: live with `layout`.
    unsafe { ALLOC.dealloc(ptr, layout) };
    assert_eq!(live_samples(), before);
}

fn the_in_use_counter_follows_allocations_exactly_per_fold() {
    // Other threads of the harness may hold up to 256 KiB unfolded each;
    // 64 MiB dwarfs that.
    let before = firewatch_agent::heap::in_use_bytes() as i64;
    let blocks: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 64 << 10]).collect();
    let during = firewatch_agent::heap::in_use_bytes() as i64;
    let grown = during - before;
    assert!(
        (grown - (64 << 20)).abs() < (1 << 20),
        "grew by {grown}, expected 64 MiB"
    );
    drop(blocks);
    let after = firewatch_agent::heap::in_use_bytes() as i64;
    assert!((after - before).abs() < (1 << 20), "{before} → {after}");
}
