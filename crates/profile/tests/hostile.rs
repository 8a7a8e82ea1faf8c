//! Hostile inputs: each must be refused with a specific error that names the
//! field and the byte offset (or the file) where things went wrong.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use firewatch_profile::{
    decompress, Error, Function, Line, Location, Profile, ProfileData, ProfileView, Sample,
    ValueType, DEFAULT_MAX_DECOMPRESSED,
};

// ---------------------------------------------------------------------------
// An allocator that tracks, per thread, the peak of live bytes allocated since
// a reset, so the gzip-bomb test can check that decompression stays near its cap.
// ---------------------------------------------------------------------------

struct Tracking;

/// The largest single allocation requested by any thread since the last reset.
static BIGGEST: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    BIGGEST.fetch_max(delta.max(0) as usize, Ordering::Relaxed);
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result and the peak bytes it had live at once
/// (on this thread).
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let out = f();
    (out, PEAK.with(Cell::get).max(0) as usize)
}

// ---------------------------------------------------------------------------
// A tiny protobuf writer, independent of the crate's own.
// ---------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn new() -> Pb {
        Pb::default()
    }

    fn raw_varint(mut self, mut v: u64) -> Pb {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    fn key(self, field: u64, wire: u64) -> Pb {
        self.raw_varint(field << 3 | wire)
    }

    fn uint(self, field: u64, v: u64) -> Pb {
        self.key(field, 0).raw_varint(v)
    }

    fn bytes(self, field: u64, b: &[u8]) -> Pb {
        let mut me = self.key(field, 2).raw_varint(b.len() as u64);
        me.0.extend_from_slice(b);
        me
    }

    fn msg(self, field: u64, m: Pb) -> Pb {
        self.bytes(field, &m.0)
    }

    fn packed(self, field: u64, values: &[u64]) -> Pb {
        let inner = values.iter().fold(Pb::new(), |p, &v| p.raw_varint(v));
        self.bytes(field, &inner.0)
    }

    fn raw(mut self, b: &[u8]) -> Pb {
        self.0.extend_from_slice(b);
        self
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Top-level fields of `profile.proto`.
const SAMPLE_TYPE: u64 = 1;
const SAMPLE: u64 = 2;
const MAPPING: u64 = 3;
const LOCATION: u64 = 4;
const FUNCTION: u64 = 5;
const STRING_TABLE: u64 = 6;
const TIME_NANOS: u64 = 9;

/// A string table `["", "cpu", "nanoseconds", "main"]`.
fn strings() -> Pb {
    ["", "cpu", "nanoseconds", "main"]
        .iter()
        .fold(Pb::new(), |p, s| p.bytes(STRING_TABLE, s.as_bytes()))
}

/// `cpu/nanoseconds`.
fn sample_type() -> Pb {
    Pb::new().uint(1, 1).uint(2, 2)
}

fn decode(bytes: &[u8]) -> Error {
    match ProfileView::decode(bytes) {
        Ok(_) => panic!("hostile input accepted"),
        Err(e) => e,
    }
}

/// Asserts `e` is `Malformed` in `field`, at an offset in `range`, and that
/// its message says so; returns the offset and the message.
fn assert_malformed(
    e: Error,
    field: &str,
    range: std::ops::RangeInclusive<usize>,
    detail: &str,
) -> usize {
    let message = e.to_string();
    match e {
        Error::Malformed {
            offset,
            field: f,
            detail: d,
        } => {
            assert_eq!(f, field, "{message}");
            assert!(range.contains(&offset), "offset {offset}: {message}");
            assert!(d.contains(detail), "{message}");
            assert!(message.contains(field), "{message}");
            assert!(message.contains(&format!("byte {offset}")), "{message}");
            offset
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn assert_invalid(e: Error, needles: &[&str]) {
    let message = e.to_string();
    match e {
        Error::Invalid(detail) => {
            for needle in needles {
                assert!(detail.contains(needle), "{needle:?} not in: {message}");
            }
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The sanity check: the hand-written bytes are valid before we break them.
// ---------------------------------------------------------------------------

fn good() -> Pb {
    Pb::new()
        .msg(SAMPLE_TYPE, sample_type())
        .msg(SAMPLE, Pb::new().packed(1, &[1]).packed(2, &[7]))
        .msg(
            LOCATION,
            Pb::new().uint(1, 1).msg(4, Pb::new().uint(1, 1).uint(2, 3)),
        )
        .msg(FUNCTION, Pb::new().uint(1, 1).uint(2, 3))
        .raw(&strings().0)
}

#[test]
fn the_hand_written_profile_is_valid() {
    let p = ProfileView::decode(&good().0).unwrap().to_profile();
    assert_eq!(p.sample[0].value, [7]);
    assert_eq!(p.string(p.function[0].name), "main");
    assert_eq!(p.location[0].line[0].line, 3);
}

// ---------------------------------------------------------------------------
// Not a profile at all
// ---------------------------------------------------------------------------

#[test]
fn empty_input() {
    assert!(matches!(ProfileView::decode(&[]), Err(Error::Empty)));
    assert!(matches!(Profile::decode(&[]), Err(Error::Empty)));
    assert_eq!(Profile::decode(&[]).unwrap_err().to_string(), "empty input");
}

#[test]
fn first_string_not_empty() {
    let bytes = Pb::new().bytes(STRING_TABLE, b"oops");
    assert_invalid(decode(&bytes.0), &["string_table[0]"]);
    // No string table at all is the same error.
    let bytes = Pb::new().uint(TIME_NANOS, 5);
    assert_invalid(decode(&bytes.0), &["string_table[0]"]);
}

// ---------------------------------------------------------------------------
// References that do not resolve
// ---------------------------------------------------------------------------

#[test]
fn string_index_out_of_range_in_function_name() {
    let head = strings();
    let function = Pb::new().uint(1, 1).uint(2, 99);
    let bytes = head.clone().msg(FUNCTION, function.clone());
    // The function's payload starts after its key and length byte.
    let start = head.len() + 2;
    let e = decode(&bytes.0);
    let message = e.to_string();
    assert_malformed(
        e,
        "function.name",
        start..=start + function.len(),
        "string index 99",
    );
    assert!(message.contains("4 entries"), "{message}");
}

#[test]
fn string_index_out_of_range_elsewhere() {
    // A label key, a mapping filename and a sample type's unit.
    let label = Pb::new()
        .msg(SAMPLE_TYPE, sample_type())
        .msg(
            SAMPLE,
            Pb::new()
                .packed(2, &[1])
                .msg(3, Pb::new().uint(1, 1000).uint(2, 1)),
        )
        .raw(&strings().0);
    assert_malformed(decode(&label.0), "label.key", 0..=label.len(), "1000");
    let mapping = Pb::new()
        .msg(MAPPING, Pb::new().uint(1, 1).uint(5, 4))
        .raw(&strings().0);
    assert_malformed(
        decode(&mapping.0),
        "mapping.filename",
        0..=mapping.len(),
        "4",
    );
    let unit = Pb::new()
        .msg(SAMPLE_TYPE, Pb::new().uint(1, 1).uint(2, 7))
        .raw(&strings().0);
    assert_invalid(decode(&unit.0), &["sample_type unit", "byte 1", "index 7"]);
    // A negative index (as int64) is out of range too.
    let negative = strings().uint(7, u64::MAX);
    assert_invalid(decode(&negative.0), &["drop_frames"]);
}

#[test]
fn sample_with_a_missing_location() {
    let head = Pb::new().msg(SAMPLE_TYPE, sample_type());
    let bytes = head
        .clone()
        .msg(SAMPLE, Pb::new().packed(1, &[1, 42]).packed(2, &[7]))
        .msg(LOCATION, Pb::new().uint(1, 1))
        .raw(&strings().0);
    let at = head.len() + 2;
    assert_invalid(
        decode(&bytes.0),
        &["sample 0", &format!("byte {at}"), "location id 42"],
    );
}

#[test]
fn missing_location_in_a_late_parallel_chunk_is_reported_with_its_index() {
    // 3000 samples span several chunks; sample 2999 is the broken one.
    let mut p = Profile::new();
    p.sample_type = vec![ValueType { r#type: 0, unit: 0 }];
    p.location = vec![Location {
        id: 1,
        ..Location::default()
    }];
    p.sample = (0..3000)
        .map(|i| Sample {
            location_id: vec![if i == 2999 { 2 } else { 1 }],
            value: vec![i],
            label: vec![],
        })
        .collect();
    assert_invalid(decode(&p.encode()), &["sample 2999 ", "location id 2,"]);
}

/// Regression: with several faults in different parallel chunks, the error
/// used to be whichever a thread hit first, so it changed from run to run.
/// It is now always the first fault in input order (as pprof reports).
#[test]
fn the_first_of_several_faults_is_reported_every_time() {
    let mut p = Profile::new();
    p.sample_type = vec![ValueType { r#type: 0, unit: 0 }];
    // Functions 300 and 2900 have a bad name; locations 400 and 2800 a line
    // naming no function; samples 9000 and 10001 a missing location.
    let bad_function = |i: usize| i == 300 || i == 2900;
    let bad_location = |i: usize| i == 400 || i == 2800;
    p.function = (0..3000)
        .map(|i| Function {
            id: i as u64 + 1,
            name: if bad_function(i) { 1000 + i as i64 } else { 0 },
            ..Function::default()
        })
        .collect();
    p.location = (0..3000)
        .map(|i| Location {
            id: i as u64 + 1,
            line: vec![Line {
                function_id: if bad_location(i) {
                    90_000 + i as u64
                } else {
                    1
                },
                line: 1,
                column: 0,
            }],
            ..Location::default()
        })
        .collect();
    p.sample = (0..20_000)
        .map(|i| Sample {
            location_id: vec![if i == 9000 || i == 10_001 {
                7000 + i
            } else {
                1
            }],
            value: vec![i as i64],
            label: vec![],
        })
        .collect();
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let decode = |p: &Profile| {
        let raw = p.encode();
        let first = decode(&raw).to_string();
        for _ in 0..30 {
            let again = four.install(|| ProfileView::decode(&raw).map(drop).unwrap_err());
            assert_eq!(again.to_string(), first);
        }
        first
    };
    let e = decode(&p);
    assert!(e.contains("function.name") && e.contains("1300"), "{e}");
    for f in &mut p.function {
        f.name = 0;
    }
    let e = decode(&p);
    assert!(e.contains("location.line") && e.contains("90400"), "{e}");
    for l in &mut p.location {
        l.line[0].function_id = 1;
    }
    let e = decode(&p);
    assert!(e.contains("sample 9000 ") && e.contains("16000"), "{e}");
}

#[test]
fn line_with_a_missing_function() {
    let location = Pb::new()
        .uint(1, 1)
        .msg(4, Pb::new().uint(1, 1).uint(2, 3))
        .msg(4, Pb::new().uint(1, 77).uint(2, 4));
    let head = Pb::new();
    let bytes = head
        .clone()
        .msg(LOCATION, location.clone())
        .msg(FUNCTION, Pb::new().uint(1, 1).uint(2, 3))
        .raw(&strings().0);
    assert_malformed(
        decode(&bytes.0),
        "location.line",
        2..=2 + location.len(),
        "function id 77",
    );
    // Function id 0 names no function either.
    let zero = Pb::new()
        .msg(LOCATION, Pb::new().uint(1, 1).msg(4, Pb::new().uint(2, 5)))
        .raw(&strings().0);
    assert_malformed(decode(&zero.0), "location.line", 0..=zero.len(), "id 0");
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

#[test]
fn duplicate_location_ids() {
    let bytes = Pb::new()
        .msg(LOCATION, Pb::new().uint(1, 5))
        .msg(LOCATION, Pb::new().uint(1, 6))
        .msg(LOCATION, Pb::new().uint(1, 5))
        .raw(&strings().0);
    assert_invalid(decode(&bytes.0), &["location", "id 5"]);
    // Also when the first ids look sequential.
    let bytes = Pb::new()
        .msg(FUNCTION, Pb::new().uint(1, 1))
        .msg(FUNCTION, Pb::new().uint(1, 2))
        .msg(FUNCTION, Pb::new().uint(1, 2))
        .raw(&strings().0);
    assert_invalid(decode(&bytes.0), &["function", "id 2"]);
}

#[test]
fn reserved_id_zero() {
    for (field, what) in [
        (LOCATION, "location"),
        (FUNCTION, "function"),
        (MAPPING, "mapping"),
    ] {
        // An id field written as 0, and an id field left out: both are id 0.
        for zero in [Pb::new().uint(1, 0), Pb::new()] {
            let bytes = Pb::new()
                .msg(field, Pb::new().uint(1, 1))
                .msg(field, zero)
                .raw(&strings().0);
            assert_invalid(decode(&bytes.0), &[what, "reserved id 0"]);
        }
        // A lone message with id 0.
        let bytes = Pb::new().msg(field, Pb::new()).raw(&strings().0);
        assert_invalid(decode(&bytes.0), &[what, "reserved id 0"]);
    }
}

// ---------------------------------------------------------------------------
// Samples and sample types
// ---------------------------------------------------------------------------

#[test]
fn sample_with_the_wrong_number_of_values() {
    let head = Pb::new()
        .msg(SAMPLE_TYPE, sample_type())
        .msg(SAMPLE_TYPE, sample_type());
    for values in [&[][..], &[1], &[1, 2, 3]] {
        let bytes = head
            .clone()
            .msg(SAMPLE, Pb::new().packed(2, &[1, 2]))
            .msg(SAMPLE, Pb::new().packed(2, values))
            .raw(&strings().0);
        let at = head.len() + 2 + 4 + 2;
        assert_invalid(
            decode(&bytes.0),
            &[
                "sample 1",
                &format!("byte {at})"),
                &format!("has {} values", values.len()),
                "2 sample types",
            ],
        );
    }
    // Unpacked values count too.
    let bytes = Pb::new()
        .msg(SAMPLE_TYPE, sample_type())
        .msg(SAMPLE, Pb::new().uint(2, 1).uint(2, 2))
        .raw(&strings().0);
    assert_invalid(decode(&bytes.0), &["has 2 values"]);
}

#[test]
fn samples_without_sample_types() {
    let bytes = Pb::new().msg(SAMPLE, Pb::new()).raw(&strings().0);
    assert_invalid(decode(&bytes.0), &["no sample types"]);
    let bytes = Pb::new()
        .msg(SAMPLE, Pb::new().packed(2, &[5]))
        .raw(&strings().0);
    assert_invalid(decode(&bytes.0), &["sample"]);
}

/// Regression: `decode_samples` used to reserve `samples × sample types`
/// values per chunk before checking any sample, so a file of a few KB (gzip)
/// declaring a million sample types and 600k empty samples asked for 131 GB
/// at once and aborted the process ("memory allocation failed").
#[test]
fn many_sample_types_do_not_reserve_memory_the_input_cannot_fill() {
    let mut raw = Pb::new().bytes(STRING_TABLE, b"");
    for _ in 0..1_000_000 {
        raw = raw.msg(SAMPLE_TYPE, Pb::new());
    }
    for _ in 0..600_000 {
        raw = raw.msg(SAMPLE, Pb::new());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw.0).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 << 10, "{} bytes", gz.len());
    // One thread: the largest chunks (16384 samples).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    BIGGEST.store(0, Ordering::Relaxed);
    let e = pool.install(|| Profile::decode(&gz)).unwrap_err();
    let biggest = BIGGEST.load(Ordering::Relaxed);
    assert_invalid(e, &["sample 0", "has 0 values", "1000000 sample types"]);
    assert!(biggest < 256 << 20, "allocated {biggest} bytes at once");
}

// ---------------------------------------------------------------------------
// Broken wire format
// ---------------------------------------------------------------------------

#[test]
fn truncated_varint() {
    let bytes = strings().key(TIME_NANOS, 0).raw(&[0x80, 0x80]);
    let end = bytes.len();
    let offset = assert_malformed(
        decode(&bytes.0),
        "profile.time_nanos",
        end..=end,
        "truncated varint",
    );
    assert_eq!(offset, end);
    // Inside a nested message: the sample's packed values end mid-varint.
    let bytes = Pb::new()
        .msg(SAMPLE_TYPE, sample_type())
        .msg(SAMPLE, Pb::new().bytes(2, &[0x81]))
        .raw(&strings().0);
    assert_malformed(decode(&bytes.0), "sample.value", 0..=12, "truncated varint");
    // A key cut short.
    let bytes = strings().raw(&[0xc8]);
    assert_malformed(
        decode(&bytes.0),
        "profile",
        0..=bytes.len(),
        "truncated varint",
    );
}

#[test]
fn length_past_the_end() {
    let head = strings();
    let bytes = head.clone().key(STRING_TABLE, 2).raw(&[5, b'a']);
    let offset = assert_malformed(
        decode(&bytes.0),
        "profile.string_table",
        0..=bytes.len(),
        "runs past the end",
    );
    assert_eq!(offset, head.len() + 2);
    // A nested message whose length overruns its parent (but not the input).
    let bytes = Pb::new()
        .msg(LOCATION, Pb::new().uint(1, 1).key(4, 2).raw(&[50]))
        .raw(&strings().0);
    assert_malformed(
        decode(&bytes.0),
        "location.line",
        0..=bytes.len(),
        "runs past the end",
    );
    // A huge length (near u64::MAX) must not overflow.
    let bytes = strings().key(SAMPLE, 2).raw_varint(u64::MAX);
    assert_malformed(
        decode(&bytes.0),
        "profile.sample",
        0..=bytes.len(),
        "runs past the end",
    );
}

#[test]
fn varint_longer_than_ten_bytes() {
    let head = strings().key(TIME_NANOS, 0);
    let bytes = head.clone().raw(&[0xff; 10]).raw(&[0x01]);
    assert_malformed(
        decode(&bytes.0),
        "profile.time_nanos",
        head.len()..=bytes.len(),
        "varint",
    );
    // Ten bytes whose last one carries bits beyond 64.
    let bytes = head.clone().raw(&[0xff; 9]).raw(&[0x02]);
    assert_malformed(
        decode(&bytes.0),
        "profile.time_nanos",
        head.len()..=bytes.len(),
        "overflows 64 bits",
    );
    // The largest valid one (u64::MAX) is fine.
    let bytes = head.raw(&[0xff; 9]).raw(&[0x01]);
    assert_eq!(ProfileView::decode(&bytes.0).unwrap().time_nanos(), -1);
}

#[test]
fn group_wire_types() {
    for wire in [3, 4] {
        // An unknown top-level field.
        let bytes = strings().key(100, wire);
        assert_malformed(
            decode(&bytes.0),
            "profile",
            0..=bytes.len(),
            &format!("wire type {wire}"),
        );
        // A known field with the wrong wire type.
        let bytes = strings().key(SAMPLE, wire);
        assert_malformed(
            decode(&bytes.0),
            "profile.sample",
            0..=bytes.len(),
            &format!("wire type {wire}"),
        );
        // An unknown field inside a location.
        let bytes = Pb::new()
            .msg(LOCATION, Pb::new().uint(1, 1).key(20, wire))
            .raw(&strings().0);
        assert_malformed(
            decode(&bytes.0),
            "location",
            0..=bytes.len(),
            &format!("wire type {wire}"),
        );
    }
    // Wire types 6 and 7 do not exist.
    for wire in [6, 7] {
        let bytes = strings().key(100, wire);
        assert_malformed(decode(&bytes.0), "profile", 0..=bytes.len(), "wire type");
    }
}

#[test]
fn field_number_zero() {
    let bytes = strings().raw(&[0x00, 0x00]);
    assert_malformed(
        decode(&bytes.0),
        "profile",
        0..=bytes.len(),
        "field number 0",
    );
}

#[test]
fn truncated_fixed_width_field() {
    let bytes = strings().key(100, 1).raw(&[1, 2, 3]);
    assert_malformed(decode(&bytes.0), "profile", 0..=bytes.len(), "truncated");
    let bytes = strings().key(100, 5).raw(&[1]);
    assert_malformed(decode(&bytes.0), "profile", 0..=bytes.len(), "truncated");
}

fn small_profile(time_nanos: i64) -> Profile {
    let mut p = Profile::new();
    let cpu = p.push_string("cpu");
    let ns = p.push_string("nanoseconds");
    let main = p.push_string("main");
    p.sample_type = vec![ValueType {
        r#type: cpu,
        unit: ns,
    }];
    p.function = vec![Function {
        id: 1,
        name: main,
        ..Function::default()
    }];
    p.location = vec![Location {
        id: 1,
        line: vec![Line {
            function_id: 1,
            line: 1,
            column: 0,
        }],
        ..Location::default()
    }];
    p.sample = vec![Sample {
        location_id: vec![1],
        value: vec![10],
        label: vec![],
    }];
    p.time_nanos = time_nanos;
    p
}

#[test]
fn concatenated_profiles() {
    let first = small_profile(1_000).encode();
    let second = small_profile(2_000).encode();
    let both = [first.clone(), second].concat();
    let offset = assert_malformed(
        decode(&both),
        "profile.time_nanos",
        first.len()..=both.len(),
        "concatenated",
    );
    assert!(offset > first.len());
    // The same through gzip: two members, as `cat a.pb.gz b.pb.gz` gives.
    let gz = [
        small_profile(1_000).encode_gzip(),
        small_profile(2_000).encode_gzip(),
    ]
    .concat();
    assert!(matches!(
        Profile::decode(&gz),
        Err(Error::Malformed { ref field, .. }) if field == "profile.time_nanos"
    ));
}

// ---------------------------------------------------------------------------
// Gzip
// ---------------------------------------------------------------------------

fn repo_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn corrupt_gzip() {
    for name in ["go-cpu.pb.gz", "go-heap.pb.gz"] {
        let mut gz = repo_fixture(name);
        Profile::decode(&gz).unwrap();
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 8] {
            *b ^= 0xff;
        }
        let e = Profile::decode(&gz).unwrap_err();
        assert!(matches!(e, Error::Gzip(_)), "{name}: {e:?}");
        assert!(e.to_string().starts_with("corrupt gzip data"), "{e}");
    }
    // A flipped CRC in the trailer.
    let mut gz = small_profile(1).encode_gzip();
    let at = gz.len() - 8;
    gz[at] ^= 1;
    assert!(matches!(Profile::decode(&gz), Err(Error::Gzip(_))));
    // Junk after a complete member.
    let gz = [small_profile(1).encode_gzip(), b"junk".to_vec()].concat();
    assert!(matches!(Profile::decode(&gz), Err(Error::Gzip(_))));
}

#[test]
fn truncated_gzip() {
    let gz = repo_fixture("go-cpu.pb.gz");
    for cut in [2, 5, 10, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
        let e = Profile::decode(&gz[..cut]).unwrap_err();
        assert!(matches!(e, Error::Gzip(_)), "cut at {cut}: {e:?}");
    }
}

/// A gzip file that inflates to `members` MiB of zeros (one member per MiB:
/// cheap to build, and the decoder must read all members, as Go's does).
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = enc.finish().unwrap();
    member.repeat(members)
}

#[test]
fn gzip_bomb_is_refused_without_inflating_it() {
    const LIMIT: u64 = 1 << 20;
    let bomb = gzip_bomb(64);
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
    let (result, peak) = peak_allocation(|| decompress(&bomb, LIMIT).map(|c| c.len()));
    match result {
        Err(Error::TooLarge { limit }) => assert_eq!(limit, LIMIT),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The buffer may grow a little past the cap (by doubling); never to the
    // bomb's 64 MiB.
    assert!(peak <= 4 * LIMIT as usize, "peaked at {peak} bytes");
    let message = decompress(&bomb, LIMIT).unwrap_err().to_string();
    assert!(message.contains(&LIMIT.to_string()), "{message}");
    // Exactly at the cap is fine; one byte over is not.
    let one = gzip_bomb(1);
    assert_eq!(decompress(&one, LIMIT).unwrap().len(), 1 << 20);
    assert!(matches!(
        decompress(&one, LIMIT - 1),
        Err(Error::TooLarge { .. })
    ));
    // Raw input is already held: the cap, on what inflation adds, leaves it be.
    assert!(matches!(
        decompress(&[0u8; 100], 99),
        Ok(std::borrow::Cow::Borrowed(b)) if b.len() == 100
    ));
    // A lying ISIZE trailer (claiming 4 GiB) must not make it reserve that much.
    let mut liar = small_profile(1).encode_gzip();
    let n = liar.len();
    liar[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, peak) = peak_allocation(|| decompress(&liar, DEFAULT_MAX_DECOMPRESSED).map(drop));
    assert!(matches!(result, Err(Error::Gzip(_))), "{result:?}");
    assert!(peak < 1 << 20, "peaked at {peak} bytes");
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("firewatch-hostile-{}-{name}", std::process::id()))
}

#[test]
fn open_missing_file() {
    let path = temp_path("does-not-exist.pb.gz");
    let e = ProfileData::open(&path, DEFAULT_MAX_DECOMPRESSED)
        .err()
        .expect("missing file opens");
    let message = e.to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    match e {
        Error::File {
            path: p,
            error: source,
        } => {
            assert_eq!(p, path);
            assert!(
                matches!(*source, Error::Io(ref io) if io.kind() == std::io::ErrorKind::NotFound)
            );
        }
        other => panic!("expected File, got {other:?}"),
    }
}

#[test]
fn open_errors_name_the_file() {
    // A truncated gzip file: the error comes from opening (decompression).
    let path = temp_path("truncated.pb.gz");
    let gz = repo_fixture("go-heap.pb.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let e = ProfileData::open(&path, DEFAULT_MAX_DECOMPRESSED)
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
    assert!(
        matches!(e, Error::File { error: ref source, .. } if matches!(**source, Error::Gzip(_)))
    );

    // Over the cap.
    std::fs::write(&path, &gz).unwrap();
    let e = ProfileData::open(&path, 100).err().unwrap();
    assert!(
        matches!(e, Error::File { error: ref source, .. } if matches!(**source, Error::TooLarge { limit: 100 }))
    );

    // A raw file that maps fine but does not decode: the error comes from view().
    let bad = strings().key(TIME_NANOS, 0).raw(&[0x80]);
    std::fs::write(&path, &bad.0).unwrap();
    let data = ProfileData::open(&path, DEFAULT_MAX_DECOMPRESSED).unwrap();
    assert_eq!(data.path(), path);
    assert_eq!(data.bytes(), &bad.0[..]);
    let e = data.view().unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("{}: malformed profile", path.display())),
        "{message}"
    );
    assert!(message.contains("profile.time_nanos"), "{message}");

    // Mapped (the caller's unsafe promise holds: nothing else touches this
    // file) or read, the same bytes and the same error.
    #[cfg(feature = "mmap")]
    {
        // SAFETY: the file is this test's own and is not changed while mapped.
        let mapped = ProfileData::open_with(&path, DEFAULT_MAX_DECOMPRESSED, unsafe {
            firewatch_profile::MmapChoice::auto()
        })
        .unwrap();
        assert_eq!(mapped.bytes(), &bad.0[..]);
        assert_eq!(mapped.view().unwrap_err().to_string(), message);
    }
    // A raw regular file over the cap is read whole whichever way it is
    // opened (its size is stated; the cap bounds inflation and streams),
    // while the gzip file above was refused under a cap of 100.
    let choices = [
        firewatch_profile::MmapChoice::never(),
        #[cfg(feature = "mmap")]
        // SAFETY: as above.
        unsafe {
            firewatch_profile::MmapChoice::auto()
        },
    ];
    assert!(bad.0.len() > 3);
    for choice in choices {
        let data = ProfileData::open_with(&path, 3, choice).unwrap();
        assert_eq!(data.bytes(), &bad.0[..]);
    }

    // An empty file.
    std::fs::write(&path, b"").unwrap();
    let data = ProfileData::open(&path, DEFAULT_MAX_DECOMPRESSED).unwrap();
    let e = data.view().unwrap_err();
    assert!(matches!(e, Error::File { error: ref source, .. } if matches!(**source, Error::Empty)));
    assert_eq!(e.to_string(), format!("{}: empty input", path.display()));
    std::fs::remove_file(&path).unwrap();

    // A directory.
    let e = ProfileData::open(std::env::temp_dir(), DEFAULT_MAX_DECOMPRESSED)
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::File { error: ref source, .. } if matches!(**source, Error::Io(_))),
        "{e:?}"
    );
}

#[test]
fn from_bytes_errors_name_the_path() {
    let name = "profiles/cpu.pb.gz";
    let gz = repo_fixture("go-cpu.pb.gz");
    let e = ProfileData::from_bytes(name, gz[..gz.len() - 3].to_vec(), DEFAULT_MAX_DECOMPRESSED)
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("profiles/cpu.pb.gz: corrupt gzip data"),
        "{e}"
    );
    let e = ProfileData::from_bytes(name, gz.clone(), 10).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("profiles/cpu.pb.gz: decompressed data exceeds"),
        "{e}"
    );
    // Decoding errors name it too.
    let bad = Pb::new().bytes(STRING_TABLE, b"x");
    let data = ProfileData::from_bytes(name, bad.0, DEFAULT_MAX_DECOMPRESSED).unwrap();
    let e = data.view().unwrap_err();
    assert_eq!(
        e.to_string(),
        "profiles/cpu.pb.gz: invalid profile: string_table[0] must be the empty string"
    );
    // A good one decodes, and the bytes are the inflated protobuf.
    let data = ProfileData::from_bytes(name, gz, DEFAULT_MAX_DECOMPRESSED).unwrap();
    assert!(!firewatch_profile::is_gzip(data.bytes()));
    assert!(data.view().unwrap().sample_count() > 0);
}
