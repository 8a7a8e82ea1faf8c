//! Legacy profiles: gperftools' CPU, heap, contention and thread profiles,
//! Go's text count profiles, and jemalloc's `heap_v2` dumps, read by
//! converting them to pprof.
//!
//! These are the formats google/pprof still reads in `legacy_profile.go`
//! (and `jeprof`, for jemalloc): a list of stacks of raw return addresses
//! with counts, then the process's memory map. Each becomes a [`Profile`]
//! whose locations carry addresses only (no names: symbolizing them is a
//! later step) and whose mappings come from the map section, encoded and
//! handed to the pprof pipeline as a Node.js profile is.
//!
//! **Same model as pprof.** The conversion follows `legacy_profile.go`
//! rule by rule, so that `go tool pprof -raw` prints the same samples,
//! locations and mappings for the converted file as for the original:
//! sample types and period ([`cpu`], [`heap`], [`contention`]), the
//! adjustment of return addresses by −1 to land on the call, the frames the
//! CPU profiler's signal handler leaves on every stack, the memory-map
//! heuristics ([`maps`]: adjacent ranges merged, the main binary first, a
//! catch-all mapping for addresses outside every range), and
//! `drop_frames` regexes naming the allocator's, lock's or profiler's own
//! functions. The Java agent's variants, which name their frames, get
//! functions instead of addresses ([`java`]). A jemalloc dump, which pprof
//! does not read, follows `jeprof` instead ([`jemalloc`]).
//!
//! **Unsampling.** Heap profiles sampled on average once every `R` bytes
//! (gperftools' `heap_v2/R` and jemalloc's `heap_v2/R`, `R = 2^lg_prof_sample`)
//! record an allocation of size `S` with probability `1 − e^(−S/R)`; each
//! record's count and bytes are divided by that probability, with `S` the
//! record's average size (bytes / count), as pprof and jeprof do.
//!
//! **Bounds.** The input is capped like any other, and memory is linear in
//! it: every frame costs at least four bytes of input (a binary word, or
//! `0x1 ` in text) and eight while converted, every record at least eight
//! bytes of input and about 100 while converted (the owned `Profile`'s
//! sample, built once as the file is read: [`RawSample`]); nothing is
//! allocated from a count the file states, and the memory map is capped
//! ([`maps::MAX_MAPPINGS`]). Measured (release build; `firewatch analyze`
//! peak RSS): a 100 MB 32-bit CPU profile of 30-frame stacks, 0.48 GB in
//! 1.3 s; the worst case, 100 MB of empty 8-byte records (13 million
//! samples), 1.55 GB in 3.8 s.
//! Errors name the line (text) or byte offset (binary) and what is wrong.

pub(crate) mod contention;
pub(crate) mod cpu;
pub(crate) mod heap;
pub(crate) mod java;
pub(crate) mod jemalloc;
pub(crate) mod maps;
pub(crate) mod text;
pub(crate) mod thread;

use std::fmt;

use firewatch_profile::{
    Function, Label, Line, Location, Mapping, Profile, Sample, StringInterner, ValueType,
};
use rustc_hash::FxHashMap;

/// Why a legacy profile could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LegacyError {
    /// A text line is not what the format has there.
    Line {
        /// 1-based line number.
        line: usize,
        /// What the format has there.
        expected: &'static str,
        /// The start of the line found instead.
        found: String,
    },
    /// A line has the right shape but a value that cannot be right.
    Value {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A binary CPU profile is cut short or inconsistent.
    Binary {
        /// Byte offset of the word that is wrong.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A variant of the format that is recognized but not read.
    Unsupported(&'static str),
    /// More of something than any real profile has.
    Limit {
        /// What there is too much of.
        what: &'static str,
        /// The most allowed.
        limit: usize,
    },
}

impl fmt::Display for LegacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegacyError::Line {
                line,
                expected,
                found,
            } => write!(f, "line {line}: expected {expected}, found `{found}`"),
            LegacyError::Value { line, reason } => write!(f, "line {line}: {reason}"),
            LegacyError::Binary { offset, reason } => write!(f, "at byte {offset}: {reason}"),
            LegacyError::Unsupported(what) => write!(f, "{what} are not supported"),
            LegacyError::Limit { what, limit } => write!(f, "more than {limit} {what}"),
        }
    }
}

/// The legacy format of some bytes, from their first line or words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Cpu,
    Heap,
    Contention,
    Jemalloc,
    Threads,
    GoCount,
}

