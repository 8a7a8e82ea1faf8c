//! The agent's error type. Errors never cross into the service as panics:
//! the agent logs them and skips the capture.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on a capture file or the output directory failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },

    /// A system call the sampler needs failed.
    #[error("{call} failed: {source}")]
    Sys {
        call: &'static str,
        source: std::io::Error,
    },

    /// Another CPU profile is already running in this process.
    #[error("a CPU profile is already running")]
    Busy,

    /// A capture was skipped on purpose (disk guard, throttling).
    #[error("capture skipped: {0}")]
    Skipped(String),

    /// Invalid configuration (builder or `FIREWATCH_*` environment).
    #[error("invalid configuration: {0}")]
    Config(String),
}
