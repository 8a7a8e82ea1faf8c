//! `firewatch-profile`'s robustness: thousands of mutated profiles
//! (truncated, bit-flipped, spliced, with varints blown up, ...) built with a
//! fixed-seed PRNG from every fixture (google/pprof's test data from
//! `FIREWATCH_CONFORMANCE_DIR` included) and some generated profiles, raw and
//! gzip. The decoder must never panic, must answer `Ok` or `Err`, and whatever
//! it accepts must be a valid profile that round-trips. Decompression must
//! respect its cap.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use firewatch::synth::{self, Config, Ids, Rng};
use firewatch::{fixtures_dir, google_pprof_fixtures};
use firewatch_profile::{decompress, Profile, ProfileView};

/// The cap for the decompression checks.
const LIMIT: u64 = 8 << 20;

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

struct Input {
    name: String,
    raw: Vec<u8>,
    gzip: Vec<u8>,
}

impl Input {
    fn from_profile(name: &str, p: &Profile) -> Input {
        Input {
            name: name.into(),
            raw: p.encode(),
            gzip: p.encode_gzip(),
        }
    }

    fn from_file(path: &Path) -> Input {
        let gzip = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(firewatch_profile::is_gzip(&gzip), "{}", path.display());
        let raw = decompress(&gzip, 1 << 30).unwrap().into_owned();
        Input {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            raw,
            gzip,
        }
    }
}

/// A small synthetic CPU profile with every field set (see
/// `firewatch::synth::Config::every_field`), of `samples` samples over 100
/// functions and 150 locations.
fn generated(seed: u64, samples: usize, ids: Ids) -> Profile {
    synth::generate(&Config {
        samples,
        locations: 150,
        functions: synth::MIN_FUNCTIONS,
        seed,
        ids,
        every_field: true,
    })
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

/// Where varints (keys, values, lengths) lie, found by walking the message and
/// every length-delimited payload that parses as a message.
fn varints(buf: &[u8], base: usize, depth: usize, out: &mut Vec<(usize, usize)>) -> bool {
    let mark = out.len();
    let mut pos = 0;
    let read = |pos: &mut usize, out: &mut Vec<(usize, usize)>| -> Option<u64> {
        let start = *pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = *buf.get(*pos)?;
            *pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                out.push((base + start, base + *pos));
                return Some(v);
            }
        }
        None
    };
    let ok = loop {
        if pos >= buf.len() {
            break true;
        }
        let Some(key) = read(&mut pos, out) else {
            break false;
        };
        match key & 7 {
            0 => {
                if read(&mut pos, out).is_none() {
                    break false;
                }
            }
            2 => {
                let Some(len) = read(&mut pos, out) else {
                    break false;
                };
                if len > (buf.len() - pos) as u64 {
                    break false;
                }
                let end = pos + len as usize;
                if depth < 3 {
                    varints(&buf[pos..end], base + pos, depth + 1, out);
                }
                pos = end;
            }
            1 if buf.len() - pos >= 8 => pos += 8,
            5 if buf.len() - pos >= 4 => pos += 4,
            _ => break false,
        }
    };
    if !ok {
        out.truncate(mark);
    }
    ok
}

fn encode_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

const KINDS: [&str; 8] = [
    "truncate",
    "flip bytes",
    "insert bytes",
    "delete bytes",
    "0xff run",
    "swap chunks",
    "huge varint",
    "several",
];

