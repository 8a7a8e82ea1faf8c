//! The inputs of a [`Request`](crate::Request): files, and the formats they
//! are read as.
//!
//! Every input is first read as bytes ([`ProfileData`]: mapped, gzip
//! inflated under the size cap), then its format is decided
//! ([`InputFormat::detect`], unless the request names it), then the format's
//! reader turns the bytes into what the analysis works on: for pprof, a
//! [`ProfileView`] whose samples feed the
//! function table. Node.js's `.cpuprofile` and `.heapprofile` ([`node`]) and
//! gperftools' and jemalloc's legacy profiles ([`legacy`]) are converted to
//! pprof bytes first, so the rest of the pipeline sees pprof.
//! A new format adds a variant here, a detection rule, and a reader: one
//! that produces pprof (or a view) for the function table, or one with a
//! report of its own (a heap snapshot's object graph).

use std::fmt;
use std::path::{Path, PathBuf};

use firewatch_profile::{ProfileData, ProfileView};

use crate::error::{Error, Result};

pub(crate) mod legacy;
pub(crate) mod node;

/// A file format the analyzer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputFormat {
    /// `profile.proto`, raw or gzip: Go's runtime, pprof-rs, jemalloc_pprof,
    /// firewatch's agent.
    Pprof,
    /// V8's CPU profile (`node --cpu-prof`, Chrome DevTools' `.cpuprofile`):
    /// sample types `samples/count` and `cpu/microseconds`.
    NodeCpuProfile,
    /// V8's sampling heap profile (`node --heap-prof`, `.heapprofile`):
    /// sample types `objects/count` and `space/bytes`.
    NodeHeapProfile,
    /// gperftools' binary CPU profile (`CPUPROFILE`; Go before 1.9; the
    /// Java agent's), any word size and byte order: `samples/count`,
    /// `cpu/nanoseconds`.
    GperftoolsCpu,
    /// gperftools' (tcmalloc's) `heap profile:` text, heapz or growthz:
    /// `inuse_space` and friends, unsampled as pprof does.
    GperftoolsHeap,
    /// gperftools' contention text (`--- contentionz`):
    /// `contentions/count`, `delay/nanoseconds`.
    GperftoolsContention,
    /// jemalloc's `heap_v2` dump (`prof.dump`): `inuse_space` and friends,
    /// unsampled as jeprof does.
    JemallocHeap,
    /// A gperftools-style thread listing (`--- threadz`): `thread/count`.
    GperftoolsThreads,
    /// Go's text `goroutine` or `threadcreate` profile (`debug=1`, and
    /// Go's files before 1.9): `goroutine/count`, `threadcreate/count`.
    GoCount,
    /// V8's heap snapshot (`v8.writeHeapSnapshot()`, `.heapsnapshot`): the
    /// object graph, with a report of its own (retained sizes by
    /// constructor, retaining paths, new objects since a base).
    NodeHeapSnapshot,
}

