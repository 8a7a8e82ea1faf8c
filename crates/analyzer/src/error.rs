//! The analyzer's error type. Every variant names the file it is about and
//! prints as one line; causes are part of the message, not `source`s, so a
//! chain prints them once.

use std::path::PathBuf;

use firewatch_profile::{FrameRegexError, Incompatibility, SampleIndexError};

use crate::input::legacy::LegacyError;
use crate::input::node::NodeError;
use crate::input::InputFormat;

/// The analyzer's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input could not be read, decompressed, decoded or validated.
    #[error(transparent)]
    Profile(#[from] firewatch_profile::Error),

    /// A Node.js profile (`.cpuprofile`, `.heapprofile`) is malformed.
    #[error("{}: invalid {format}: {error}", path.display())]
    NodeProfile {
        /// The input.
        path: PathBuf,
        /// The format it was read as.
        format: InputFormat,
        /// What is wrong.
        error: NodeError,
    },

    /// A legacy profile (gperftools, jemalloc) is malformed.
    #[error("{}: invalid {format}: {error}", path.display())]
    LegacyProfile {
        /// The input.
        path: PathBuf,
        /// The format it was read as.
        format: InputFormat,
        /// What is wrong, and where.
        error: LegacyError,
    },

    /// A V8 heap snapshot (`.heapsnapshot`) is malformed, or cannot be
    /// analyzed with the other inputs.
    #[error("{}: invalid .heapsnapshot: {error}", path.display())]
    HeapSnapshot {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        error: crate::heapsnapshot::HeapSnapshotError,
    },

    /// A directory given as an input could not be listed.
    #[error("{}: cannot list the directory: {error}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },

    /// A directory given as an input holds no files.
    #[error("{}: the directory holds no profiles", path.display())]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },

    /// An input is none of the formats the analyzer reads (JSON of another
    /// shape, say).
    #[error("{}: {reason}", path.display())]
    UnknownFormat {
        /// The input.
        path: PathBuf,
        /// What it looks like instead.
        reason: String,
    },

    /// The requested sample index selects no sample type of an input.
    #[error("{}: {error}", path.display())]
    SampleType {
        /// The input.
        path: PathBuf,
        /// What is wrong, with the input's sample types.
        error: SampleIndexError,
    },

    /// An input cannot be merged with the first: it lacks the reported
    /// sample type, or has it in another unit.
    #[error("{}: cannot merge with {}: {reason}", path.display(), first.display())]
    Incompatible {
        /// The input.
        path: PathBuf,
        /// The first input, which chose the sample type.
        first: PathBuf,
        /// What differs.
        reason: Incompatibility,
    },

    /// A `drop_frames`/`keep_frames` regex in a profile does not compile.
    #[error("{}: {error}", path.display())]
    ProfileRegex {
        /// The input.
        path: PathBuf,
        /// Which field, and the parser's message.
        error: FrameRegexError,
    },

    /// The request names no profile.
    #[error("no profile to analyze")]
    NoProfiles,

    /// The worker thread pool could not be started.
    #[error("starting worker threads: {0}")]
    Threads(rayon::ThreadPoolBuildError),

    /// An output file (flamegraph, folded stacks) could not be created.
    #[error("cannot create {}: {error}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        error: std::io::Error,
    },

    /// An output file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        error: std::io::Error,
    },

    /// A `--symbols` file cannot be read, or is not the binary that ran.
    #[error(transparent)]
    Symbols(crate::symbols::SymbolError),

    /// The report could not be written to its output.
    #[error("cannot write the report: {0}")]
    Report(std::io::Error),
}

impl Error {
    /// Exit status for the CLI: 2 for usage problems (a sample index that
    /// selects nothing), 1 for input and output problems.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::SampleType { .. } => 2,
            _ => 1,
        }
    }
}