/// The legacy format `bytes` start like, if any: the binary CPU header
/// (words 0, 3, 0 or 1, a period, 0 in any of pprof's four word layouts),
/// or a first text line as each format writes it.
pub(crate) fn detect(bytes: &[u8]) -> Option<Kind> {
    if cpu::header(bytes).is_some() {
        return Some(Kind::Cpu);
    }
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.trim_ascii_start();
    // `--- heapz 1 ---` starts the Java agent's heap profile.
    if first.starts_with(b"heap profile:") || first.starts_with(b"--- heapz ") {
        Some(Kind::Heap)
    } else if first.starts_with(b"heap_v2/") {
        Some(Kind::Jemalloc)
    } else if contention::is_header(first) {
        Some(Kind::Contention)
    } else if thread::is_threadz(bytes) {
        Some(Kind::Threads)
    } else if thread::is_count(bytes) {
        Some(Kind::GoCount)
    } else {
        None
    }
}

/// Converts a legacy profile of `kind` to pprof bytes.
pub(crate) fn convert(kind: Kind, bytes: &[u8]) -> Result<Vec<u8>, LegacyError> {
    let legacy = match kind {
        Kind::Cpu => cpu::parse(bytes)?,
        Kind::Heap => heap::parse(bytes)?,
        Kind::Contention => contention::parse(bytes)?,
        Kind::Jemalloc => jemalloc::parse(bytes)?,
        Kind::Threads => thread::parse_threadz(bytes)?,
        Kind::GoCount => thread::parse_count(bytes)?,
    };
    Ok(legacy.into_profile().encode())
}

/// What the analyzer reads, for the message about a file it cannot.
const EXPECTED: &str = "expected pprof (protobuf, raw or gzip), a V8 .cpuprofile or .heapprofile (JSON), or a legacy profile (gperftools CPU, heap, contention or threadz; Go goroutine or threadcreate text; jemalloc heap_v2)";

/// Why bytes that failed to decode as pprof (with `error`) are no profile
/// at all, when they do not look like a broken pprof: text, or binary data
/// whose very first field is not protobuf. `None` leaves pprof's error,
/// which says where a damaged profile breaks.
pub(crate) fn not_a_profile(bytes: &[u8], error: &firewatch_profile::Error) -> Option<String> {
    let head = &bytes[..bytes.len().min(256)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // A character cut at the 256th byte.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if let Some(text) = text.filter(|t| {
        !t.is_empty()
            && t.chars()
                .all(|c| !c.is_control() || c.is_ascii_whitespace())
    }) {
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return Some(format!(
            "not a pprof, V8 or legacy profile: text starting `{}`; {EXPECTED}",
            text::excerpt(first.trim())
        ));
    }
    let mut error = error;
    while let firewatch_profile::Error::File { error: inner, .. } = error {
        error = inner;
    }
    match error {
        firewatch_profile::Error::Malformed { offset, .. } if *offset < 16 => Some(format!(
            "not a pprof, V8 or legacy profile: binary data that is not protobuf ({error}); {EXPECTED}"
        )),
        _ => None,
    }
}

/// A legacy profile as read, before pprof's renumbering: stacks of
/// addresses (leaf first, already adjusted) and the memory map.
#[derive(Debug, Default)]
pub(crate) struct Legacy {
    pub period_type: (&'static str, &'static str),
    pub period: i64,
    pub sample_types: Vec<(&'static str, &'static str)>,
    pub duration_nanos: i64,
    pub samples: Vec<RawSample>,
    pub mappings: Vec<maps::RawMapping>,
    pub drop_frames: String,
    pub keep_frames: String,
    /// Names of frames, by address (Java's symbolized formats): such a
    /// location gets the function and no address.
    pub frames: FxHashMap<u64, JavaFrame>,
}

/// A frame named in a Java profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct JavaFrame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// A sample as read: a pprof [`Sample`] whose `location_id` holds the
/// stack's addresses until [`Legacy::into_profile`] numbers them in place,
/// so that a sample is allocated once however many the file has.
pub(crate) type RawSample = Sample;

/// The string index of `bytes`, the key of a heap sample's label: the first
/// string [`Legacy::into_profile`] interns.
const BYTES_KEY: i64 = 1;

/// A sample of `values` at the stack `addrs`, labelled with a heap record's
/// average block size when there is one.
pub(crate) fn raw_sample(addrs: Vec<u64>, values: Vec<i64>, bytes: Option<i64>) -> RawSample {
    Sample {
        location_id: addrs,
        value: values,
        label: bytes
            .map(|num| Label {
                key: BYTES_KEY,
                num,
                ..Label::default()
            })
            .into_iter()
            .collect(),
    }
}

/// The `bytes` label of a sample, if it has one.
#[cfg(test)]
pub(crate) fn bytes_label(s: &RawSample) -> Option<i64> {
    s.label.iter().find(|l| l.key == BYTES_KEY).map(|l| l.num)
}