/// One mutation of `kind` (an index into `KINDS`).
fn mutate(input: &[u8], kind: usize, rng: &mut Rng, varint_spots: &[(usize, usize)]) -> Vec<u8> {
    let mut v = input.to_vec();
    let n = v.len();
    match kind {
        0 => v.truncate(rng.below(n)),
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(n);
                v[at] ^= 1 << rng.below(8) | (rng.next_u64() as u8) & (rng.below(2) as u8 * 0xff);
            }
        }
        2 => {
            let at = rng.below(n + 1);
            let bytes: Vec<u8> = (0..1 + rng.below(8))
                .map(|_| rng.next_u64() as u8)
                .collect();
            v.splice(at..at, bytes);
        }
        3 => {
            let at = rng.below(n);
            let len = (1 + rng.below(16)).min(n - at);
            v.drain(at..at + len);
        }
        4 => {
            let at = rng.below(n);
            let len = (1 + rng.below(12)).min(n - at);
            v[at..at + len].fill(0xff);
        }
        5 => {
            let len = 1 + rng.below((n / 4).clamp(1, 64));
            if n > 2 * len {
                let a = rng.below(n - 2 * len + 1);
                let b = a + len + rng.below(n - a - 2 * len + 1);
                let chunk_a = v[a..a + len].to_vec();
                v.copy_within(b..b + len, a);
                v[b..b + len].copy_from_slice(&chunk_a);
            } else {
                v.reverse();
            }
        }
        6 => {
            let huge = match rng.below(5) {
                0 => u64::MAX,
                1 => 1 << 63,
                2 => u32::MAX as u64 + 1,
                3 => u32::MAX as u64,
                _ => rng.next_u64() | 1 << 40,
            };
            if varint_spots.is_empty() {
                v.extend(encode_varint(huge));
            } else {
                let (start, end) = varint_spots[rng.below(varint_spots.len())];
                v.splice(start..end, encode_varint(huge));
            }
        }
        _ => {
            // Two or three of the above, one after another.
            for _ in 0..2 + rng.below(2) {
                if v.is_empty() {
                    break;
                }
                v = mutate(&v, rng.below(6), rng, &[]);
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
    failures: Vec<String>,
}

impl Tally {
    fn total(&self) -> usize {
        self.accepted + self.rejected + self.failures.len()
    }
}

/// Decodes one variant every way; records a failure (with the bytes saved for
/// reproduction) on a panic or a broken invariant.
fn check(label: &str, bytes: &[u8], tally: &mut Tally) {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<bool, String> {
        // Decompression stays under the cap, or fails.
        if let Ok(out) = decompress(bytes, LIMIT) {
            if out.len() as u64 > LIMIT {
                return Err(format!("decompress gave {} bytes over the cap", out.len()));
            }
        }
        let decoded = Profile::decode(bytes);
        // The borrowed view agrees on raw input.
        if !firewatch_profile::is_gzip(bytes) {
            let view = ProfileView::decode(bytes).map(|v| v.to_profile());
            match (&decoded, &view) {
                (Ok(a), Ok(b)) if a == b => {}
                (Err(_), Err(_)) => {}
                _ => return Err("Profile::decode and ProfileView::decode disagree".into()),
            }
        }
        match decoded {
            Ok(p) => {
                // Whatever is accepted is valid and round-trips.
                p.validate()
                    .map_err(|e| format!("accepted but invalid: {e}"))?;
                let back = Profile::decode(&p.encode())
                    .map_err(|e| format!("accepted but re-encoding fails: {e}"))?;
                if back != p {
                    return Err("accepted but does not round-trip".into());
                }
                Ok(true)
            }
            Err(e) => {
                // Errors render (Display must not panic either).
                let _ = e.to_string();
                Ok(false)
            }
        }
    }));
    let failure = match outcome {
        Ok(Ok(true)) => return tally.accepted += 1,
        Ok(Ok(false)) => return tally.rejected += 1,
        Ok(Err(why)) => why,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("PANIC: {what}")
        }
    };
    let dir = std::env::temp_dir().join("firewatch-mutation-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}.bin", tally.failures.len()));
    let _ = std::fs::write(&file, bytes);
    tally.failures.push(format!(
        "{label}: {failure} (input saved to {})",
        file.display()
    ));
}

/// `count` variants of each form of `input`.
fn mutate_input(input: &Input, count: usize, seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    for (form, bytes) in [("raw", &input.raw), ("gzip", &input.gzip)] {
        let mut spots = Vec::new();
        if form == "raw" {
            varints(bytes, 0, 0, &mut spots);
            assert!(!spots.is_empty(), "{}: no varints found", input.name);
        }
        for i in 0..count {
            let kind = i % KINDS.len();
            let variant = mutate(bytes, kind, &mut rng, &spots);
            let label = format!("{} ({form}) #{i} {}", input.name, KINDS[kind]);
            check(&label, &variant, tally);
        }
        // Every prefix of small inputs, too.
        if bytes.len() <= 300 {
            for cut in 0..bytes.len() {
                check(
                    &format!("{} ({form}) cut at {cut}", input.name),
                    &bytes[..cut],
                    tally,
                );
            }
        }
    }
}

