//! Decode throughput of `ProfileView::decode` (raw protobuf in, validated view
//! out, dropped inside the timing), on a 1-thread and a 2-thread rayon pool.
//!
//! Inputs: google/pprof's `large.cpu` (inflated first; from
//! `FIREWATCH_CONFORMANCE_DIR`, skipped with a message without it) and a
//! synthetic CPU profile of 200,000 samples generated in-process by
//! `firewatch::synth`.
//!
//! ```text
//! cargo bench --bench decode
//! cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use firewatch::synth::{self, Config};
use firewatch_profile::{decompress, ProfileView, DEFAULT_MAX_DECOMPRESSED};

const THREADS: [usize; 2] = [1, 2];
const SYNTHETIC_SAMPLES: usize = 200_000;

/// google/pprof's `large.cpu`, inflated, when `FIREWATCH_CONFORMANCE_DIR`
/// provides it.
fn large_cpu() -> Option<Vec<u8>> {
    let path = firewatch::google_pprof_fixtures()?.join("large.cpu");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw = decompress(&bytes, DEFAULT_MAX_DECOMPRESSED).expect("inflate large.cpu");
    Some(raw.into_owned())
}

fn synthetic() -> Vec<u8> {
    synth::generate(&Config {
        samples: SYNTHETIC_SAMPLES,
        ..Config::default()
    })
    .encode()
}

fn decode(c: &mut Criterion) {
    let mut inputs = Vec::new();
    if let Some(raw) = large_cpu() {
        inputs.push(("large.cpu", raw));
    }
    inputs.push(("synthetic-200k", synthetic()));

    let pools: Vec<_> = THREADS
        .iter()
        .map(|&n| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("build a rayon pool");
            (n, pool)
        })
        .collect();

    let mut group = c.benchmark_group("decode");
    for (name, raw) in &inputs {
        // Fail here, not inside the timing loop, if an input does not decode.
        let samples = ProfileView::decode(raw)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .sample_count();
        eprintln!("decode: {name}: {} raw bytes, {samples} samples", raw.len());
        group.throughput(Throughput::Bytes(raw.len() as u64));
        for (threads, pool) in &pools {
            group.bench_with_input(
                BenchmarkId::new(*name, format!("{threads}-thread")),
                raw,
                |b, raw| {
                    pool.install(|| b.iter(|| ProfileView::decode(raw).expect("decode")));
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = decode
}
criterion_main!(benches);
