//! The agent's CPU sampler: one per process, shared by every CPU profile
//! the agent takes (signal, threshold and `capture_cpu` captures, the
//! `/debug/pprof/profile` endpoint) and by the look-back windows.
//!
//! **One sampler, several subscribers.** A scraper asks the endpoint for a
//! 14 s profile every 15 s: with one exclusive profiler, a trigger would
//! almost never get it. So a profile does not start a sampler: it
//! *subscribes* to this one (over a channel to its thread) for a window of
//! a given length, and every sample drained while it is subscribed is
//! counted in its own [`Tally`] (and in each other subscriber's, and in the
//! current look-back window). Its window is `[subscribed, ended)`, where
//! both ends are drains of the pool: what a subscriber gets does not
//! depend on who else subscribes. The thread ends a subscription itself
//! when its length has run and hands the capture over, so a profile ends on
//! time however busy the agent's thread is.
//!
//! **Rates.** The timers run at the highest rate any subscriber asks for
//! (and `lookback_hz` with look-back). Each sample weighs the CPU time of
//! the period in force when it was taken, so a subscriber's totals are
//! right at any rate; only the detail (samples per CPU-second) is finer
//! than it asked for, and its profile says so. A change of rate re-creates
//! every thread's timer (`Sampler::set_rate`): about one period per busy
//! thread goes unsampled for the subscribers already there, in
//! `[firewatch: unsampled]`, so their totals stay true too. In the agent
//! every capture asks for `cpu_hz`, so rates change only when the first
//! capture begins beside look-back and when the last one ends.
//!
//! **Look-back.** With `lookback` set the sampler runs for the agent's
//! life, between captures at `lookback_hz` (19 Hz by default), into a
//! [`History`] of one-second windows; a subscriber that asks for it begins
//! with a copy of the windows of the last `lookback` (the current window
//! ends where it subscribes, so the copy and its own samples do not
//! overlap). Samples count in the current window during captures too, so
//! the history has no gap for the next one. Between captures the thread
//! wakes every 100 ms to drain the pool (a CPU fills at most 2 of its 32
//! slots in that time at 19 Hz) and lists the threads once a second
//! instead of every 20 ms: a new thread is found within a second, its CPU
//! before then in `[firewatch: unsampled]`.
//!
//! Without look-back the agent starts the sampler for its first subscriber
//! and drops it (its thread joined, its timers deleted, the process's
//! sampler free for a `CpuProfiler`) once none is left.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::history::{History, Moment, Taken};
use super::{
    join_profiler_thread, spawn_profiler_thread, Parts, Sampler, ScanSchedule, Sub, ThreadStats,
    DRAIN_EVERY, ENABLED, NAMES_EVERY_SCANS,
};
use crate::cpu::{CpuCapture, Lookback, LookbackSettings};
use crate::{Error, Result};

/// Longest wait between drains between captures, with look-back.
const IDLE_DRAIN_EVERY: Duration = Duration::from_millis(100);
/// How often the threads are listed between captures, with look-back.
const IDLE_SCAN_EVERY: Duration = Duration::from_secs(1);
/// Between captures, names and reused tids are checked every this many
/// scans (5 s).
const IDLE_NAMES_EVERY_SCANS: u32 = 5;

/// The running shared sampler. Dropping it stops its thread (subscriptions
/// still running end without a capture) and frees the process's sampler.
pub(crate) struct SharedSampler {
    commands: Option<Sender<Command>>,
    worker: Option<JoinHandle<()>>,
    lookback: bool,
    next_id: Cell<u64>,
}

/// What the agent asks of the profiler thread.
enum Command {
    /// Count samples for a new subscriber from now, for `length`, with the
    /// sampler at `hz` at least; with `lookback`, begin with the windows of
    /// the last `lookback`. Answered on `armed` (with when its window will
    /// end) once every thread's timer runs at the rate; the capture goes to
    /// `done` when the window ends.
    Subscribe {
        id: u64,
        hz: u32,
        lookback: bool,
        length: Duration,
        armed: Sender<Instant>,
        done: Sender<CpuCapture>,
    },
    /// The subscriber gave up (a client that went away): its samples are
    /// dropped, and the rate goes back to what the others ask for.
    Cancel { id: u64 },
    /// The sampler is dropped: stop (subscriptions still hold senders, so
    /// the channel may never close).
    Stop,
}

/// A subscriber's window, on the profiler thread.
struct Window {
    id: u64,
    hz: u32,
    at: Moment,
    until: Instant,
    /// The look-back windows copied when it subscribed, if it asked.
    taken: Option<Taken>,
    done: Sender<CpuCapture>,
}

/// One profile taken through the shared sampler. Its capture arrives
/// when its window ends ([`poll`](Self::poll)); dropping it before then
/// cancels it (the sampler drops its samples, and slows down or stops if
/// nobody else subscribes).
pub(crate) struct Subscription {
    id: u64,
    until: Instant,
    done: Receiver<CpuCapture>,
    commands: Sender<Command>,
    ended: bool,
}

