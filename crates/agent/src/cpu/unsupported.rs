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

/// The agent's shared sampler; on this target there never is one.
pub(crate) struct SharedSampler {
    never: std::convert::Infallible,
}

impl SharedSampler {
    /// Fails: "CPU profiling is not supported on this target".
    pub(crate) fn start(_lookback: Option<LookbackSettings>, _hz: u32) -> Result<SharedSampler> {
        Err(Error::Unsupported("CPU profiling"))
    }

    pub(crate) fn has_lookback(&self) -> bool {
        match self.never {}
    }

    pub(crate) fn subscribe(
        &self,
        _hz: u32,
        _include_lookback: bool,
        _length: std::time::Duration,
    ) -> Result<Subscription> {
        match self.never {}
    }
}

/// A profile of the shared sampler; on this target there never is one.
pub(crate) struct Subscription {
    never: std::convert::Infallible,
}

impl Subscription {
    pub(crate) fn until(&self) -> std::time::Instant {
        match self.never {}
    }

    pub(crate) fn poll(&mut self) -> Option<Result<CpuCapture>> {
        match self.never {}
    }
}

/// Nothing to reset in a forked child: no profile ever runs.
pub(crate) fn after_fork_in_child() {}
