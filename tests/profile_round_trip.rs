//! `firewatch-profile`'s round trips: arbitrary valid profiles (proptest),
//! large synthetic profiles with every field set that span many parallel
//! chunks, and real profiles (this repo's Go fixtures and google/pprof's test
//! data, from `FIREWATCH_CONFORMANCE_DIR`).

use std::path::Path;
use std::sync::OnceLock;

use firewatch::synth::{self, Config, Ids};
use firewatch::{fixtures_dir, google_pprof_fixtures};
use firewatch_profile::{
    Function, Label, Line, Location, Mapping, Profile, ProfileData, ProfileView, Sample, ValueType,
    DEFAULT_MAX_DECOMPRESSED,
};
use proptest::prelude::*;
use rayon::ThreadPool;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A 1-thread and a 2-thread pool, built once (building pools per case is slow).
fn pools() -> &'static [ThreadPool; 2] {
    static POOLS: OnceLock<[ThreadPool; 2]> = OnceLock::new();
    POOLS.get_or_init(|| {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        [pool(1), pool(2)]
    })
}

/// Decodes raw bytes with `ProfileView::decode` on each pool and checks that
/// every pool yields the same profile; returns it.
fn decode_on_every_pool(raw: &[u8]) -> Profile {
    let mut decoded = pools().iter().map(|pool| {
        pool.install(|| ProfileView::decode(raw).map(|v| v.to_profile()))
            .expect("decodes")
    });
    let first = decoded.next().unwrap();
    for (n, other) in decoded.enumerate() {
        assert!(other == first, "pool {} decodes differently", n + 1);
    }
    first
}