impl SharedSampler {
    /// Claims the process's sampler (else [`Error::Busy`]) and starts its
    /// thread: with `lookback`, sampling at `lookback.hz` from now into the
    /// look-back windows; without, at `hz`, the rate its first subscriber
    /// will ask for. Returns once the threads that exist now have their
    /// timers.
    pub(crate) fn start(lookback: Option<LookbackSettings>, hz: u32) -> Result<SharedSampler> {
        let (commands, inbox) = mpsc::channel();
        let with_lookback = lookback.is_some();
        let worker = spawn_profiler_thread(move |previous_handler, ready| {
            let history = lookback.as_ref().map(|settings| {
                let limit = usize::try_from(settings.memory_limit).unwrap_or(usize::MAX);
                History::new(settings.span, limit, Moment::now())
            });
            let hz = lookback.as_ref().map_or(hz, |s| s.hz);
            let mut sampler = Sampler::new(hz, previous_handler, history);
            sampler.serve(lookback.as_ref(), &inbox, ready);
            sampler.finish();
        })?;
        Ok(SharedSampler {
            commands: Some(commands),
            worker: Some(worker),
            lookback: with_lookback,
            next_id: Cell::new(0),
        })
    }

    /// Whether it keeps look-back windows (and so runs for the agent's life).
    pub(crate) fn has_lookback(&self) -> bool {
        self.lookback
    }

    /// Subscribes for `length` at `hz` (at least); with `include_lookback`
    /// the capture will begin with the look-back windows (if this sampler
    /// keeps them). Returns once the timers run at the rate.
    pub(crate) fn subscribe(
        &self,
        hz: u32,
        include_lookback: bool,
        length: Duration,
    ) -> Result<Subscription> {
        let commands = self.commands.as_ref().ok_or_else(gone)?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (armed, wait) = mpsc::channel();
        let (done, captured) = mpsc::channel();
        commands
            .send(Command::Subscribe {
                id,
                hz,
                lookback: include_lookback,
                length,
                armed,
                done,
            })
            .map_err(|_| gone())?;
        let until = wait.recv().map_err(|_| gone())?;
        Ok(Subscription {
            id,
            until,
            done: captured,
            commands: commands.clone(),
            ended: false,
        })
    }
}

impl Subscription {
    /// When its window ends (the capture arrives a drain later).
    pub(crate) fn until(&self) -> Instant {
        self.until
    }

    /// The capture, once its window has ended; an error if the sampler's
    /// thread stopped first.
    pub(crate) fn poll(&mut self) -> Option<Result<CpuCapture>> {
        match self.done.try_recv() {
            Ok(capture) => {
                self.ended = true;
                Some(Ok(capture))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.ended = true;
                Some(Err(gone()))
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.ended {
            // The sampler may have stopped: nothing to cancel then.
            let _ = self.commands.send(Command::Cancel { id: self.id });
        }
    }
}

/// The profiler thread is gone (it panicked: joining says so).
fn gone() -> Error {
    Error::Sys {
        call: "the agent's CPU profiler thread",
        source: std::io::Error::other("it stopped"),
    }
}

impl Drop for SharedSampler {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            let _ = commands.send(Command::Stop);
        }
        if let Some(worker) = self.worker.take() {
            if let Err(e) = join_profiler_thread(worker) {
                log::warn!("firewatch: CPU sampler: {e}");
            }
        }
    }
}

