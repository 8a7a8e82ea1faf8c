//! The one error type of `firewatch-profile`: every variant says what is wrong
//! and where (file, byte offset, field), so a CLI can print it as one line.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
/// Everything that can go wrong reading, decompressing or decoding a profile.
pub enum Error {
    /// The bytes are not a well-formed `profile.proto` message.
    #[error("malformed profile: {detail} in {field} at byte {offset}")]
    Malformed {
        /// Byte offset in the (decompressed) input where the problem was found.
        offset: usize,
        /// The proto field being decoded.
        field: String,
        /// What is wrong.
        detail: String,
    },

    /// Well-formed protobuf that breaks pprof's rules (as `CheckValid` does).
    #[error("invalid profile: {0}")]
    Invalid(String),

    /// The input is empty.
    #[error("empty input")]
    Empty,

    /// The gzip stream is corrupt or truncated.
    #[error("corrupt gzip data: {0}")]
    Gzip(std::io::Error),

    /// Decompressing would exceed the configured cap (a gzip bomb, or a cap set too low).
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap on decompressed size, in bytes.
        limit: u64,
    },

    /// Reading the file failed.
    #[error("cannot read: {0}")]
    Io(std::io::Error),

    /// Any of the above, for a named file. (`error` is part of the message,
    /// deliberately not a `source`, so chains print it once.)
    #[error("{}: {error}", path.display())]
    File {
        /// The file the error is about.
        path: PathBuf,
        /// What went wrong with it.
        error: Box<Error>,
    },
}

impl Error {
    /// Attaches a file name (once).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        match self {
            Error::File { .. } => self,
            other => Error::File {
                path: path.into(),
                error: Box::new(other),
            },
        }
    }
}
