//! A service that runs for weeks allocates blocks of very many distinct
//! sizes. The stack table holds one entry per (stack, size) sampled and has
//! room for 65,536; before entries with nothing live were reused, the table
//! filled for good and every later sample was dropped (`no_bucket`).
//!
//! Here every allocation is sampled (interval 1) and three threads churn
//! through 3 × 40,000 distinct sizes, each keeping its most recent blocks
//! alive, while long-lived blocks allocated first stay alive throughout.
//! Afterwards: nothing was dropped, every live block is still counted in
//! the bucket of its own size, and the snapshot says that history was
//! reclaimed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;

use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 1);

/// Distinct sizes per churning thread (3 threads: 120,000 in all, far more
/// than the table's 65,536 entries).
const SIZES_PER_THREAD: usize = 40_000;
const THREADS: usize = 3;
/// Blocks each churning thread keeps alive (its most recent ones).
const KEPT: usize = 64;
/// Long-lived blocks, allocated before the churn, freed at the end.
const LONG_LIVED: usize = 200;
/// Sizes of long-lived blocks: above any churned size, so each is its own
/// bucket.
const LONG_LIVED_BASE: usize = 1 << 20;

struct Block {
    ptr: *mut u8,
    layout: Layout,
}

impl Block {
    fn new(size: usize) -> Block {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { ALLOC.alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `size` ≥ 1 byte at `ptr` are ours; mark first and last.
        unsafe {
            ptr.add(size - 1).write((size >> 8) as u8);
            ptr.write(size as u8);
        }
        Block { ptr, layout }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let size = self.layout.size();
        // SAFETY: our block, marked in `new`.
        unsafe {
            assert_eq!(
                self.ptr.read(),
                size as u8,
                "block of {size} bytes overwritten"
            );
            if size > 1 {
                assert_eq!(self.ptr.add(size - 1).read(), (size >> 8) as u8);
            }
            ALLOC.dealloc(self.ptr, self.layout);
        }
    }
}

// SAFETY: a block is owned by one thread at a time.
unsafe impl Send for Block {}

/// Churned sizes of thread `t`: 1 + t, 1 + t + THREADS, …: disjoint.
fn churn(t: usize) -> Vec<Block> {
    let mut kept: Vec<Block> = Vec::with_capacity(KEPT);
    for n in 0..SIZES_PER_THREAD {
        let size = 1 + t + n * THREADS;
        if kept.len() == KEPT {
            kept.remove(0);
        }
        kept.push(Block::new(size));
    }
    kept
}

#[test]
fn distinct_sizes_beyond_the_table_do_not_drop_samples() {
    let long_lived: Vec<Block> = (0..LONG_LIVED)
        .map(|i| Block::new(LONG_LIVED_BASE + i))
        .collect();

    let kept: Vec<Block> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS).map(|t| s.spawn(move || churn(t))).collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let stats = firewatch_agent::heap::stats();
    assert_eq!(
        stats.dropped.no_bucket, 0,
        "samples dropped for want of a stack-table entry: {stats:?}"
    );
    let reclaimed = firewatch_agent::testing::reclaimed();
    assert!(
        reclaimed.buckets > 0,
        "{} distinct sizes should have needed reused entries: {reclaimed:?}",
        THREADS * SIZES_PER_THREAD
    );

    // Every block alive now is counted, live, in a bucket of its own size.
    // (At interval 1 the harness's own allocations are sampled too: only
    // the sizes this test made are checked, and they are unique to it.)
    let mut live_by_size: HashMap<u64, u64> = HashMap::new();
    for r in firewatch_agent::testing::bucket_records() {
        *live_by_size.entry(r.size).or_default() += r.allocs - r.frees;
    }
    for block in long_lived.iter().chain(&kept) {
        let size = block.layout.size() as u64;
        assert!(
            live_by_size.get(&size).copied().unwrap_or(0) >= 1,
            "the live block of {size} bytes is not in the table"
        );
    }

    let profile = firewatch_agent::heap::snapshot().unwrap();
    let _ = firewatch_agent::heap::snapshot().unwrap();
    let comments: Vec<&str> = profile.comment.iter().map(|&c| profile.string(c)).collect();
    assert!(
        comments
            .iter()
            .any(|c| c.contains("entries with nothing live were reused")),
        "the snapshot does not say its allocation history is incomplete: {comments:?}"
    );

    drop(kept);
    drop(long_lived);
    let after = firewatch_agent::heap::stats();
    assert_eq!(after.dropped.no_bucket, 0);
}
