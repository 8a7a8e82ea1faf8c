//! Heap snapshot accuracy against known truth (issue 4's acceptance): at a
//! 64 KiB interval, 64 MiB retained in 64 KiB blocks and 16 MiB retained in
//! 256-byte objects through two known functions, and 1 GiB of short-lived
//! allocations through a third, must show up within ±15% of the truth; the
//! profile's total in use must agree with the allocator's own counter.
//!
//! The seed is fixed so a failure reproduces; `benches/heap_accuracy.rs`
//! runs the same workload across seeds.

use std::alloc::System;
use std::hint::black_box;

use firewatch_agent::SamplingAllocator;
use firewatch_profile::Profile;

const INTERVAL: usize = 64 * 1024;

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, INTERVAL);

#[inline(never)]
fn retain_large_blocks(out: &mut Vec<Box<[u8]>>) {
    for _ in 0..1024 {
        out.push(black_box(vec![1u8; 64 * 1024].into_boxed_slice()));
    }
}

#[inline(never)]
#[allow(clippy::vec_box)] // 256-byte heap objects are the point
fn retain_small_objects(out: &mut Vec<Box<[u8; 256]>>) {
    for _ in 0..(16 << 20) / 256 {
        out.push(black_box(Box::new([2u8; 256])));
    }
}

#[inline(never)]
fn churn_short_lived() {
    // 1 GiB in blocks of 1 KiB, each freed at once.
    for i in 0..(1usize << 20) {
        let block = black_box(vec![i as u8; 1024]);
        drop(block);
    }
}

/// The sum of `sample_type`'s values over samples whose stack holds
/// `function` (pprof's cum at function granularity).
fn cum(p: &Profile, sample_type: &str, function: &str) -> i64 {
    let index = p
        .sample_type
        .iter()
        .position(|t| p.string(t.r#type) == sample_type)
        .unwrap();
    let names = |loc_id: u64| -> Vec<&str> {
        let loc = p.location.iter().find(|l| l.id == loc_id).unwrap();
        loc.line
            .iter()
            .map(|l| {
                let f = p.function.iter().find(|f| f.id == l.function_id).unwrap();
                p.string(f.name)
            })
            .collect()
    };
    p.sample
        .iter()
        .filter(|s| {
            s.location_id
                .iter()
                .any(|&id| names(id).iter().any(|n| n.ends_with(function)))
        })
        .map(|s| s.value[index])
        .sum()
}

fn total(p: &Profile, sample_type: &str) -> i64 {
    let index = p
        .sample_type
        .iter()
        .position(|t| p.string(t.r#type) == sample_type)
        .unwrap();
    p.sample.iter().map(|s| s.value[index]).sum()
}

fn within(measured: i64, truth: i64, what: &str) {
    let ratio = measured as f64 / truth as f64;
    println!("{what}: {measured} vs {truth} (ratio {ratio:.3})");
    assert!(
        (0.85..=1.15).contains(&ratio),
        "{what}: {measured} is not within 15% of {truth} (ratio {ratio:.3})"
    );
}

#[test]
fn snapshot_matches_known_allocations() {
    firewatch_agent::testing::reseed_allocator_thread(0x5eed, INTERVAL);
    let mut large = Vec::with_capacity(1024);
    let mut small = Vec::with_capacity((16 << 20) / 256);
    retain_large_blocks(&mut large);
    retain_small_objects(&mut small);
    churn_short_lived();

    // Before the snapshot: symbolizing allocates (debug info) by itself.
    let stats = firewatch_agent::heap::stats();
    let profile = firewatch_agent::heap::snapshot().unwrap();
    profile.validate().unwrap();
    let bytes = profile.encode();
    let profile = Profile::decode(&bytes).unwrap();
    assert_eq!(profile.period, INTERVAL as i64);

    within(
        cum(&profile, "inuse_space", "retain_large_blocks"),
        64 << 20,
        "inuse_space of retain_large_blocks",
    );
    within(
        cum(&profile, "inuse_space", "retain_small_objects"),
        16 << 20,
        "inuse_space of retain_small_objects",
    );
    within(
        cum(&profile, "alloc_space", "churn_short_lived"),
        1 << 30,
        "alloc_space of churn_short_lived",
    );
    assert!(
        cum(&profile, "inuse_space", "churn_short_lived") < (1 << 20),
        "short-lived blocks are not in use"
    );
    within(
        total(&profile, "inuse_space"),
        stats.in_use_bytes as i64,
        "total inuse_space vs the allocator's in-use counter",
    );
    assert_eq!(stats.dropped, Default::default());
    black_box((large, small));
}