impl Legacy {
    /// The pprof profile: one location per distinct address, numbered in
    /// order of first use by a sample (as pprof's `remapLocationIDs`), each
    /// assigned a mapping as pprof's `remapMappingIDs` does.
    pub fn into_profile(self) -> Profile {
        let mut strings = StringInterner::new();
        let bytes_key = strings.intern("bytes");
        debug_assert_eq!(bytes_key, BYTES_KEY);
        let mut p = Profile::new();
        let vt = |strings: &mut StringInterner, (t, u): (&str, &str)| ValueType {
            r#type: strings.intern(t),
            unit: strings.intern(u),
        };
        p.period_type = vt(&mut strings, self.period_type);
        p.period = self.period;
        p.duration_nanos = self.duration_nanos;
        p.sample_type = self
            .sample_types
            .iter()
            .map(|&t| vt(&mut strings, t))
            .collect();
        p.drop_frames = strings.intern(&self.drop_frames);
        p.keep_frames = strings.intern(&self.keep_frames);

        let mut by_address: FxHashMap<u64, u64> = FxHashMap::default();
        let mut addresses: Vec<u64> = Vec::new();
        p.sample = self.samples;
        for s in &mut p.sample {
            for a in &mut s.location_id {
                *a = *by_address.entry(*a).or_insert_with(|| {
                    addresses.push(*a);
                    addresses.len() as u64
                });
            }
        }
        drop(by_address);

        // A named (Java) frame keeps no address, as pprof's reader does.
        let final_address: Vec<u64> = addresses
            .iter()
            .map(|a| if self.frames.contains_key(a) { 0 } else { *a })
            .collect();
        let (mappings, of_address) = maps::assign(self.mappings, &final_address);
        p.mapping = mappings
            .into_iter()
            .enumerate()
            .map(|(i, m)| Mapping {
                id: i as u64 + 1,
                memory_start: m.start,
                memory_limit: m.limit,
                file_offset: m.offset,
                filename: strings.intern(&m.file),
                build_id: strings.intern(&m.build_id),
                ..Mapping::default()
            })
            .collect();
        let mut function_ids: FxHashMap<&str, u64> = FxHashMap::default();
        p.location = Vec::with_capacity(addresses.len());
        for (i, ((&original, address), mapping_id)) in addresses
            .iter()
            .zip(final_address)
            .zip(of_address)
            .enumerate()
        {
            let mut line = Vec::new();
            if let Some(frame) = self.frames.get(&original) {
                let next = p.function.len() as u64 + 1;
                let function_id = *function_ids.entry(&frame.function).or_insert(next);
                if function_id == next {
                    p.function.push(Function {
                        id: next,
                        name: strings.intern(&frame.function),
                        system_name: strings.intern(&frame.function),
                        filename: strings.intern(&frame.file),
                        start_line: 0,
                    });
                }
                line.push(Line {
                    function_id,
                    line: frame.line,
                    column: 0,
                });
            }
            p.location.push(Location {
                id: i as u64 + 1,
                mapping_id,
                address,
                line,
                ..Location::default()
            });
        }
        p.string_table = strings.into_table();
        p
    }
}

/// `drop_frames` for heap profiles, as pprof sets it: the allocator's entry
/// points (POSIX, tcmalloc, OS X zones, Go's runtime, C++'s `new`), so a
/// symbolized stack starts at the code that allocated.
pub(crate) const ALLOC_DROP: &[&str] = &[
    "calloc",
    "cfree",
    "malloc",
    "free",
    "memalign",
    "do_memalign",
    "(__)?posix_memalign",
    "pvalloc",
    "valloc",
    "realloc",
    "tcmalloc::.*",
    "tc_calloc",
    "tc_cfree",
    "tc_malloc",
    "tc_free",
    "tc_memalign",
    "tc_posix_memalign",
    "tc_pvalloc",
    "tc_valloc",
    "tc_realloc",
    "tc_new",
    "tc_delete",
    "tc_newarray",
    "tc_deletearray",
    "tc_new_nothrow",
    "tc_newarray_nothrow",
    "malloc_zone_malloc",
    "malloc_zone_calloc",
    "malloc_zone_valloc",
    "malloc_zone_realloc",
    "malloc_zone_memalign",
    "malloc_zone_free",
    r"runtime\..*",
    "BaseArena::.*",
    "(::)?do_malloc_no_errno",
    "(::)?do_malloc_pages",
    "(::)?do_malloc",
    "DoSampledAllocation",
    "MallocedMemBlock::MallocedMemBlock",
    "_M_allocate",
    r"__builtin_(vec_)?delete",
    r"__builtin_(vec_)?new",
    "__gnu_cxx::new_allocator::allocate",
    "__libc_malloc",
    "__malloc_alloc_template::allocate",
    "allocate",
    "cpp_alloc",
    r"operator new(\[\])?",
    "simple_alloc::allocate",
];