impl InputFormat {
    /// The format of a file, from its (decompressed) bytes and then its
    /// name. A JSON object whose `snapshot` is an object with `meta` is a
    /// `.heapsnapshot` (V8 writes it first, so this is known from the
    /// first bytes). One with the keys `nodes`, `samples` and
    /// `timeDeltas` is a `.cpuprofile`; one with `head` (and without those
    /// or `timestamps`, which an old Chrome CPU profile has) a
    /// `.heapprofile`. A JSON object that is neither, such as a file cut
    /// short, is read as its extension says, so that the reader says what
    /// is wrong. pprof, which has no magic number (and never starts with
    /// `{`), is what remains.
    ///
    /// Legacy profiles come first, by their first bytes: the binary CPU
    /// header, or a first line `heap profile:`, `heap_v2/`,
    /// `--- contentionz`, `--- threadz` or `goroutine profile: total`.
    pub fn detect(path: &Path, bytes: &[u8]) -> InputFormat {
        if let Some(kind) = legacy::detect(bytes) {
            return InputFormat::from(kind);
        }
        // V8 writes `{"snapshot":{"meta":…` first: no need to scan the
        // hundreds of megabytes after it for the other keys.
        if crate::heapsnapshot::starts_like_snapshot(bytes) {
            return InputFormat::NodeHeapSnapshot;
        }
        let Some(keys) = node::json::top_level_keys(bytes) else {
            return InputFormat::Pprof;
        };
        if keys.has("snapshot") && snapshot_has_meta(bytes, &keys) {
            return InputFormat::NodeHeapSnapshot;
        }
        if keys.has("nodes") && keys.has("samples") && keys.has("timeDeltas") {
            return InputFormat::NodeCpuProfile;
        }
        if keys.has("head")
            && !["nodes", "timeDeltas", "timestamps"]
                .iter()
                .any(|k| keys.has(k))
        {
            return InputFormat::NodeHeapProfile;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("cpuprofile") => InputFormat::NodeCpuProfile,
            Some("heapprofile") => InputFormat::NodeHeapProfile,
            Some("heapsnapshot") => InputFormat::NodeHeapSnapshot,
            _ => InputFormat::Pprof,
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Pprof => "pprof profile",
            InputFormat::NodeCpuProfile => ".cpuprofile",
            InputFormat::NodeHeapProfile => ".heapprofile",
            InputFormat::GperftoolsCpu => "gperftools CPU profile",
            InputFormat::GperftoolsHeap => "gperftools heap profile",
            InputFormat::GperftoolsContention => "gperftools contention profile",
            InputFormat::JemallocHeap => "jemalloc heap profile",
            InputFormat::GperftoolsThreads => "thread profile",
            InputFormat::GoCount => "Go count profile",
            InputFormat::NodeHeapSnapshot => ".heapsnapshot",
        })
    }
}

impl From<legacy::Kind> for InputFormat {
    fn from(kind: legacy::Kind) -> InputFormat {
        match kind {
            legacy::Kind::Cpu => InputFormat::GperftoolsCpu,
            legacy::Kind::Heap => InputFormat::GperftoolsHeap,
            legacy::Kind::Contention => InputFormat::GperftoolsContention,
            legacy::Kind::Jemalloc => InputFormat::JemallocHeap,
            legacy::Kind::Threads => InputFormat::GperftoolsThreads,
            legacy::Kind::GoCount => InputFormat::GoCount,
        }
    }
}

/// One input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file; `-` is standard input.
    pub path: PathBuf,
    /// Its format, or `None` to [detect](InputFormat::detect) it.
    pub format: Option<InputFormat>,
}

impl Source {
    /// A file whose format is detected.
    pub fn new(path: impl Into<PathBuf>) -> Source {
        Source {
            path: path.into(),
            format: None,
        }
    }

    /// The format this source is read as, once its bytes are known.
    pub(crate) fn format_of(&self, data: &ProfileData) -> InputFormat {
        self.format
            .unwrap_or_else(|| InputFormat::detect(&self.path, data.bytes()))
    }
}

/// Whether the top-level `snapshot` value of a JSON object is an object
/// with a `meta` key (what V8's heap snapshot writer puts first).
fn snapshot_has_meta(bytes: &[u8], keys: &node::json::TopLevelKeys<'_>) -> bool {
    let Some(key) = keys.keys.iter().find(|k| **k == b"snapshot") else {
        return false;
    };
    // The key borrows from `bytes`: its value starts after the `:`.
    let offset = key.as_ptr() as usize - bytes.as_ptr() as usize + key.len();
    let rest = &bytes[offset.min(bytes.len())..];
    let Some(colon) = rest.iter().position(|&b| b == b':') else {
        return false;
    };
    node::json::top_level_keys(&rest[colon + 1..]).is_some_and(|inner| inner.has("meta"))
}

