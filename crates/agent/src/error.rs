//! The agent's error type. Errors never cross into the service as panics:
//! the agent logs them and skips the capture.

use std::path::PathBuf;
use std::sync::Arc;

use crate::capture::Throttled;

/// The agent's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Variants will be added: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on a capture file or the output directory failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the agent was doing.
        what: &'static str,
        /// The system's error.
        source: std::io::Error,
    },

    /// A system call the sampler needs failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// What was being done.
        call: &'static str,
        /// The system's error.
        source: std::io::Error,
    },

    /// Another CPU profile is already running in this process.
    #[error("a CPU profile is already running")]
    Busy,

    /// A capture was not taken, on purpose or because it could not be.
    #[error("capture skipped: {0}")]
    Skipped(SkipReason),

    /// A setting's value is invalid: from the builder, `start()` fails with
    /// this; from the environment, it is logged and ignored.
    #[error("invalid setting {setting} = {value:?}: {reason}")]
    InvalidSetting {
        /// The builder method (or environment variable) of the setting.
        setting: &'static str,
        /// The value refused, as given.
        value: String,
        /// What a valid value is.
        reason: String,
    },

    /// The capture a request waited for failed; every request merged into
    /// that capture gets the same error.
    #[error("{0}")]
    CaptureFailed(Arc<Error>),

    /// What was asked for does not exist on the target the agent was built
    /// for: `Unsupported("CPU profiling")` off Linux on x86_64 and aarch64
    /// (see `docs/agent.md`, "Targets").
    #[error("{0} is not supported on this target")]
    Unsupported(&'static str),
}

/// Why a capture was not taken. Reasons will be added: match with a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkipReason {
    /// An automatic capture over the throttle's limits.
    #[error("{0}")]
    Throttled(Throttled),
    /// The disk guard: the filesystem is too full, or the file would not fit.
    #[error("{0}")]
    DiskGuard(String),
    /// The output directory cannot be made or used (permissions, another
    /// user's directory, not a directory); retried at the next capture.
    #[error("output directory {} is not usable: {reason}", dir.display())]
    OutputDirUnusable {
        /// The output directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent was disabled by its settings.
    #[error("the agent is disabled")]
    Disabled,
    /// Heap snapshots need [`crate::SamplingAllocator`] as the global allocator.
    #[error("heap snapshots need firewatch_agent::SamplingAllocator as the #[global_allocator]")]
    NoSamplingAllocator,
    /// The agent stopped (dropped) before or during the capture.
    #[error("the agent stopped")]
    AgentStopped,
    /// A bug in the capture (symbolizing, encoding) panicked; the agent
    /// thread lives on.
    #[error("the capture panicked")]
    CapturePanicked,
}
