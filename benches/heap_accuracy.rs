//! Heap snapshot accuracy across seeds: the workload of
//! `crates/agent/tests/heap_accuracy.rs` (64 KiB interval; 64 MiB retained
//! in 64 KiB blocks by `retain_large_blocks`, 16 MiB retained in 256-byte
//! objects by `retain_small_objects`, 1 GiB of short-lived 1 KiB blocks
//! allocated by `churn_short_lived`), once per seed, each seed in a fresh
//! child process (this binary with `FIREWATCH_ACCURACY_SEED` set) so the
//! sampling state starts clean.
//!
//! For each of the four quantities, measured ÷ true:
//!
//! - `inuse_space` cum of `retain_large_blocks` ÷ 64 MiB,
//! - `inuse_space` cum of `retain_small_objects` ÷ 16 MiB,
//! - `alloc_space` cum of `churn_short_lived` ÷ 1 GiB,
//! - the profile's total `inuse_space` ÷ `heap::stats().in_use_bytes` read
//!   just before the snapshot,
//!
//! the table gives min / median / max over the seeds and how many seeds
//! fall outside ±15% (the test's bound) and ±5%.
//!
//! ```text
//! cargo bench --bench heap_accuracy
//! SEEDS=50 cargo bench --bench heap_accuracy
//! ```
//!
//! Env: `SEEDS` (default 20), `FIRST_SEED` (0x5eed = 24301, the test's seed;
//! seed i is `FIRST_SEED + i`). Exits non-zero only on harness errors.

mod common;

use std::alloc::System;
use std::hint::black_box;

use common::{env_u64, field, machine_info, max, median, min, run_child, BoxError};
use firewatch_agent::SamplingAllocator;
use firewatch_profile::Profile;

const INTERVAL: usize = 64 * 1024;
const ENV_SEED: &str = "FIREWATCH_ACCURACY_SEED";

#[global_allocator]
static ALLOC: SamplingAllocator<System> = SamplingAllocator::with_sample_interval(System, INTERVAL);

// The workload, as in crates/agent/tests/heap_accuracy.rs.

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
        .expect("sample type");
    let names = |loc_id: u64| -> Vec<&str> {
        let loc = p
            .location
            .iter()
            .find(|l| l.id == loc_id)
            .expect("location");
        loc.line
            .iter()
            .map(|l| {
                let f = p
                    .function
                    .iter()
                    .find(|f| f.id == l.function_id)
                    .expect("function");
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
        .expect("sample type");
    p.sample.iter().map(|s| s.value[index]).sum()
}

/// One seed, in a fresh process: prints a `RESULT` line.
fn child(seed: u64) -> Result<(), BoxError> {
    firewatch_agent::testing::reseed_allocator_thread(seed, INTERVAL);
    let mut large = Vec::with_capacity(1024);
    let mut small = Vec::with_capacity((16 << 20) / 256);
    retain_large_blocks(&mut large);
    retain_small_objects(&mut small);
    churn_short_lived();

    // Before the snapshot: symbolizing allocates (debug info) by itself.
    let stats = firewatch_agent::heap::stats();
    let profile = firewatch_agent::heap::snapshot()?;
    let profile = Profile::decode(&profile.encode())?;
    let dropped = stats.dropped;
    println!(
        "RESULT seed={seed} large={} small={} churn={} total={} in_use={} churn_inuse={} \
         live_samples={} dropped={}",
        cum(&profile, "inuse_space", "retain_large_blocks"),
        cum(&profile, "inuse_space", "retain_small_objects"),
        cum(&profile, "alloc_space", "churn_short_lived"),
        total(&profile, "inuse_space"),
        stats.in_use_bytes,
        cum(&profile, "inuse_space", "churn_short_lived"),
        stats.live_samples,
        dropped.no_slot + dropped.no_large_entry + dropped.no_bucket,
    );
    black_box((large, small));
    Ok(())
}

struct Quantity {
    name: &'static str,
    ratios: Vec<f64>,
}

fn main() -> Result<(), BoxError> {
    if let Ok(seed) = std::env::var(ENV_SEED) {
        return child(seed.parse()?);
    }
    let seeds = env_u64("SEEDS", 20)?;
    let first = env_u64("FIRST_SEED", 0x5eed)?;
    if seeds == 0 {
        return Err("SEEDS must be at least 1".into());
    }

    println!("# Heap snapshot accuracy across seeds\n");
    print!("{}", machine_info());
    println!(
        "- interval {INTERVAL} bytes, seeds {first}..{} (one child process each)\n",
        first + seeds - 1
    );

    let mut q = [
        "inuse_space of retain_large_blocks ÷ 64 MiB",
        "inuse_space of retain_small_objects ÷ 16 MiB",
        "alloc_space of churn_short_lived ÷ 1 GiB",
        "total inuse_space ÷ allocator in-use counter",
    ]
    .map(|name| Quantity {
        name,
        ratios: Vec::new(),
    });
    let mut max_churn_inuse = 0i64;
    let mut dropped = 0u64;
    println!("| seed | large | small | churn | total | live samples |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for seed in first..first + seeds {
        let f = run_child(&[(ENV_SEED, seed.to_string())])?;
        let get = |k: &str| field::<f64>(&f, k);
        let ratios = [
            get("large")? / (64u64 << 20) as f64,
            get("small")? / (16u64 << 20) as f64,
            get("churn")? / (1u64 << 30) as f64,
            get("total")? / get("in_use")?,
        ];
        for (quantity, r) in q.iter_mut().zip(ratios) {
            quantity.ratios.push(r);
        }
        max_churn_inuse = max_churn_inuse.max(field(&f, "churn_inuse")?);
        dropped += field::<u64>(&f, "dropped")?;
        println!(
            "| {seed} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            ratios[0],
            ratios[1],
            ratios[2],
            ratios[3],
            field::<u64>(&f, "live_samples")?
        );
    }

    println!("\n| quantity | min | median | max | seeds outside ±15% | outside ±5% |");
    println!("|---|---:|---:|---:|---:|---:|");
    for quantity in &q {
        let r = &quantity.ratios;
        let outside = |bound: f64| r.iter().filter(|&&x| (x - 1.0).abs() > bound).count();
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {} / {} | {} / {} |",
            quantity.name,
            min(r),
            median(r),
            max(r),
            outside(0.15),
            r.len(),
            outside(0.05),
            r.len(),
        );
    }
    println!(
        "\nLargest inuse_space attributed to churn_short_lived (truth: 0): {max_churn_inuse} bytes; \
         samples dropped over all seeds: {dropped}"
    );
    Ok(())
}
