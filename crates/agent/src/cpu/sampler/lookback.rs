//! The agent's look-back sampler: the process's one sampler, started with
//! the agent when `lookback` is set and kept for its life, so that a CPU
//! capture also covers the seconds before its trigger (what JFR's
//! continuous recording and Go's flight recorder keep).
//!
//! Between captures it samples at `lookback_hz` (19 Hz by default) into a
//! [`History`] of one-second windows. A capture does not start another
//! sampler (there is one per process): it asks this one's thread, over a
//! channel, to `Begin` (raise the rate to the capture's and, if asked, copy
//! the windows of the last `lookback`) and later to `End` (hand over those
//! windows with the capture's own samples, and return to `lookback_hz`).
//! Samples count in the current window during a capture too, so the
//! history has no gap for the next capture.
//!
//! Between captures the thread wakes every 100 ms to drain the pool (a CPU
//! fills at most 2 of its 32 slots in that time at 19 Hz) and lists the
//! threads once a second instead of every 20 ms: a new thread is found
//! within a second, its CPU before then in `[firewatch: unsampled]`.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::history::{History, Moment, Taken};
use super::{
    join_profiler_thread, period_for, spawn_profiler_thread, Parts, Sampler, ScanSchedule,
    ThreadStats, DRAIN_EVERY, ENABLED, NAMES_EVERY_SCANS,
};
use crate::cpu::{CpuCapture, Lookback, LookbackSettings};
use crate::{Error, Result};

/// Longest wait between drains outside captures.
const IDLE_DRAIN_EVERY: Duration = Duration::from_millis(100);
/// How often the threads are listed outside captures.
const IDLE_SCAN_EVERY: Duration = Duration::from_secs(1);
/// Outside captures, names and reused tids are checked every this many
/// scans (5 s).
const IDLE_NAMES_EVERY_SCANS: u32 = 5;

/// The running look-back sampler. Dropping it stops its thread and frees
/// the process's sampler for a `CpuProfiler`.
pub(crate) struct LookbackSampler {
    commands: Option<Sender<Command>>,
    worker: Option<JoinHandle<()>>,
}

/// What the agent asks of the profiler thread.
enum Command {
    /// Sample at `hz` from now on, for a capture; with `lookback`, the
    /// capture begins with the windows of the last `lookback` seconds.
    /// Answered on `armed` once every thread's timer runs at `hz`.
    Begin {
        hz: u32,
        lookback: bool,
        armed: Sender<()>,
    },
    /// End the capture: its samples (and windows), back to `lookback_hz`.
    End { reply: Sender<CpuCapture> },
}

/// A capture in progress.
struct Begun {
    hz: u32,
    at: Moment,
    /// The windows copied at the start, if the capture wanted them.
    taken: Option<Taken>,
}

impl LookbackSampler {
    /// Claims the process's sampler (else [`Error::Busy`]) and starts
    /// sampling at `settings.hz`; returns once the threads that exist now
    /// have their timers.
    pub(crate) fn start(settings: LookbackSettings) -> Result<LookbackSampler> {
        let (commands, inbox) = mpsc::channel();
        let worker = spawn_profiler_thread(move |previous_handler, ready| {
            let limit = usize::try_from(settings.memory_limit).unwrap_or(usize::MAX);
            let history = History::new(settings.span, limit, Moment::now());
            let mut sampler =
                Sampler::new(period_for(settings.hz), previous_handler, Some(history));
            sampler.serve(&settings, &inbox, ready);
            sampler.finish();
        })?;
        Ok(LookbackSampler {
            commands: Some(commands),
            worker: Some(worker),
        })
    }

    /// Starts a capture at `hz`; with `include_lookback` it will begin with
    /// the windows of the last `lookback`. Returns once the timers run at
    /// `hz`.
    pub(crate) fn begin(&self, hz: u32, include_lookback: bool) -> Result<()> {
        let (armed, wait) = mpsc::channel();
        self.send(Command::Begin {
            hz,
            lookback: include_lookback,
            armed,
        })?;
        wait.recv().map_err(|_| gone())
    }

    /// Ends the capture begun last and returns it.
    pub(crate) fn end(&self) -> Result<CpuCapture> {
        let (reply, wait) = mpsc::channel();
        self.send(Command::End { reply })?;
        wait.recv().map_err(|_| gone())
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send(command)
            .map_err(|_| gone())
    }
}

