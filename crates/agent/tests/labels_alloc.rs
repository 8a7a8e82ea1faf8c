//! Labels and the sampling allocator, at an interval of 1 byte (every
//! allocation sampled): a block keeps the label set it was allocated
//! under; interning a new set (which allocates, and so is sampled) neither
//! recurses nor deadlocks; allocating under a label in a thread-local
//! destructor, while the thread is being torn down, is recorded and safe.

use std::alloc::System;
use std::sync::Mutex;

use firewatch_agent::labels::{self, LabelSet};
use firewatch_agent::testing::{bucket_records, label_set_of};
use firewatch_agent::SamplingAllocator;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, 1);

/// Blocks kept alive until the checks.
static KEEP: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The label sets of the live sampled blocks of exactly `size` bytes.
fn sets_of_live_blocks(size: u64) -> Vec<LabelSet> {
    bucket_records()
        .into_iter()
        .filter(|r| r.size == size && r.allocs > r.frees)
        .map(|r| label_set_of(r.labels))
        .collect()
}

/// At interval 1 every test thread's allocations are sampled: one test.
#[test]
fn labels_and_the_allocator() {
    blocks_keep_the_labels_they_were_allocated_under();
    interning_under_a_label_neither_recurses_nor_deadlocks();
    allocating_under_a_label_in_a_thread_local_destructor_is_recorded();
}

fn blocks_keep_the_labels_they_were_allocated_under() {
    let kept = labels::with(&[("endpoint", "/keep")], || {
        labels::with(&[("step", "inner")], || vec![1u8; 77_777])
    });
    let unlabelled = vec![2u8; 77_778];
    let expected = LabelSet::new([("endpoint", "/keep"), ("step", "inner")]);
    assert_eq!(sets_of_live_blocks(77_777), [expected]);
    assert_eq!(sets_of_live_blocks(77_778), [LabelSet::EMPTY]);
    KEEP.lock().unwrap().extend([kept, unlabelled]);
}

fn interning_under_a_label_neither_recurses_nor_deadlocks() {
    // Every scope below interns a new set (allocating its strings, each
    // allocation sampled and reading the thread's current set) while
    // another set is installed, from four threads at once.
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..100 {
                    let outer = format!("{t}-{i}");
                    labels::with(&[("outer", outer.as_str())], || {
                        let inner = format!("{i}");
                        let block =
                            labels::with(&[("inner", inner.as_str())], || vec![3u8; 33_000 + t]);
                        drop(block);
                    });
                }
            });
        }
    });
    assert!(labels::stats().sets >= 400);
    assert_eq!(labels::stats().dropped, 0);
}

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let block = labels::with(&[("phase", "teardown")], || vec![4u8; 54_321]);
        KEEP.lock().unwrap().push(block);
    }
}

thread_local! {
    static AT_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

fn allocating_under_a_label_in_a_thread_local_destructor_is_recorded() {
    std::thread::spawn(|| AT_EXIT.with(|_| ())).join().unwrap();
    assert_eq!(
        sets_of_live_blocks(54_321),
        [LabelSet::new([("phase", "teardown")])]
    );
}