#[test]
fn mutated_profiles_never_panic() {
    let mut small = Vec::new();
    let repo = fixtures_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 4,
        "repo fixtures missing from {}",
        repo.display()
    );
    small.extend(names.iter().map(|p| Input::from_file(p)));
    let google = google_pprof_fixtures();
    if let Some(dir) = &google {
        for name in [
            "sample.cpu",
            "cppbench.cpu_no_samples_type",
            "go.nomappings.crash",
        ] {
            small.push(Input::from_file(&dir.join(name)));
        }
    }
    small.push(Input::from_profile("tiny", &{
        let mut p = Profile::new();
        p.time_nanos = 1;
        p
    }));
    small.push(Input::from_profile(
        "generated",
        &generated(1, 40, Ids::Sequential),
    ));
    small.push(Input::from_profile(
        "generated-sparse",
        &generated(2, 40, Ids::Sparse),
    ));
    small.push(Input::from_profile(
        "generated-chunks",
        &generated(3, 700, Ids::Sparse),
    ));

    // Sanity: every unmutated input decodes.
    for input in &small {
        Profile::decode(&input.raw).unwrap_or_else(|e| panic!("{}: {e}", input.name));
        Profile::decode(&input.gzip).unwrap_or_else(|e| panic!("{}: {e}", input.name));
    }

    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for (i, input) in small.iter().enumerate() {
        // 80 variants of each (all are under 200 KB raw; the largest, the
        // 700-sample generated profile, is about 140 KB); fewer for a larger one.
        let count = if input.raw.len() > 200_000 { 40 } else { 80 };
        mutate_input(input, count, 0x5eed_0000 + i as u64, &mut tally);
    }
    // large.cpu (2.4 MB raw) is slow to decode in a debug build: a few variants.
    if let Some(dir) = &google {
        let large = Input::from_file(&dir.join("large.cpu"));
        let count = if cfg!(debug_assertions) { 10 } else { 40 };
        mutate_input(&large, count, 0x1a46e, &mut tally);
    }

    println!(
        "{} variants: {} accepted, {} rejected, {} failures ({:.1?})",
        tally.total(),
        tally.accepted,
        tally.rejected,
        tally.failures.len(),
        started.elapsed()
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(tally.total() >= 1000, "only {} variants", tally.total());
    assert!(tally.rejected > 0 && tally.accepted > 0);
}

#[test]
fn varint_walker_finds_the_fields() {
    // Sanity check of the test's own helper on a known encoding.
    let p = generated(9, 3, Ids::Sequential);
    let raw = p.encode();
    let mut spots = Vec::new();
    assert!(varints(&raw, 0, 0, &mut spots));
    // Every key of the top level, at least.
    assert!(spots.len() > p.sample.len() + p.location.len() + p.function.len());
    for (start, end) in spots {
        assert!(start < end && end <= raw.len());
        assert!(raw[end - 1] < 0x80);
    }
}

// ---------------------------------------------------------------------------
// Field soup: random (mostly well-formed) protobuf built from profile.proto's
// field numbers, with small values so that ids and string indexes often
// resolve. This reaches the validation paths that byte-level mutation rarely
// gets past.
// ---------------------------------------------------------------------------

mod soup {
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub enum Field {
        Varint(u64, u64),
        Packed(u64, Vec<u64>),
        Bytes(u64, Vec<u8>),
        Message(u64, Vec<Field>),
        Fixed64(u64),
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![10 => 1..=15u64, 1 => 16..=40u64]
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![8 => 0..6u64, 1 => any::<u64>(), 1 => Just(u64::MAX)]
    }

    pub fn fields() -> impl Strategy<Value = Vec<Field>> {
        let leaf = prop_oneof![
            4 => (number(), value()).prop_map(|(n, v)| Field::Varint(n, v)),
            2 => (number(), prop::collection::vec(value(), 0..5)).prop_map(|(n, v)| Field::Packed(n, v)),
            1 => (number(), prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(n, b)| Field::Bytes(n, b)),
            1 => number().prop_map(Field::Fixed64),
        ];
        let field = leaf.prop_recursive(2, 24, 6, |inner| {
            (number(), prop::collection::vec(inner, 0..6)).prop_map(|(n, f)| Field::Message(n, f))
        });
        prop::collection::vec(field, 0..24)
    }

    fn varint(out: &mut Vec<u8>, v: u64) {
        out.extend(super::encode_varint(v));
    }

    pub fn encode(fields: &[Field], out: &mut Vec<u8>) {
        for f in fields {
            match f {
                Field::Varint(n, v) => {
                    varint(out, n << 3);
                    varint(out, *v);
                }
                Field::Packed(n, vs) => {
                    let mut body = Vec::new();
                    vs.iter().for_each(|&v| varint(&mut body, v));
                    varint(out, n << 3 | 2);
                    varint(out, body.len() as u64);
                    out.extend(body);
                }
                Field::Bytes(n, b) => {
                    varint(out, n << 3 | 2);
                    varint(out, b.len() as u64);
                    out.extend(b);
                }
                Field::Message(n, fs) => {
                    let mut body = Vec::new();
                    encode(fs, &mut body);
                    varint(out, n << 3 | 2);
                    varint(out, body.len() as u64);
                    out.extend(body);
                }
                Field::Fixed64(n) => {
                    varint(out, n << 3 | 1);
                    out.extend([7; 8]);
                }
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    #[test]
    fn field_soup_never_panics(
        strings in 0..5usize,
        fields in soup::fields(),
    ) {
        // Usually a valid string table first, so decoding gets past that check.
        let mut bytes = Vec::new();
        for i in 0..strings {
            bytes.extend([0x32, i.min(1) as u8]);
            if i > 0 {
                bytes.push(b'a' + i as u8);
            }
        }
        soup::encode(&fields, &mut bytes);
        let mut tally = Tally::default();
        check("soup", &bytes, &mut tally);
        proptest::prop_assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    }
}
