//! Throttling: how often captures may run, so profiling never hurts the
//! service it watches.
//!
//! Two independent mechanisms:
//!
//! - [`Gate`]: one capture at a time in the process, for every trigger. A
//!   request that finds a capture running is merged into a per-kind pending
//!   slot (keeping the strongest trigger), to be run once the current capture
//!   ends. However many requests arrive meanwhile — a `SIGUSR2` storm, a
//!   threshold flapping — at most one extra capture per kind follows.
//! - [`Throttle`]: caps on **automatic** (threshold) captures, per kind: a
//!   minimum gap, an hourly token bucket, and a lifetime cap that includes
//!   the automatic captures already on disk. Signal and manual captures
//!   bypass it entirely (and do not use up its allowance): a person asked.
//!
//! Take the gate first, then ask the throttle: a request merged by the gate
//! has not spent anything, and is admitted (or not) when it actually runs.
//! An admitted capture counts even if it then fails or the disk guard skips
//! it, so a full disk is not retried at every check.
//!
//! Signal handlers never call into this module: they only record that the
//! signal arrived, and the agent thread turns that into a request. The
//! gate's mutex is therefore only ever taken by ordinary threads, and only
//! for a few instructions.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::store::StoredCapture;
use super::{Kind, Trigger};

const HOUR: Duration = Duration::from_secs(3600);

/// Limits on automatic captures. Every limit applies to each kind
/// separately: a CPU-threshold storm does not starve heap snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Minimum gap between two automatic captures of one kind.
    pub min_interval: Duration,
    /// Token bucket of this many automatic captures of one kind, refilled
    /// evenly (one every `3600 s / per_hour`): a burst of `per_hour`, then a
    /// long-run average of `per_hour` an hour. (A bucket is not a sliding
    /// window: a full burst plus the refill can put up to `2 * per_hour - 1`
    /// in one 60-minute window; `min_interval` bounds bursts anyway.)
    /// 0 disables automatic captures.
    pub per_hour: u32,
    /// At most this many automatic captures of one kind, counting those on
    /// disk at start; `None` is unlimited.
    pub lifetime_cap: Option<u32>,
}

impl From<&crate::Config> for ThrottleConfig {
    fn from(c: &crate::Config) -> Self {
        ThrottleConfig {
            min_interval: c.min_interval,
            per_hour: c.max_per_hour,
            lifetime_cap: c.lifetime_cap,
        }
    }
}

/// The throttle's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    Skip(Throttled),
}

#[cfg(test)]
impl Admission {
    pub fn is_go(self) -> bool {
        self == Admission::Go
    }

    /// `Ok` to go ahead, else [`Error::Skipped`] with the reason.
    pub fn into_result(self) -> Result<(), crate::Error> {
        match self {
            Admission::Go => Ok(()),
            Admission::Skip(reason) => {
                Err(crate::Error::Skipped(crate::SkipReason::Throttled(reason)))
            }
        }
    }
}

/// Why an automatic capture was not admitted. Reasons may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Throttled {
    /// The lifetime cap for this kind is used up.
    LifetimeCap {
        /// The cap (`lifetime_cap`).
        cap: u32,
    },
    /// The last automatic capture of this kind was too recent.
    MinInterval {
        /// When the gap (`min_interval`) will have passed.
        retry_after: Duration,
    },
    /// The hourly allowance for this kind is used up (or is 0).
    RateLimited {
        /// The allowance (`max_per_hour`).
        per_hour: u32,
        /// When the bucket will hold a capture again.
        retry_after: Duration,
    },
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Throttled::LifetimeCap { cap } => {
                write!(f, "lifetime cap of {cap} automatic captures reached")
            }
            Throttled::MinInterval { retry_after } => write!(
                f,
                "too soon after the previous automatic capture (next allowed in {}s)",
                retry_after.as_secs()
            ),
            Throttled::RateLimited { per_hour: 0, .. } => {
                f.write_str("automatic captures are disabled (0 per hour)")
            }
            Throttled::RateLimited {
                per_hour,
                retry_after,
            } => write!(
                f,
                "hourly limit of {per_hour} automatic captures reached (next allowed in {}s)",
                retry_after.as_secs()
            ),
        }
    }
}