impl Sampler {
    /// The shared sampler's loop: drains, rolls windows, lists threads,
    /// ends the windows that are due and answers `commands` until told to
    /// stop (or the channel closes). Says on `ready` once the threads that
    /// existed at the start have their timers.
    fn serve(
        &mut self,
        lookback: Option<&LookbackSettings>,
        commands: &Receiver<Command>,
        ready: Sender<()>,
    ) {
        ENABLED.store(true, Ordering::Release);
        let mut ready = Some(ready);
        let mut schedule = ScanSchedule::now();
        let mut windows: Vec<Window> = Vec::new();
        // At most half of a CPU's 32 pool slots filled between drains.
        let idle_drain = lookback.map_or(DRAIN_EVERY, |s| {
            (Duration::from_secs(16) / s.hz.max(1)).clamp(DRAIN_EVERY, IDLE_DRAIN_EVERY)
        });
        loop {
            if windows.iter().any(|w| w.until <= Instant::now()) {
                self.end_due(lookback, &mut windows);
            }
            let (scan_every, names_every, wait) = if windows.is_empty() && lookback.is_some() {
                (IDLE_SCAN_EVERY, IDLE_NAMES_EVERY_SCANS, idle_drain)
            } else {
                (DRAIN_EVERY, NAMES_EVERY_SCANS, DRAIN_EVERY)
            };
            self.scan_if_due(&mut schedule, scan_every, names_every);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            self.drain();
            if let Some(history) = self.history.as_mut() {
                if history.due(Instant::now()) {
                    history.roll(Moment::now());
                }
            }
            // Woken for the next window's end, not a drain later.
            let now = Instant::now();
            let wait = windows
                .iter()
                .map(|w| w.until.saturating_duration_since(now))
                .fold(wait, Duration::min);
            match commands.recv_timeout(wait) {
                Ok(Command::Subscribe {
                    id,
                    hz,
                    lookback: with_lookback,
                    length,
                    armed,
                    done,
                }) => {
                    let window =
                        self.subscribe(lookback, &windows, id, hz, with_lookback, length, done);
                    let _ = armed.send(window.until);
                    windows.push(window);
                    // Threads started during a capture are found within
                    // 20 ms, as in any profile.
                    schedule.next = Instant::now() + DRAIN_EVERY;
                }
                Ok(Command::Cancel { id }) => {
                    windows.retain(|w| w.id != id);
                    self.subs.retain(|s| s.id != id);
                    self.set_rate(wanted_hz(lookback, &windows, self.hz));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// A new subscriber from now: the samples drained so far are the
    /// others'; the current look-back window ends here if it wants the
    /// windows; the rate rises if it asks for more.
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        lookback: Option<&LookbackSettings>,
        others: &[Window],
        id: u64,
        hz: u32,
        with_lookback: bool,
        length: Duration,
        done: Sender<CpuCapture>,
    ) -> Window {
        self.drain();
        let at = Moment::now();
        let taken = match (lookback, self.history.as_mut()) {
            (Some(settings), Some(history)) if with_lookback => {
                history.roll(at);
                Some(history.take_since(at.at.checked_sub(settings.span)))
            }
            _ => None,
        };
        self.subs.push(Sub {
            id,
            ..Sub::default()
        });
        self.track_threads();
        let threads = self.threads.len();
        let hz = hz.clamp(1, super::MAX_HZ);
        // Alone without look-back, its own rate (the last subscriber's may
        // have been higher); else the highest asked.
        let wanted = if others.is_empty() && lookback.is_none() {
            hz
        } else {
            wanted_hz(lookback, others, self.hz).max(hz)
        };
        self.set_rate(wanted);
        let current = self.hz;
        if let Some(sub) = self.subs.iter_mut().find(|s| s.id == id) {
            sub.threads = ThreadStats {
                threads_seen: threads,
                ..sub.threads
            };
            sub.sampled_hz = sub.sampled_hz.max(current);
        }
        Window {
            id,
            hz,
            at,
            until: at.at + length,
            taken,
            done,
        }
    }

    /// Ends every window that is due now: one drain, one end for all; the
    /// rate then goes back to what the remaining subscribers ask for.
    fn end_due(&mut self, lookback: Option<&LookbackSettings>, windows: &mut Vec<Window>) {
        // The process's CPU clock before the last drain, as
        // `CpuProfiler::stop_raw` reads it.
        let end = Moment::now();
        self.drain();
        self.refresh_names();
        let (due, rest): (Vec<Window>, Vec<Window>) =
            windows.drain(..).partition(|w| w.until <= end.at);
        *windows = rest;
        for window in due {
            let Some(index) = self.subs.iter().position(|s| s.id == window.id) else {
                continue;
            };
            let sub = self.subs.swap_remove(index);
            let capture = self.capture(lookback, window.hz, window.at, window.taken, sub, end);
            // The subscriber may have gone meanwhile.
            let _ = window.done.send(capture);
        }
        if !windows.is_empty() || lookback.is_some() {
            self.set_rate(wanted_hz(lookback, windows, self.hz));
        }
    }

    /// A subscriber's capture: its samples from `at` to `end`, after the
    /// look-back windows it took.
    fn capture(
        &self,
        settings: Option<&LookbackSettings>,
        hz: u32,
        at: Moment,
        taken: Option<Taken>,
        sub: Sub,
        end: Moment,
    ) -> CpuCapture {
        let from = taken.as_ref().and_then(|taken| taken.from).unwrap_or(at);
        let lookback = settings.zip(taken).map(|(settings, taken)| {
            let said = Lookback {
                requested: settings.span,
                covered: at.at.saturating_duration_since(from.at),
                hz: settings.hz,
                samples: taken.tally.samples,
                cpu_ns: taken.tally.cpu_ns,
                windows_dropped: taken.windows_dropped,
                memory_limit: settings.memory_limit,
            };
            (taken.tally, said)
        });
        Parts {
            hz,
            sampled_hz: sub.sampled_hz,
            started: from.wall,
            duration: end.at.saturating_duration_since(from.at),
            used: end.cpu_clock.saturating_sub(from.cpu_clock),
            profile: sub.tally,
            lookback,
            threads: sub.threads,
            without_tables: self.unwinder.without_tables,
            previous_handler: self.previous_handler,
        }
        .into_capture()
    }
}

/// The rate the timers should run at for look-back and `windows`: the
/// highest asked; `current` when nothing asks.
fn wanted_hz(lookback: Option<&LookbackSettings>, windows: &[Window], current: u32) -> u32 {
    lookback
        .map(|s| s.hz)
        .into_iter()
        .chain(windows.iter().map(|w| w.hz))
        .max()
        .map_or(current, |hz| hz.clamp(1, super::MAX_HZ))
}
