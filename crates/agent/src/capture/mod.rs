//! The capture pipeline: from "a trigger fired" to "a pprof file is on disk,
//! and the directory is within its limits".
//!
//! A capture goes through these stages, each in its own module:
//!
//! 1. **Gate** ([`throttle::Gate`]): one capture at a time in the process. A
//!    request that arrives while a capture runs is not queued but *merged*:
//!    the gate remembers, per kind, the strongest trigger asked for, and the
//!    pipeline takes those pending requests when the running capture ends. A
//!    storm of `SIGUSR2` therefore costs at most one extra capture per kind.
//! 2. **Throttle** ([`throttle::Throttle`]): automatic triggers (thresholds)
//!    are rate limited per kind — a minimum gap, an hourly token bucket, and a
//!    lifetime cap that also counts the automatic captures already on disk, so
//!    a crash loop does not multiply them. Signal and manual captures bypass
//!    the throttle, never the gate or the disk guard. Take the gate *before*
//!    asking the throttle, so a merged request does not spend a token twice.
//! 3. **Capture** (elsewhere: `cpu`, heap): produces the gzip-compressed bytes.
//! 4. **Store** ([`store::Store`]): the disk guard skips the write when the
//!    filesystem is above its usage threshold or the file would not fit;
//!    otherwise the bytes go to a hidden temporary name in the same directory,
//!    are fsynced, and are renamed into place without ever replacing an
//!    existing file, then the directory is fsynced. A reader never sees a
//!    partial file. File names are described in [`naming`].
//! 5. **Retention** ([`retention`]): after every write and at start, delete
//!    beyond max files / max bytes / max age, automatic captures first, oldest
//!    first, never the newest capture.
//!
//! Every stage reports failure as a [`crate::Error`] (a skip is
//! [`crate::Error::Skipped`]); none panics, so a failed capture is logged and
//! the service carries on. Nothing in this module is async-signal-safe, and
//! nothing needs to be: signal handlers only record that a signal arrived,
//! and the agent thread drives the pipeline.
//!
//! The logic takes the current time as a parameter (`SystemTime` for names
//! and ages, `Instant` for rate limits) instead of reading the clock, so it
//! is deterministic under test.

pub mod naming;
pub mod retention;
pub mod store;
pub mod throttle;

pub use naming::sanitize_service;
#[cfg(test)]
pub use naming::CaptureName;
pub use retention::Retention;
pub use store::{Store, StoreOptions};
pub use throttle::{Admission, CaptureGuard, Gate, Throttle, ThrottleConfig, Throttled};

use std::fmt;

/// What a capture records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A CPU profile over a time window.
    Cpu,
    /// A heap snapshot (memory in use and allocated, from the sampling allocator).
    Heap,
}

impl Kind {
    /// Every kind, in a fixed order (used to index per-kind state).
    pub const ALL: [Kind; 2] = [Kind::Cpu, Kind::Heap];

    /// The name used in file names: `cpu` or `heap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Heap => "heap",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A dense index for per-kind arrays, matching [`Kind::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Cpu => 0,
            Kind::Heap => 1,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a capture was taken. It ends up in the file name, and decides whether
/// the automatic caps apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The process received `SIGUSR2`.
    Signal,
    /// The service asked through the API.
    Manual,
    /// Heap in use crossed its threshold.
    HeapThreshold,
    /// RSS crossed its share of the memory limit.
    RssThreshold,
    /// CPU use stayed above its threshold.
    CpuThreshold,
}

impl Trigger {
    /// Every trigger, strongest first: when requests are merged, a signal
    /// outranks a manual request, which outranks every automatic trigger.
    pub const ALL: [Trigger; 5] = [
        Trigger::Signal,
        Trigger::Manual,
        Trigger::HeapThreshold,
        Trigger::RssThreshold,
        Trigger::CpuThreshold,
    ];

    /// The name used in file names, e.g. `signal`, `heap-threshold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::Manual => "manual",
            Trigger::HeapThreshold => "heap-threshold",
            Trigger::RssThreshold => "rss-threshold",
            Trigger::CpuThreshold => "cpu-threshold",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Threshold triggers are automatic: they are throttled, count towards
    /// the lifetime cap, and are the first to go under retention. Signal and
    /// manual captures were asked for by a person, so they are not.
    pub fn is_automatic(self) -> bool {
        !matches!(self, Trigger::Signal | Trigger::Manual)
    }

    /// Which trigger wins when requests are merged (higher wins). Requests
    /// from a person outrank automatic ones, so merging never turns a capture
    /// someone asked for into one the throttle may drop; the order among the
    /// rest only has to be deterministic.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Trigger::Signal => 4,
            Trigger::Manual => 3,
            Trigger::HeapThreshold => 2,
            Trigger::RssThreshold => 1,
            Trigger::CpuThreshold => 0,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.as_str()), Some(k));
            assert_eq!(Kind::ALL[k.index()], k);
        }
        assert_eq!(Kind::Cpu.as_str(), "cpu");
        assert_eq!(Kind::Heap.to_string(), "heap");
        assert_eq!(Kind::from_name("CPU"), None);
    }

    #[test]
    fn trigger_names_round_trip() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::from_name(t.as_str()), Some(t));
        }
        assert_eq!(Trigger::HeapThreshold.as_str(), "heap-threshold");
        assert_eq!(Trigger::RssThreshold.as_str(), "rss-threshold");
        assert_eq!(Trigger::CpuThreshold.as_str(), "cpu-threshold");
        assert_eq!(Trigger::Signal.to_string(), "signal");
        assert_eq!(Trigger::from_name("threshold"), None);
    }

    #[test]
    fn only_thresholds_are_automatic() {
        assert!(!Trigger::Signal.is_automatic());
        assert!(!Trigger::Manual.is_automatic());
        assert!(Trigger::HeapThreshold.is_automatic());
        assert!(Trigger::RssThreshold.is_automatic());
        assert!(Trigger::CpuThreshold.is_automatic());
    }

    #[test]
    fn people_outrank_thresholds_and_order_is_total() {
        for t in Trigger::ALL {
            for a in Trigger::ALL.into_iter().filter(|a| a.is_automatic()) {
                if !t.is_automatic() {
                    assert!(t.precedence() > a.precedence());
                }
            }
        }
        let mut p: Vec<u8> = Trigger::ALL.iter().map(|t| t.precedence()).collect();
        p.dedup();
        assert_eq!(p.len(), Trigger::ALL.len());
        assert!(p.windows(2).all(|w| w[0] > w[1]), "ALL is strongest first");
    }
}