/// The input, read as `format`, as pprof bytes: `data` itself, or what a
/// Node.js profile converts to (the JSON is freed once converted).
pub(crate) fn to_pprof(format: InputFormat, data: ProfileData) -> Result<ProfileData> {
    let path = data.path().to_path_buf();
    let node_error = |error| Error::NodeProfile {
        path: path.clone(),
        format,
        error,
    };
    let legacy = |kind, bytes| {
        legacy::convert(kind, bytes).map_err(|error| Error::LegacyProfile {
            path: path.clone(),
            format,
            error,
        })
    };
    let converted = match format {
        InputFormat::Pprof => return Ok(data),
        InputFormat::NodeCpuProfile => node::cpu::convert(data.bytes()).map_err(node_error),
        InputFormat::NodeHeapProfile => node::heap::convert(data.bytes()).map_err(node_error),
        InputFormat::GperftoolsCpu => legacy(legacy::Kind::Cpu, data.bytes()),
        InputFormat::GperftoolsHeap => legacy(legacy::Kind::Heap, data.bytes()),
        InputFormat::GperftoolsContention => legacy(legacy::Kind::Contention, data.bytes()),
        InputFormat::JemallocHeap => legacy(legacy::Kind::Jemalloc, data.bytes()),
        InputFormat::GperftoolsThreads => legacy(legacy::Kind::Threads, data.bytes()),
        InputFormat::GoCount => legacy(legacy::Kind::GoCount, data.bytes()),
        // The driver hands snapshots to `heapsnapshot` before converting.
        InputFormat::NodeHeapSnapshot => Err(Error::UnknownFormat {
            path: path.clone(),
            reason: "a heap snapshot has no pprof form; analyze it alone".into(),
        }),
    };
    drop(data);
    let bytes = converted?;
    // Already within the input's cap: the stacks were budgeted by its size.
    Ok(ProfileData::from_bytes(path, bytes, u64::MAX)?)
}

/// Reads `source` as an analysis would (inflated within
/// `max_decompressed` bytes, its format detected unless named) and returns
/// it as uncompressed pprof: how a Node.js or legacy profile is handed to
/// other pprof tools, or compared with what they make of the original.
pub fn convert_to_pprof(source: &Source, max_decompressed: u64) -> Result<Vec<u8>> {
    let data = ProfileData::open(&source.path, max_decompressed)?;
    let format = source.format_of(&data);
    Ok(to_pprof(format, data)?.bytes().to_vec())
}

/// Decodes pprof bytes. When they fail as pprof but start like JSON, the
/// error says what the JSON lacks rather than which protobuf field broke.
pub(crate) fn decode(data: &ProfileData) -> Result<ProfileView<'_>> {
    data.view().map_err(|error| decode_error(data, error))
}

/// [`decode`] but for the samples, left to the returned decoder.
pub(crate) fn decode_without_samples(
    data: &ProfileData,
) -> Result<(ProfileView<'_>, firewatch_profile::SampleDecoder)> {
    data.view_without_samples()
        .map_err(|error| decode_error(data, error))
}

/// An input that does not decode as pprof: said to be another format
/// when it looks like one.
fn decode_error(data: &ProfileData, error: firewatch_profile::Error) -> Error {
    match node::not_a_node_profile(data.bytes()) {
        Some(reason) => Error::UnknownFormat {
            path: data.path().to_path_buf(),
            reason,
        },
        None => match legacy::not_a_profile(data.bytes(), &error) {
            Some(reason) => Error::UnknownFormat {
                path: data.path().to_path_buf(),
                reason,
            },
            None => error.into(),
        },
    }
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Source {
        Source::new(path)
    }
}

impl From<&Path> for Source {
    fn from(path: &Path) -> Source {
        Source::new(path)
    }
}

impl From<&str> for Source {
    fn from(path: &str) -> Source {
        Source::new(path)
    }
}