/// The profiler thread is gone (it panicked: joining says so).
fn gone() -> Error {
    Error::Sys {
        call: "the look-back profiler thread",
        source: std::io::Error::other("it stopped"),
    }
}

impl Drop for LookbackSampler {
    fn drop(&mut self) {
        // The thread stops when the channel closes.
        self.commands.take();
        if let Some(worker) = self.worker.take() {
            if let Err(e) = join_profiler_thread(worker) {
                log::warn!("firewatch: look-back sampler: {e}");
            }
        }
    }
}

impl Sampler {
    /// The look-back sampler's loop: drains, rolls windows and lists
    /// threads, and answers `commands` until the channel closes. Says on
    /// `ready` once the threads that existed at the start have their timers.
    fn serve(
        &mut self,
        settings: &LookbackSettings,
        commands: &Receiver<Command>,
        ready: Sender<()>,
    ) {
        ENABLED.store(true, Ordering::Release);
        let mut ready = Some(ready);
        let mut schedule = ScanSchedule::now();
        let mut capture: Option<Begun> = None;
        // At most half of a CPU's 32 pool slots filled between drains.
        let idle_drain =
            (Duration::from_secs(16) / settings.hz.max(1)).clamp(DRAIN_EVERY, IDLE_DRAIN_EVERY);
        loop {
            let (scan_every, names_every, wait) = if capture.is_some() {
                (DRAIN_EVERY, NAMES_EVERY_SCANS, DRAIN_EVERY)
            } else {
                (IDLE_SCAN_EVERY, IDLE_NAMES_EVERY_SCANS, idle_drain)
            };
            self.scan_if_due(&mut schedule, scan_every, names_every);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            self.drain();
            let history = self.history.as_mut().expect("the look-back sampler's");
            if history.due(Instant::now()) {
                history.roll(Moment::now());
            }
            match commands.recv_timeout(wait) {
                Ok(Command::Begin {
                    hz,
                    lookback,
                    armed,
                }) => {
                    capture = Some(self.begin(settings, hz, lookback));
                    // Threads started during the capture are found within
                    // 20 ms, as in any profile.
                    schedule.next = Instant::now() + DRAIN_EVERY;
                    let _ = armed.send(());
                }
                Ok(Command::End { reply }) => {
                    let _ = reply.send(self.end(settings, capture.take()));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Starts a capture at `hz`: the current window ends here, so the
    /// windows copied and the capture's own samples do not overlap.
    fn begin(&mut self, settings: &LookbackSettings, hz: u32, lookback: bool) -> Begun {
        self.drain();
        let at = Moment::now();
        let history = self.history.as_mut().expect("the look-back sampler's");
        history.roll(at);
        let taken = lookback.then(|| history.take_since(at.at.checked_sub(settings.span)));
        self.profile = Some(Default::default());
        self.thread_stats = ThreadStats::default();
        self.track_threads();
        self.thread_stats.threads_seen = self.threads.len();
        self.set_period(period_for(hz));
        Begun { hz, at, taken }
    }

    /// Ends the capture (`None`: none was begun, an empty one from now)
    /// and returns to `lookback_hz`.
    fn end(&mut self, settings: &LookbackSettings, begun: Option<Begun>) -> CpuCapture {
        // The process's CPU clock before the last drain, as
        // `CpuProfiler::stop_raw` reads it.
        let end = Moment::now();
        self.drain();
        self.refresh_names();
        let profile = self.profile.take().unwrap_or_default();
        let threads = self.thread_stats;
        self.set_period(period_for(settings.hz));
        let begun = begun.unwrap_or(Begun {
            hz: settings.hz,
            at: end,
            taken: None,
        });
        let from = begun
            .taken
            .as_ref()
            .and_then(|taken| taken.from)
            .unwrap_or(begun.at);
        let lookback = begun.taken.map(|taken| {
            let said = Lookback {
                requested: settings.span,
                covered: begun.at.at.saturating_duration_since(from.at),
                hz: settings.hz,
                samples: taken.tally.samples,
                cpu_ns: taken.tally.cpu_ns,
                windows_dropped: taken.windows_dropped,
                memory_limit: settings.memory_limit,
            };
            (taken.tally, said)
        });
        Parts {
            hz: begun.hz,
            started: from.wall,
            duration: end.at.saturating_duration_since(from.at),
            used: end.cpu_clock.saturating_sub(from.cpu_clock),
            profile,
            lookback,
            threads,
            without_tables: self.unwinder.without_tables,
            previous_handler: self.previous_handler,
        }
        .into_capture()
    }
}