/// The round-trip properties every valid profile must have.
fn check_round_trip(p: &Profile) {
    let raw = p.encode();
    let back = Profile::decode(&raw).expect("raw encoding decodes");
    assert!(back == *p, "raw round trip differs");
    let gz = p.encode_gzip();
    assert!(Profile::decode(&gz).expect("gzip decodes") == *p);
    // decode -> encode -> decode is the identity, and encoding is deterministic.
    let again = back.encode();
    assert!(again == raw, "re-encoding changed the bytes");
    assert!(Profile::decode(&again).unwrap() == back);
    assert!(decode_on_every_pool(&raw) == *p);
    p.validate().expect("validates");
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// `n` unique non-zero ids: 1..=n in order (the sequential fast path),
/// shuffled, or sparse (small or anywhere in u64, shuffled) — the hash-map path.
fn ids(n: usize) -> BoxedStrategy<Vec<u64>> {
    let seq: Vec<u64> = (1..=n as u64).collect();
    prop_oneof![
        2 => Just(seq.clone()),
        1 => Just(seq).prop_shuffle(),
        1 => prop::collection::btree_set(1..=(4 * n as u64 + 4), n)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
        1 => prop::collection::btree_set(1..=u64::MAX, n)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
    ]
    .boxed()
}

/// Pick one of `items`, or a fixed fallback when there are none.
fn pick(items: &[u64]) -> BoxedStrategy<u64> {
    if items.is_empty() {
        Just(0).boxed()
    } else {
        prop::sample::select(items.to_vec()).boxed()
    }
}

fn value_type(strings: i64) -> impl Strategy<Value = ValueType> {
    (0..strings, 0..strings).prop_map(|(t, u)| ValueType { r#type: t, unit: u })
}

fn mapping(id: u64, strings: i64) -> impl Strategy<Value = Mapping> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        0..strings,
        0..strings,
        any::<[bool; 4]>(),
    )
        .prop_map(
            move |(start, limit, offset, filename, build_id, flags)| Mapping {
                id,
                memory_start: start,
                memory_limit: limit,
                file_offset: offset,
                filename,
                build_id,
                has_functions: flags[0],
                has_filenames: flags[1],
                has_line_numbers: flags[2],
                has_inline_frames: flags[3],
            },
        )
}

fn function(id: u64, strings: i64) -> impl Strategy<Value = Function> {
    (0..strings, 0..strings, 0..strings, any::<i64>()).prop_map(
        move |(name, system_name, filename, start_line)| Function {
            id,
            name,
            system_name,
            filename,
            start_line,
        },
    )
}

fn location(id: u64, mapping_ids: &[u64], function_ids: &[u64]) -> impl Strategy<Value = Location> {
    // 0 (no mapping), a real mapping, or an id that (almost surely) names no
    // mapping: pprof keeps such locations, without a mapping.
    let mapping_id = prop_oneof![Just(0u64), pick(mapping_ids), 1..=u64::MAX];
    let line =
        (pick(function_ids), any::<i64>(), any::<i64>()).prop_map(|(function_id, line, column)| {
            Line {
                function_id,
                line,
                column,
            }
        });
    let max_lines = if function_ids.is_empty() { 0 } else { 3 };
    (
        mapping_id,
        any::<u64>(),
        prop::collection::vec(line, 0..=max_lines),
        any::<bool>(),
    )
        .prop_map(move |(mapping_id, address, line, is_folded)| Location {
            id,
            mapping_id,
            address,
            line,
            is_folded,
        })
}

fn label(strings: i64) -> impl Strategy<Value = Label> {
    prop_oneof![
        (0..strings, 0..strings).prop_map(|(key, str)| Label {
            key,
            str,
            ..Label::default()
        }),
        (0..strings, any::<i64>(), 0..strings).prop_map(|(key, num, num_unit)| Label {
            key,
            num,
            num_unit,
            ..Label::default()
        }),
    ]
}

fn sample(values: usize, strings: i64, location_ids: &[u64]) -> impl Strategy<Value = Sample> {
    let max_locations = if location_ids.is_empty() { 0 } else { 20 };
    (
        prop::collection::vec(pick(location_ids), 0..=max_locations),
        prop::collection::vec(any::<i64>(), values),
        prop::collection::vec(label(strings), 0..=3),
    )
        .prop_map(|(location_id, value, label)| Sample {
            location_id,
            value,
            label,
        })
}

prop_compose! {
    fn scalars(strings: i64)(
        drop_frames in 0..strings,
        keep_frames in 0..strings,
        time_nanos in any::<i64>(),
        duration_nanos in any::<i64>(),
        period_type in value_type(strings),
        period in any::<i64>(),
        comment in prop::collection::vec(0..strings, 0..=3),
        default_sample_type in 0..strings,
        doc_url in 0..strings,
    ) -> Profile {
        Profile {
            drop_frames,
            keep_frames,
            time_nanos,
            duration_nanos,
            period_type,
            period,
            comment,
            default_sample_type,
            doc_url,
            ..Profile::default()
        }
    }
}

/// Arbitrary profiles that pprof's `CheckValid` accepts.
fn valid_profile() -> impl Strategy<Value = Profile> {
    (
        1..=4usize,
        prop::collection::vec(".{0,12}", 0..12),
        0..=5usize,
        0..=10usize,
        0..=14usize,
    )
        .prop_flat_map(|(sample_types, strings, mappings, functions, locations)| {
            let mut table = vec![String::new()];
            table.extend(strings);
            (
                Just(sample_types),
                Just(table),
                ids(mappings),
                ids(functions),
                ids(locations),
            )
        })
        .prop_flat_map(
            |(n_types, table, mapping_ids, function_ids, location_ids)| {
                let ns = table.len() as i64;
                let mappings: Vec<_> = mapping_ids.iter().map(|&id| mapping(id, ns)).collect();
                let functions: Vec<_> = function_ids.iter().map(|&id| function(id, ns)).collect();
                let locations: Vec<_> = location_ids
                    .iter()
                    .map(|&id| location(id, &mapping_ids, &function_ids))
                    .collect();
                (
                    prop::collection::vec(value_type(ns), n_types),
                    prop::collection::vec(sample(n_types, ns, &location_ids), 0..30),
                    mappings,
                    locations,
                    functions,
                    Just(table),
                    scalars(ns),
                )
            },
        )
        .prop_map(
            |(sample_type, sample, mapping, location, function, string_table, scalars)| Profile {
                sample_type,
                sample,
                mapping,
                location,
                function,
                string_table,
                ..scalars
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_profiles_round_trip(p in valid_profile()) {
        check_round_trip(&p);
    }
}

// ---------------------------------------------------------------------------
// A large profile, spanning many parallel chunks (the minimum chunk is 256)
// ---------------------------------------------------------------------------

/// A synthetic CPU profile with every field set, of `samples` samples over
/// 1,500 functions and 2,000 locations (several chunks each, too).
fn big_profile(seed: u64, samples: usize, ids: Ids) -> Profile {
    synth::generate(&Config {
        samples,
        locations: 2000,
        functions: 1500,
        seed,
        ids,
        every_field: true,
    })
}

#[test]
fn large_profiles_round_trip_across_many_chunks() {
    for (seed, ids) in [(1, Ids::Sequential), (0x9e37_79b9_7f4a_7c15, Ids::Sparse)] {
        let p = big_profile(seed, 6000, ids);
        check_round_trip(&p);
        let raw = p.encode();
        // Several sample blocks, so chunk boundaries are really crossed.
        for pool in pools() {
            let blocks = pool.install(|| ProfileView::decode(&raw).unwrap().sample_blocks().len());
            assert!(blocks > 2, "only {blocks} sample blocks");
        }
        // A 4-thread pool too (smaller chunks, different boundaries).
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let view_profile = four.install(|| ProfileView::decode(&raw).unwrap().to_profile());
        assert!(view_profile == p);
    }
}

#[test]
fn view_accessors_agree_with_the_owned_model() {
    let p = big_profile(7, 3000, Ids::Sparse);
    let raw = p.encode();
    let view = ProfileView::decode(&raw).unwrap();
    assert_eq!(view.sample_count(), p.sample.len());
    for (s, owned) in view.samples().zip(&p.sample) {
        let ids: Vec<u64> = s
            .locations
            .iter()
            .map(|&l| view.locations()[l as usize].id)
            .collect();
        assert_eq!(ids, owned.location_id);
        assert_eq!(s.values, &owned.value[..]);
        assert_eq!(s.labels.len(), owned.label.len());
    }
    for (l, owned) in view.locations().iter().zip(&p.location) {
        let expected = p.mapping.iter().position(|m| m.id == owned.mapping_id);
        assert_eq!(l.mapping.map(|m| m as usize), expected, "location {}", l.id);
        let lines = view.location_lines(l);
        assert_eq!(lines.len(), owned.line.len());
        for (line, o) in lines.iter().zip(&owned.line) {
            assert_eq!(view.functions()[line.function as usize].id, o.function_id);
        }
    }
    assert_eq!(view.default_sample_index(), 1);
}

// ---------------------------------------------------------------------------
// Real profiles
// ---------------------------------------------------------------------------

/// Opens a fixture, decodes it both ways and checks the owned round trip.
fn load(path: &Path) -> Profile {
    let data = ProfileData::open(path, DEFAULT_MAX_DECOMPRESSED)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let view = data.view().unwrap_or_else(|e| panic!("{e}"));
    let p = view.to_profile();
    let bytes = std::fs::read(path).unwrap();
    assert!(Profile::decode(&bytes).unwrap() == p, "{}", path.display());
    let back = Profile::decode(&p.encode()).unwrap();
    assert!(back == p, "{} does not round-trip", path.display());
    assert!(Profile::decode(&p.encode_gzip()).unwrap() == p);
    p.validate().unwrap();
    p
}

fn type_names(p: &Profile) -> Vec<String> {
    p.sample_type
        .iter()
        .map(|t| format!("{}/{}", p.string(t.r#type), p.string(t.unit)))
        .collect()
}

fn function_names(p: &Profile) -> Vec<&str> {
    p.function.iter().map(|f| p.string(f.name)).collect()
}

#[test]
fn go_fixtures_decode_and_round_trip() {
    let expect: [(&str, &[&str], &[&str]); 4] = [
        (
            "go-cpu.pb.gz",
            &["samples/count", "cpu/nanoseconds"],
            &["main.fib", "main.mix", "main.hashLoop", "main.sieve"],
        ),
        (
            "go-heap.pb.gz",
            &[
                "alloc_objects/count",
                "alloc_space/bytes",
                "inuse_objects/count",
                "inuse_space/bytes",
            ],
            &[
                "main.allocRetained",
                "main.allocList",
                "main.allocTransient",
            ],
        ),
        (
            "go-mutex.pb.gz",
            &["contentions/count", "delay/nanoseconds"],
            &["main.holdLock"],
        ),
        (
            "go-block.pb.gz",
            &["contentions/count", "delay/nanoseconds"],
            &[
                "main.recvFromChan",
                "main.waitForGroup",
                "main.selectTimeout",
            ],
        ),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".pb.gz") {
            load(&path);
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} fixtures");
    for (file, types, functions) in expect {
        let p = load(&fixtures_dir().join(file));
        assert_eq!(type_names(&p), types, "{file}");
        assert!(!p.sample.is_empty(), "{file}");
        assert!(p.time_nanos > 0 && p.string_table[0].is_empty(), "{file}");
        let names = function_names(&p);
        for f in functions {
            assert!(names.contains(f), "{file} lacks {f}");
        }
    }
    // The CPU profile carries the pprof.Do labels.
    let cpu = load(&fixtures_dir().join("go-cpu.pb.gz"));
    let workers: std::collections::BTreeSet<&str> = cpu
        .sample
        .iter()
        .flat_map(|s| &s.label)
        .filter(|l| cpu.string(l.key) == "worker")
        .map(|l| cpu.string(l.str))
        .collect();
    assert_eq!(workers.into_iter().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn google_large_cpu() {
    let Some(dir) = google_pprof_fixtures() else {
        return;
    };
    let p = load(&dir.join("large.cpu"));
    assert_eq!(type_names(&p), ["samples/count", "cpu/nanoseconds"]);
    assert_eq!(p.sample.len(), 20430);
    assert_eq!(p.location.len(), 23355);
    assert_eq!(p.function.len(), 23038);
    assert_eq!(p.mapping.len(), 4);
    // Big enough to cross chunk boundaries on both pools.
    let raw = p.encode();
    assert!(decode_on_every_pool(&raw) == p);
}

#[test]
fn google_sample_cpu() {
    let Some(dir) = google_pprof_fixtures() else {
        return;
    };
    let p = load(&dir.join("sample.cpu"));
    assert_eq!(p.sample.len(), 76);
    assert_eq!(p.location.len(), 86);
    assert_eq!(p.function.len(), 14);
}

#[test]
fn google_cppbench_without_sample_types() {
    let Some(dir) = google_pprof_fixtures() else {
        return;
    };
    let p = load(&dir.join("cppbench.cpu_no_samples_type"));
    assert_eq!(type_names(&p), ["cpu/nanoseconds"]);
    assert_eq!(p.sample.len(), 52);
    assert_eq!(p.location.len(), 109);
    assert_eq!(p.function.len(), 0);
    assert_ne!(p.drop_frames, 0);
    assert!(!p.string(p.drop_frames).is_empty());
}

#[test]
fn google_go_nomappings_crash() {
    let Some(dir) = google_pprof_fixtures() else {
        return;
    };
    let path = dir.join("go.nomappings.crash");
    let p = load(&path);
    assert_eq!(p.sample_type.len(), 4);
    assert_eq!(p.sample.len(), 2);
    assert_eq!(p.location.len(), 11);
    assert!(p.mapping.is_empty());
    // The file itself writes no mapping_id (0) and no mappings; `go tool pprof
    // -raw` shows `M=1` only because pprof then adds a fake mapping for such
    // profiles. The view keeps what the file says: no mapping.
    let data = ProfileData::open(&path, DEFAULT_MAX_DECOMPRESSED).unwrap();
    let view = data.view().unwrap();
    assert_eq!(view.locations().len(), 11);
    for l in view.locations() {
        assert_eq!(l.mapping_id, 0, "location {}", l.id);
        assert_eq!(l.mapping, None, "location {}", l.id);
    }
}

#[test]
fn dangling_mapping_ids_are_kept_without_a_mapping() {
    // What pprof allows (`CheckValid` only checks mappings that resolve):
    // location 1 names mapping 1 and there is none; location 2 names
    // mapping 9 while only mapping 5 exists.
    for mapping in [
        vec![],
        vec![Mapping {
            id: 5,
            ..Mapping::default()
        }],
    ] {
        let mut p = Profile::new();
        p.mapping = mapping;
        p.location = vec![
            Location {
                id: 1,
                mapping_id: 1,
                ..Location::default()
            },
            Location {
                id: 2,
                mapping_id: 9,
                ..Location::default()
            },
            Location {
                id: 3,
                mapping_id: 5,
                ..Location::default()
            },
        ];
        let raw = p.encode();
        let view = ProfileView::decode(&raw).unwrap();
        assert_eq!(view.locations()[0].mapping, None);
        assert_eq!(view.locations()[1].mapping, None);
        let has_five = !p.mapping.is_empty();
        assert_eq!(view.locations()[2].mapping, has_five.then_some(0));
        assert_eq!(view.locations()[0].mapping_id, 1);
        check_round_trip(&p);
    }
}