/// `keep_frames` for heap profiles: Go runtime frames that are not the
/// allocator.
pub(crate) const ALLOC_KEEP: &[&str] = &[
    r"runtime\.panic",
    r"runtime\.reflectcall",
    r"runtime\.call[0-9]*",
];

/// `drop_frames` for CPU profiles: the profiler's signal handler.
pub(crate) const CPU_DROP: &[&str] = &[
    "ProfileData::Add",
    "ProfileData::prof_handler",
    "CpuProfiler::prof_handler",
    "__pthread_sighandler",
    "__restore",
];

/// `drop_frames` for contention profiles: the lock's own functions.
pub(crate) const LOCK_DROP: &[&str] = &[
    "RecordLockProfileData",
    "(base::)?RecordLockProfileData.*",
    "(base::)?SubmitMutexProfileData.*",
    "(base::)?SubmitSpinLockProfileData.*",
    "(base::Mutex::)?AwaitCommon.*",
    "(base::Mutex::)?Unlock.*",
    "(base::Mutex::)?UnlockSlow.*",
    "(base::Mutex::)?ReaderUnlock.*",
    "(base::MutexLock::)?~MutexLock.*",
    "(Mutex::)?AwaitCommon.*",
    "(Mutex::)?Unlock.*",
    "(Mutex::)?UnlockSlow.*",
    "(Mutex::)?ReaderUnlock.*",
    "(MutexLock::)?~MutexLock.*",
    "(SpinLock::)?Unlock.*",
    "(SpinLock::)?SlowUnlock.*",
    "(SpinLockHolder::)?~SpinLockHolder.*",
];

/// One regex matching any of `names`.
pub(crate) fn alternatives(names: &[&str]) -> String {
    names.join("|")
}

/// The number of samples a record of `count` allocations totalling `size`
/// bytes stands for, when allocations are sampled once every `rate` bytes
/// on average (a Poisson process): each divided by the probability
/// `1 − e^(−avg/rate)` that an allocation of the average size is sampled.
/// Truncated to whole numbers, as pprof's `scaleHeapSample` does.
pub(crate) fn unsample(count: i64, size: i64, rate: f64) -> (i64, i64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    let average = size as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-average / rate).exp());
    ((count as f64 * scale) as i64, (size as f64 * scale) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_first_line_or_words() {
        assert_eq!(
            detect(b"heap profile: 1: 2 [3: 4] @ heap_v2/524288\n"),
            Some(Kind::Heap)
        );
        assert_eq!(
            detect(b"heap_v2/524288\n  t*: 1: 2 [0: 0]\n"),
            Some(Kind::Jemalloc)
        );
        assert_eq!(detect(b"--- contentionz 1 ---\n"), Some(Kind::Contention));
        let mut cpu = Vec::new();
        for w in [0u64, 3, 0, 10000, 0] {
            cpu.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(detect(&cpu), Some(Kind::Cpu));
        assert_eq!(detect(b"\x0a\x02\x08\x01"), None);
        assert_eq!(detect(b"hello"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn addresses_become_locations_in_order_of_first_use() {
        let legacy = Legacy {
            period_type: ("space", "bytes"),
            sample_types: vec![("space", "bytes")],
            samples: vec![
                raw_sample(vec![0x30, 0x10], vec![1], Some(8)),
                raw_sample(vec![0x10, 0x20], vec![2], None),
            ],
            ..Legacy::default()
        };
        let p = legacy.into_profile();
        let stacks: Vec<_> = p.sample.iter().map(|s| s.location_id.clone()).collect();
        assert_eq!(stacks, [vec![1, 2], vec![2, 3]]);
        let addresses: Vec<_> = p.location.iter().map(|l| l.address).collect();
        assert_eq!(addresses, [0x30, 0x10, 0x20]);
        assert_eq!(p.string(p.sample[0].label[0].key), "bytes");
        assert_eq!(p.sample[0].label[0].num, 8);
        // No map: one catch-all mapping.
        assert_eq!(p.mapping.len(), 1);
        assert!(p.location.iter().all(|l| l.mapping_id == 1));
    }

    #[test]
    fn unsampling_divides_by_the_probability_of_a_sample() {
        // One sampled 512 KiB block at a 512 KiB rate: p = 1 - 1/e.
        let (n, s) = unsample(1, 524288, 524288.0);
        assert_eq!(n, 1);
        assert_eq!(s, (524288.0 / (1.0 - (-1f64).exp())) as i64);
        assert_eq!(unsample(0, 0, 10.0), (0, 0));
        // Tiny blocks at a large rate are scaled by about rate / size.
        let (n, _) = unsample(1, 16, 524288.0);
        assert!((32767..=32769).contains(&n), "{n}");
    }
}
