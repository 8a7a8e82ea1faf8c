//! The inputs of a [`Request`](crate::Request): files, and the formats they
//! are read as.
//!
//! Every input is first read as bytes ([`ProfileData`]: mapped, gzip
//! inflated under the size cap), then its format is decided
//! ([`InputFormat::detect`], unless the request names it), then the format's
//! reader turns the bytes into what the analysis works on: for pprof, a
//! [`ProfileView`](firewatch_profile::ProfileView) whose samples feed the
//! function table. A new format adds a variant here, a detection rule, and a
//! reader in [`crate::driver`]: one that produces a view (or samples) for the
//! function table, or one with a report of its own (a heap snapshot's
//! object graph).

use std::path::{Path, PathBuf};

use firewatch_profile::ProfileData;

/// A file format the analyzer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputFormat {
    /// `profile.proto`, raw or gzip: Go's runtime, pprof-rs, jemalloc_pprof,
    /// firewatch's agent.
    Pprof,
}

impl InputFormat {
    /// The format of a file, from its name and its (decompressed) bytes.
    /// pprof, which has no magic number, is what remains when no other
    /// format recognizes the input: today, every input.
    pub fn detect(path: &Path, bytes: &[u8]) -> InputFormat {
        let _ = (path, bytes);
        InputFormat::Pprof
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
