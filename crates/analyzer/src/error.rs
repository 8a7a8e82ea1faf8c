//! The analyzer's error type.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input could not be read, decompressed, decoded or validated.
    #[error(transparent)]
    Profile(#[from] firewatch_profile::Error),

    /// `--sample-index` names no sample type of an input.
    #[error("{}: {detail}", path.display())]
    SampleType { path: PathBuf, detail: String },

    /// The inputs cannot be merged.
    #[error("{}: {detail}", path.display())]
    Incompatible { path: PathBuf, detail: String },

    /// A `drop_frames`/`keep_frames` regex in a profile does not compile.
    #[error("{}: {field} is not a valid regular expression: {source}", path.display())]
    ProfileRegex {
        path: PathBuf,
        field: &'static str,
        source: Box<regex::Error>,
    },

    /// Writing a report or flamegraph failed.
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Exit status for the CLI: 2 for usage problems, 1 for input problems.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::SampleType { .. } => 2,
            _ => 1,
        }
    }
}
