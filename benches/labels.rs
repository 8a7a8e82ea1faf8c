//! What labels cost (issue 13), in ns, and whether they change the CPU
//! sampler's overhead.
//!
//! Criterion groups:
//!
//! - `scope/*`: entering and leaving `labels::with` around an empty closure:
//!   `none` (the closure alone, the baseline), `with-1` (one pair, a set
//!   that exists: hashing, a table probe, two thread-local accesses),
//!   `with-3-nested` (three pairs merged into an outer set of two),
//!   `with_set` (a set looked up beforehand: the thread-local swap alone),
//!   `current` (reading the thread's set: what the signal handler and the
//!   allocator's sampled path add per sample).
//! - `poll/*`: one `poll` of a future that is always pending, `bare` and
//!   wrapped by `with_labels` (`wrapped`): the difference is the wrapper's
//!   cost per poll (its set cached for the thread's outer set).
//!
//! Then, outside criterion, **the sampler's overhead with and without
//! labels in one run**: two threads of fixed CPU work (as
//! `benches/cpu_overhead.rs`) under a 1000 Hz `CpuProfiler`, in rounds
//! alternating `off` (the handler does not read the label set, no scopes)
//! and `on` (the handler reads it; the work runs in label scopes of ~50 µs,
//! alternating two sets, so samples split over them). Printed: process CPU
//! per run (median, min, max) and the paired difference.
//!
//! ```text
//! cargo bench --bench labels
//! ROUNDS=15 WORKLOAD_MS=1500 cargo bench --bench labels
//! OVERHEAD=0 cargo bench --bench labels -- scope   # criterion only
//! ```

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{env_u64, max, median, min, process_cpu_ns, settle, BoxError, Parked};
use criterion::Criterion;
use firewatch_agent::cpu::CpuProfiler;
use firewatch_agent::labels::{self, LabelSet, LabelsExt};

fn scopes(c: &mut Criterion) {
    let mut group = c.benchmark_group("scope");
    group.bench_function("none", |b| b.iter(|| black_box(7u32)));
    group.bench_function("with-1", |b| {
        b.iter(|| labels::with(&[("endpoint", "/checkout")], || black_box(7u32)))
    });
    group.bench_function("with-3-nested", |b| {
        labels::with(&[("service", "shop"), ("tier", "gold")], || {
            b.iter(|| {
                labels::with(
                    &[
                        ("endpoint", "/checkout"),
                        ("step", "price"),
                        ("tier", "free"),
                    ],
                    || black_box(7u32),
                )
            })
        })
    });
    // What the SIGPROF handler and the sampled allocation path add per
    // sample: one read of the thread's current set id.
    labels::with(&[("endpoint", "/checkout")], || {
        group.bench_function("current", |b| b.iter(labels::current))
    });
    let set = LabelSet::new([("endpoint", "/checkout")]);
    group.bench_function("with_set", |b| {
        b.iter(|| labels::with_set(black_box(set), || black_box(7u32)))
    });
    group.finish();
}

/// Never ready: every poll does the same (nothing).
struct Pending;

impl Future for Pending {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn polls(c: &mut Criterion) {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut group = c.benchmark_group("poll");
    let mut bare = Box::pin(Pending);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(black_box(bare.as_mut()).poll(&mut cx)))
    });
    let mut wrapped = Box::pin(Pending.with_labels([("endpoint", "/checkout")]));
    group.bench_function("wrapped", |b| {
        b.iter(|| black_box(black_box(wrapped.as_mut()).poll(&mut cx)))
    });
    group.finish();
}

const THREADS: usize = 2;
/// Work per label scope in the `on` mode (~50 µs on this machine).
const SCOPE_ITERATIONS: u64 = 16_384;

/// One profiled run of the fixed work; process CPU in seconds and samples.
fn run(on: bool, iterations: u64) -> Result<(f64, u64, u64), BoxError> {
    let parked = Parked::spawn(THREADS, move |i| {
        let seed = i as u64 + 1;
        if !on {
            return common::worker(seed, iterations);
        }
        let sets = [
            LabelSet::new([("endpoint", "/a")]),
            LabelSet::new([("endpoint", "/b")]),
        ];
        let mut left = iterations;
        let mut acc = 0u64;
        let mut k = 0;
        while left > 0 {
            let n = left.min(SCOPE_ITERATIONS);
            let pair = sets[k % 2].pairs()[0];
            acc ^= labels::with(&[pair], || common::worker(seed ^ k as u64, n));
            k += 1;
            left -= n;
        }
        acc
    })?;
    let profiler = CpuProfiler::start(1000)?;
    firewatch_agent::testing::set_labels_in_handler(on);
    std::thread::sleep(settle()?);
    let cpu0 = process_cpu_ns()?;
    let results = parked.release_and_join()?;
    let cpu = process_cpu_ns()? - cpu0;
    let capture = profiler.stop_raw()?;
    let labelled = capture
        .stacks
        .iter()
        .filter(|s| !s.labels.is_empty())
        .map(|s| s.samples)
        .sum();
    black_box(results);
    Ok((cpu as f64 / 1e9, capture.samples, labelled))
}

fn sampler_overhead() -> Result<(), BoxError> {
    let rounds = env_u64("ROUNDS", 7)? as usize;
    let target = Duration::from_millis(env_u64("WORKLOAD_MS", 1500)?);
    let iterations = common::calibrate(target);
    println!("\nCPU sampler at 1000 Hz, {THREADS} threads, {iterations} iterations each, {rounds} rounds");
    let (mut off, mut on, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for mode in order {
            let (cpu, samples, labelled) = run(mode, iterations)?;
            eprintln!(
                "round {r} labels {} cpu {cpu:.4} s samples {samples} labelled {labelled}",
                if mode { "on " } else { "off" }
            );
            pair[usize::from(mode)] = cpu;
            if mode {
                on.push(cpu);
            } else {
                off.push(cpu);
            }
        }
        paired.push(pair[1] / pair[0] - 1.0);
    }
    println!("| labels | CPU s median | min | max |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [("off", &off), ("on", &on)] {
        println!(
            "| {name} | {:.4} | {:.4} | {:.4} |",
            median(v),
            min(v),
            max(v)
        );
    }
    println!(
        "paired difference on/off: median {:+.2}%, min {:+.2}%, max {:+.2}% ({:.0} s)",
        median(&paired) * 100.0,
        min(&paired) * 100.0,
        max(&paired) * 100.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    scopes(&mut criterion);
    polls(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|a| a == "--list" || a == "--test")
        || std::env::var_os("OVERHEAD").is_some_and(|v| v == "0")
    {
        return;
    }
    if let Err(e) = sampler_overhead() {
        eprintln!("labels bench: {e}");
        std::process::exit(1);
    }
}
