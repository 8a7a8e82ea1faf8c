//! CPU profiling where the sampler cannot run (anything but Linux on
//! x86_64 and aarch64): the same API, and [`CpuProfiler::start`] says
//! [`Error::Unsupported`], so a service that links the agent builds and runs
//! there (heap snapshots and the thresholds keep working).

use super::{CpuCapture, LookbackSettings};
use crate::{Error, Result};

/// A running CPU profile; on this target there never is one.
pub struct CpuProfiler {
    never: std::convert::Infallible,
}

impl CpuProfiler {
    /// Fails: "CPU profiling is not supported on this target".
    pub fn start(_hz: u32) -> Result<CpuProfiler> {
        Err(Error::Unsupported("CPU profiling"))
    }

    /// Stops sampling and returns the profile, symbolized.
    pub fn stop(self) -> Result<firewatch_profile::Profile> {
        match self.never {}
    }

    /// Stops sampling and returns the raw, unsymbolized capture.
    pub fn stop_raw(self) -> Result<CpuCapture> {
        match self.never {}
    }
}

impl Drop for CpuProfiler {
    fn drop(&mut self) {
        match self.never {}
    }
}

/// The agent's look-back sampler; on this target there never is one.
pub(crate) struct LookbackSampler {
    never: std::convert::Infallible,
}

impl LookbackSampler {
    /// Fails: "CPU profiling is not supported on this target".
    pub(crate) fn start(_settings: LookbackSettings) -> Result<LookbackSampler> {
        Err(Error::Unsupported("CPU profiling"))
    }

    pub(crate) fn begin(&self, _hz: u32, _include_lookback: bool) -> Result<()> {
        match self.never {}
    }

    pub(crate) fn end(&self) -> Result<CpuCapture> {
        match self.never {}
    }
}

/// Nothing to reset in a forked child: no profile ever runs.
pub(crate) fn after_fork_in_child() {}