/// Per-kind state of the automatic caps.
#[derive(Debug, Clone, Copy, Default)]
struct KindState {
    /// When the last automatic capture of this kind was admitted.
    last: Option<Instant>,
    /// Token bucket as GCRA (generic cell rate algorithm): the "theoretical
    /// arrival time" of the next capture at the steady rate. Equivalent to a
    /// bucket of `per_hour` tokens refilled continuously, with no floating
    /// point and a single timestamp of state.
    tat: Option<Instant>,
    /// Automatic captures of this kind on disk at start.
    on_disk: u64,
    /// Automatic captures of this kind admitted since start.
    taken: u64,
}

/// Caps on automatic captures; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Throttle {
    config: ThrottleConfig,
    kinds: [KindState; 2],
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            kinds: [KindState::default(); 2],
        }
    }

    /// Takes the automatic captures already on disk into account: they count
    /// towards the lifetime cap, and the recent ones towards the minimum gap
    /// and the hourly bucket, so a process that restarts (or crash-loops)
    /// does not start with a fresh allowance. Call once, at start, before
    /// [`admit`](Self::admit), with [`Store::list`](super::Store::list) and
    /// the current wall-clock and monotonic times.
    ///
    /// A capture older than the monotonic clock's origin (typically boot)
    /// counts for the lifetime cap only.
    pub fn seed_from_disk(
        &mut self,
        captures: &[StoredCapture],
        now_wall: SystemTime,
        now: Instant,
    ) {
        let mut automatic: Vec<&StoredCapture> = captures
            .iter()
            .filter(|c| c.name.trigger.is_automatic())
            .collect();
        automatic.sort_by(|a, b| StoredCapture::chronological(a, b));
        let emission = self.emission_interval();
        for c in automatic {
            let state = &mut self.kinds[c.name.kind.index()];
            state.on_disk += 1;
            // A capture stamped in the future counts as taken just now.
            let ago = now_wall
                .duration_since(c.name.time)
                .unwrap_or(Duration::ZERO);
            let Some(taken_at) = now.checked_sub(ago) else {
                continue;
            };
            state.last = Some(state.last.map_or(taken_at, |l| l.max(taken_at)));
            if let Some(emission) = emission {
                let tat = state.tat.map_or(taken_at, |t| t.max(taken_at));
                state.tat = Some(tat.checked_add(emission).unwrap_or(tat));
            }
        }
    }

    /// Decides whether a capture of `kind` for `trigger` may run at `now`,
    /// and if it may and is automatic, counts it.
    pub fn admit(&mut self, kind: Kind, trigger: Trigger, now: Instant) -> Admission {
        if !trigger.is_automatic() {
            return Admission::Go;
        }
        let config = self.config;
        let emission = self.emission_interval();
        let state = &mut self.kinds[kind.index()];

        if let Some(cap) = config.lifetime_cap {
            if state.on_disk.saturating_add(state.taken) >= u64::from(cap) {
                return Admission::Skip(Throttled::LifetimeCap { cap });
            }
        }

        if let Some(last) = state.last {
            let since = now.saturating_duration_since(last);
            if since < config.min_interval {
                return Admission::Skip(Throttled::MinInterval {
                    retry_after: config.min_interval - since,
                });
            }
        }

        let Some(emission) = emission else {
            return Admission::Skip(Throttled::RateLimited {
                per_hour: 0,
                retry_after: Duration::MAX,
            });
        };
        // GCRA: conforming when the theoretical arrival time is no further
        // ahead than the burst tolerance, (per_hour - 1) emission intervals.
        let tolerance = emission.saturating_mul(config.per_hour - 1);
        let tat = state.tat.map_or(now, |t| t.max(now));
        if let Some(limit) = now.checked_add(tolerance) {
            if tat > limit {
                return Admission::Skip(Throttled::RateLimited {
                    per_hour: config.per_hour,
                    retry_after: tat - limit,
                });
            }
        }

        state.tat = Some(tat.checked_add(emission).unwrap_or(tat));
        state.last = Some(now);
        state.taken += 1;
        Admission::Go
    }

    /// Automatic captures of `kind` counted against the lifetime cap: those
    /// on disk at start plus those admitted since.
    #[cfg(test)]
    pub fn lifetime_count(&self, kind: Kind) -> u64 {
        let state = &self.kinds[kind.index()];
        state.on_disk.saturating_add(state.taken)
    }

    /// The steady-state gap between two captures of the bucket; `None` when
    /// automatic captures are disabled (`per_hour == 0`).
    fn emission_interval(&self) -> Option<Duration> {
        (self.config.per_hour > 0).then(|| HOUR / self.config.per_hour)
    }
}

/// One capture at a time; see the [module docs](self).
///
/// Cloning gives another handle on the same gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The capture in progress.
    running: Option<(Kind, Trigger)>,
    /// Requests merged while busy: per kind, the strongest trigger.
    pending: [Option<Trigger>; 2],
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Starts a capture if none is running: the returned guard ends it when
    /// dropped. Otherwise merges the request into the pending slot of `kind`
    /// (keeping the stronger trigger, see [`Trigger`]) and returns `None`.
    ///
    /// Starting a capture leaves pending requests alone, even for the same
    /// kind: if this capture is then refused by the throttle, a pending
    /// signal request must not have been lost with it.
    pub fn try_begin(&self, kind: Kind, trigger: Trigger) -> Option<CaptureGuard> {
        let mut state = self.lock();
        if state.running.is_some() {
            let slot = &mut state.pending[kind.index()];
            if slot.is_none_or(|t| trigger.precedence() > t.precedence()) {
                *slot = Some(trigger);
            }
            return None;
        }
        state.running = Some((kind, trigger));
        Some(CaptureGuard { gate: self.clone() })
    }

    /// Takes the requests merged while captures ran, at most one per kind,
    /// heap first (a snapshot is instant; a CPU profile takes its full
    /// duration, and should not delay it). Call after the guard is dropped,
    /// and run each through [`try_begin`](Self::try_begin) and the throttle
    /// like any other request.
    pub fn take_pending(&self) -> Vec<(Kind, Trigger)> {
        let mut state = self.lock();
        [Kind::Heap, Kind::Cpu]
            .into_iter()
            .filter_map(|kind| state.pending[kind.index()].take().map(|t| (kind, t)))
            .collect()
    }

    /// Whether requests are waiting in [`take_pending`](Self::take_pending).
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        self.lock().pending.iter().any(Option::is_some)
    }

    /// The capture in progress, if any.
    #[cfg(test)]
    pub fn running(&self) -> Option<(Kind, Trigger)> {
        self.lock().running
    }

    /// The state is a few plain fields updated in single assignments, so it
    /// is consistent even if a holder panicked: poisoning is ignored rather
    /// than turned into a panic here.
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Proof that a capture is running; dropping it lets the next one start.
/// It owns a handle on its gate, so it can move to the thread doing the work.
#[derive(Debug)]
#[must_use = "the capture ends when the guard is dropped"]
pub struct CaptureGuard {
    gate: Gate,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        self.gate.lock().running = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureName;
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    const MIN: Duration = Duration::from_secs(60);

    fn config(min_interval: Duration, per_hour: u32, lifetime_cap: Option<u32>) -> ThrottleConfig {
        ThrottleConfig {
            min_interval,
            per_hour,
            lifetime_cap,
        }
    }

    fn skip_kind(a: Admission) -> &'static str {
        match a {
            Admission::Go => "go",
            Admission::Skip(Throttled::LifetimeCap { .. }) => "lifetime",
            Admission::Skip(Throttled::MinInterval { .. }) => "interval",
            Admission::Skip(Throttled::RateLimited { .. }) => "rate",
        }
    }

    /// The defaults (10 min gap, 4 an hour): the bucket binds. After a
    /// quiet hour, captures come 10 min apart until the bucket runs low,
    /// then one per 15 min (the gap alone would allow one per 10 min).
    #[test]
    fn with_the_defaults_the_hourly_bucket_binds() {
        let mut t = Throttle::new(ThrottleConfig::from(&crate::Config::default()));
        let start = Instant::now();
        let mut admitted = Vec::new();
        for minute in 0..240u64 {
            let at = start + Duration::from_secs(minute * 60);
            if t.admit(Kind::Cpu, Trigger::CpuThreshold, at).is_go() {
                admitted.push(minute);
            }
        }
        let gaps: Vec<u64> = admitted.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g >= 10), "{admitted:?}");
        // The bucket, not the gap, sets the long-run pace: 4 an hour.
        assert!(
            gaps.iter().any(|&g| g > 10),
            "the bucket never bound: {admitted:?}"
        );
        assert!((15..=19).contains(&admitted.len()), "{admitted:?}");
    }

    #[test]
    fn signal_and_manual_bypass_every_cap() {
        let mut t = Throttle::new(config(HOUR, 0, Some(0)));
        let now = Instant::now();
        for i in 0..100 {
            let at = now + Duration::from_millis(i);
            assert!(t.admit(Kind::Heap, Trigger::Signal, at).is_go());
            assert!(t.admit(Kind::Cpu, Trigger::Manual, at).is_go());
        }
        // And they use up nothing.
        assert_eq!(t.lifetime_count(Kind::Heap), 0);
        let mut t = Throttle::new(config(HOUR, 1, Some(5)));
        assert!(t.admit(Kind::Heap, Trigger::Signal, now).is_go());
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
    }

    #[test]
    fn min_interval_per_kind() {
        let mut t = Throttle::new(config(30 * MIN, 100, None));
        let now = Instant::now();
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
        let a = t.admit(Kind::Heap, Trigger::RssThreshold, now + 10 * MIN);
        assert_eq!(
            a,
            Admission::Skip(Throttled::MinInterval {
                retry_after: 20 * MIN
            })
        );
        // The other kind is independent.
        assert!(t
            .admit(Kind::Cpu, Trigger::CpuThreshold, now + 10 * MIN)
            .is_go());
        assert!(t
            .admit(Kind::Heap, Trigger::HeapThreshold, now + 30 * MIN)
            .is_go());
        // A skipped request does not move the gap.
        assert_eq!(
            skip_kind(t.admit(Kind::Heap, Trigger::HeapThreshold, now + 59 * MIN)),
            "interval"
        );
        assert!(t
            .admit(Kind::Heap, Trigger::HeapThreshold, now + 60 * MIN)
            .is_go());
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refills_evenly() {
        let mut t = Throttle::new(config(Duration::ZERO, 4, None));
        let now = Instant::now();
        for i in 0..4 {
            assert!(
                t.admit(Kind::Cpu, Trigger::CpuThreshold, now).is_go(),
                "burst {i}"
            );
        }
        let a = t.admit(Kind::Cpu, Trigger::CpuThreshold, now);
        assert_eq!(
            a,
            Admission::Skip(Throttled::RateLimited {
                per_hour: 4,
                retry_after: 15 * MIN
            })
        );
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, now + 14 * MIN)),
            "rate"
        );
        // One token back every 15 minutes.
        assert!(t
            .admit(Kind::Cpu, Trigger::CpuThreshold, now + 15 * MIN)
            .is_go());
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, now + 16 * MIN)),
            "rate"
        );
        // After a quiet hour the bucket is full again, and no fuller.
        let later = now + 3 * HOUR;
        for _ in 0..4 {
            assert!(t.admit(Kind::Cpu, Trigger::CpuThreshold, later).is_go());
        }
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, later)),
            "rate"
        );
        // The heap bucket was never touched.
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, later).is_go());
    }

    #[test]
    fn bucket_bounds_every_hour_and_the_long_run_rate() {
        let mut t = Throttle::new(config(Duration::ZERO, 4, None));
        let start = Instant::now();
        let mut admitted = Vec::new();
        // A check every minute for ten hours.
        for m in 0..600u32 {
            let at = start + MIN * m;
            if t.admit(Kind::Heap, Trigger::HeapThreshold, at).is_go() {
                admitted.push(m);
            }
        }
        for (i, &m) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&n| n < m + 60).count();
            assert!(
                in_window < 2 * 4,
                "{in_window} captures in the hour from minute {m}"
            );
        }
        assert_eq!(&admitted[..7], &[0, 1, 2, 3, 15, 30, 45]);
        // Steady state: one per 15 minutes after the initial burst.
        assert_eq!(admitted.len(), 4 + 599 / 15);
    }

    #[test]
    fn zero_per_hour_disables_automatic_captures() {
        let mut t = Throttle::new(config(Duration::ZERO, 0, None));
        let a = t.admit(Kind::Heap, Trigger::HeapThreshold, Instant::now());
        assert_eq!(skip_kind(a), "rate");
        let Admission::Skip(reason) = a else {
            unreachable!()
        };
        assert!(reason.to_string().contains("disabled"), "{reason}");
    }

    #[test]
    fn lifetime_cap_counts_captures_taken() {
        let mut t = Throttle::new(config(Duration::ZERO, 1000, Some(3)));
        let now = Instant::now();
        for i in 0..3 {
            assert!(t
                .admit(Kind::Heap, Trigger::HeapThreshold, now + MIN * i)
                .is_go());
        }
        assert_eq!(
            t.admit(Kind::Heap, Trigger::HeapThreshold, now + 100 * HOUR),
            Admission::Skip(Throttled::LifetimeCap { cap: 3 })
        );
        assert_eq!(t.lifetime_count(Kind::Heap), 3);
        assert!(t.admit(Kind::Cpu, Trigger::CpuThreshold, now).is_go());
        let unlimited = &mut Throttle::new(config(Duration::ZERO, 1000, None));
        for i in 0..100 {
            assert!(unlimited
                .admit(Kind::Heap, Trigger::HeapThreshold, now + MIN * i)
                .is_go());
        }
    }

    fn stored(kind: Kind, trigger: Trigger, time: SystemTime, seq: u64) -> StoredCapture {
        StoredCapture {
            path: PathBuf::from(format!("{seq}")),
            name: CaptureName {
                service: "api".to_owned(),
                kind,
                time,
                pid: 1,
                seq,
                trigger,
            },
            size: 1,
            modified: time,
        }
    }

    #[test]
    fn captures_on_disk_count_towards_the_lifetime_cap() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let long_ago = wall - 48 * HOUR;
        let disk: Vec<StoredCapture> = (0..4)
            .map(|i| stored(Kind::Heap, Trigger::RssThreshold, long_ago, i))
            .chain([
                stored(Kind::Heap, Trigger::Signal, long_ago, 10), // not automatic
                stored(Kind::Cpu, Trigger::CpuThreshold, long_ago, 11),
            ])
            .collect();
        let mut t = Throttle::new(config(Duration::ZERO, 1000, Some(5)));
        let now = Instant::now();
        t.seed_from_disk(&disk, wall, now);
        assert_eq!(t.lifetime_count(Kind::Heap), 4);
        assert_eq!(t.lifetime_count(Kind::Cpu), 1);
        // A crash loop: one more, then the cap holds.
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
        assert_eq!(
            skip_kind(t.admit(Kind::Heap, Trigger::HeapThreshold, now + HOUR)),
            "lifetime"
        );
        // Signals still go.
        assert!(t.admit(Kind::Heap, Trigger::Signal, now + HOUR).is_go());
    }

    #[test]
    fn recent_captures_on_disk_hold_the_gap_and_bucket_across_restarts() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = Instant::now() + 2 * HOUR; // room below for the past
        let disk = [
            stored(Kind::Heap, Trigger::HeapThreshold, wall - 10 * MIN, 0),
            stored(Kind::Cpu, Trigger::CpuThreshold, wall - 20 * MIN, 1),
            stored(Kind::Cpu, Trigger::CpuThreshold, wall - 5 * MIN, 2),
            stored(Kind::Cpu, Trigger::CpuThreshold, wall - 15 * MIN, 3),
            stored(Kind::Cpu, Trigger::Manual, wall - MIN, 4), // ignored
        ];
        let mut t = Throttle::new(config(30 * MIN, 4, None));
        t.seed_from_disk(&disk, wall, now);
        assert_eq!(
            t.admit(Kind::Heap, Trigger::HeapThreshold, now),
            Admission::Skip(Throttled::MinInterval {
                retry_after: 20 * MIN
            })
        );
        assert!(t
            .admit(Kind::Heap, Trigger::HeapThreshold, now + 20 * MIN)
            .is_go());
        // CPU: the newest automatic one was 5 minutes ago.
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, now + 24 * MIN)),
            "interval"
        );
        assert!(t
            .admit(Kind::Cpu, Trigger::CpuThreshold, now + 25 * MIN)
            .is_go());

        // Without a gap, the bucket alone remembers three captures in the
        // last 20 minutes, of which one has been refilled since: two left.
        let mut t = Throttle::new(config(Duration::ZERO, 4, None));
        t.seed_from_disk(&disk, wall, now);
        assert!(t.admit(Kind::Cpu, Trigger::CpuThreshold, now).is_go());
        assert!(t.admit(Kind::Cpu, Trigger::CpuThreshold, now).is_go());
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, now)),
            "rate"
        );
    }

    #[test]
    fn seeding_tolerates_odd_times() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = Instant::now();
        let disk = [
            // Before the monotonic clock's origin: counts for the cap only.
            stored(Kind::Heap, Trigger::HeapThreshold, UNIX_EPOCH, 0),
            // In the future: counts as just taken.
            stored(Kind::Cpu, Trigger::CpuThreshold, wall + HOUR, 1),
        ];
        let mut t = Throttle::new(config(30 * MIN, 4, Some(10)));
        t.seed_from_disk(&disk, wall, now);
        assert_eq!(t.lifetime_count(Kind::Heap), 1);
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
        assert_eq!(
            skip_kind(t.admit(Kind::Cpu, Trigger::CpuThreshold, now)),
            "interval"
        );
    }

    #[test]
    fn checks_run_in_order_lifetime_interval_rate() {
        let mut t = Throttle::new(config(HOUR, 1, Some(1)));
        let now = Instant::now();
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
        // All three would refuse; the permanent one is reported.
        assert_eq!(
            skip_kind(t.admit(Kind::Heap, Trigger::HeapThreshold, now)),
            "lifetime"
        );
        let mut t = Throttle::new(config(HOUR, 1, None));
        assert!(t.admit(Kind::Heap, Trigger::HeapThreshold, now).is_go());
        assert_eq!(
            skip_kind(t.admit(Kind::Heap, Trigger::HeapThreshold, now)),
            "interval"
        );
    }

    #[test]
    fn skips_become_skipped_errors() {
        assert!(Admission::Go.into_result().is_ok());
        let err = Admission::Skip(Throttled::LifetimeCap { cap: 20 })
            .into_result()
            .expect_err("skip");
        assert!(
            matches!(&err, crate::Error::Skipped(r) if r.to_string().contains("lifetime cap of 20")),
            "{err}"
        );
        let msg = Throttled::RateLimited {
            per_hour: 4,
            retry_after: 90 * MIN,
        }
        .to_string();
        assert!(msg.contains("5400s"), "{msg}");
    }

    #[test]
    fn gate_runs_one_capture_at_a_time() {
        let gate = Gate::new();
        assert_eq!(gate.running(), None);
        let guard = gate.try_begin(Kind::Heap, Trigger::Signal).expect("free");
        assert_eq!(gate.running(), Some((Kind::Heap, Trigger::Signal)));
        // Busy for either kind.
        assert!(gate.try_begin(Kind::Cpu, Trigger::Manual).is_none());
        assert!(gate.try_begin(Kind::Heap, Trigger::Manual).is_none());
        drop(guard);
        assert_eq!(gate.running(), None);
        assert!(gate.try_begin(Kind::Cpu, Trigger::CpuThreshold).is_some());
    }

    #[test]
    fn a_signal_storm_merges_into_one_capture_per_kind() {
        let gate = Gate::new();
        let guard = gate.try_begin(Kind::Cpu, Trigger::Signal).expect("free");
        for _ in 0..10_000 {
            assert!(gate.try_begin(Kind::Heap, Trigger::Signal).is_none());
            assert!(gate.try_begin(Kind::Cpu, Trigger::Signal).is_none());
        }
        assert!(gate.has_pending());
        drop(guard);
        assert_eq!(
            gate.take_pending(),
            vec![(Kind::Heap, Trigger::Signal), (Kind::Cpu, Trigger::Signal)]
        );
        assert!(!gate.has_pending());
        assert!(gate.take_pending().is_empty());
    }

    #[test]
    fn merging_keeps_the_strongest_trigger() {
        let gate = Gate::new();
        let guard = gate
            .try_begin(Kind::Cpu, Trigger::CpuThreshold)
            .expect("free");
        for t in [
            Trigger::CpuThreshold,
            Trigger::Signal,
            Trigger::RssThreshold,
        ] {
            assert!(gate.try_begin(Kind::Heap, t).is_none());
        }
        for t in [
            Trigger::CpuThreshold,
            Trigger::HeapThreshold,
            Trigger::RssThreshold,
        ] {
            assert!(gate.try_begin(Kind::Cpu, t).is_none());
        }
        drop(guard);
        assert_eq!(
            gate.take_pending(),
            vec![
                (Kind::Heap, Trigger::Signal),
                (Kind::Cpu, Trigger::HeapThreshold)
            ]
        );
    }

    #[test]
    fn nothing_is_pending_when_the_gate_was_free() {
        let gate = Gate::new();
        drop(gate.try_begin(Kind::Heap, Trigger::Manual));
        assert!(gate.take_pending().is_empty());
    }

    #[test]
    fn guard_moves_to_another_thread_and_clones_share_state() {
        let gate = Gate::new();
        let other = gate.clone();
        let guard = gate.try_begin(Kind::Cpu, Trigger::Signal).expect("free");
        assert!(other.try_begin(Kind::Heap, Trigger::Manual).is_none());
        std::thread::spawn(move || drop(guard))
            .join()
            .expect("join");
        assert!(other.try_begin(Kind::Heap, Trigger::Manual).is_some());
        assert_eq!(gate.take_pending(), vec![(Kind::Heap, Trigger::Manual)]);
    }

    #[test]
    fn concurrent_requests_never_overlap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Gate::new();
        let inside = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (gate, inside, ran) = (gate.clone(), inside.clone(), ran.clone());
                std::thread::spawn(move || {
                    let kind = Kind::ALL[i % 2];
                    for _ in 0..2000 {
                        if let Some(_guard) = gate.try_begin(kind, Trigger::Signal) {
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                            ran.fetch_add(1, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no overlap");
        }
        assert!(ran.load(Ordering::SeqCst) > 0);
        assert!(gate.take_pending().len() <= 2);
        assert_eq!(gate.running(), None);
    }
}
