//! The sampler proper, on Linux on x86_64 and aarch64: per-thread
//! CPU-clock timers, the SIGPROF handler's pool, the profiler thread that
//! drains and unwinds it (see the parent module for how they fit).

mod history;
mod pool;
mod shared;
mod signal;
mod threads;
mod timer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use history::{History, Sample, StackKey, Tally, ThreadRef, FLAG_NO_STACK, FLAG_TRUNCATED};
use pool::{Header, Pool};
use signal::{ACTIVE, ENABLED, POOL};
use timer::ThreadTimer;

pub(crate) use history::SyntheticHistory;
pub(crate) use shared::{SharedSampler, Subscription};
pub(crate) use signal::set_labels_in_handler;

use super::{CapturedStack, CpuCapture, Lookback, MAX_DEPTH, MAX_HZ, MAX_SLOTS};
use crate::unwind::{CopiedStack, Ending, StackUnwinder};

use crate::{Error, Result};

/// Only one sampler runs at a time in a process: a `CpuProfiler`, or the
/// agent's shared sampler while any of its profiles (or its look-back)
/// runs.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// How often the profiler thread drains the pool and looks for new threads.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Thread names (and reused tids) are checked every this many scans (1 s
/// with few threads).
const NAMES_EVERY_SCANS: u32 = 50;
/// A scan of the threads waits this many times its own duration before the
/// next one (at least one round).
const SCAN_COST_RATIO: u32 = 50;

/// A running CPU profile. Dropping it stops sampling and discards the data.
pub struct CpuProfiler {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Finished>>,
    hz: u32,
    started: SystemTime,
    started_at: Instant,
    /// The process's CPU clock when the window began.
    cpu_at_start: Duration,
}

/// What the profiler thread hands back when it stops.
struct Finished {
    /// A `CpuProfiler`'s one profile (the shared sampler hands each of its
    /// profiles over as it ends).
    sub: Option<Sub>,
    /// Executable mappings without a readable unwind table.
    without_tables: usize,
    previous_handler: bool,
}

/// One profile the sampler counts samples into: a `CpuProfiler`'s whole
/// run, or one subscriber of the agent's shared sampler (`shared.rs`),
/// from the moment it subscribed.
#[derive(Default)]
struct Sub {
    id: u64,
    tally: Tally,
    threads: ThreadStats,
    /// The highest rate the sampler ran at while this profile counted:
    /// above the rate it asked for when another profile sharing the
    /// sampler asked for more.
    sampled_hz: u32,
}

/// What a profile reports about the threads it followed.
#[derive(Clone, Copy, Default)]
struct ThreadStats {
    /// Most threads at once that had no slot (more than `MAX_SLOTS`).
    untracked: usize,
    threads_seen: usize,
    timer_failures: usize,
}

/// CPU time between two signals of a thread's timer at `hz`.
fn period_for(hz: u32) -> u64 {
    1_000_000_000 / u64::from(hz.clamp(1, MAX_HZ))
}

/// Claims the process's one sampler, installs the SIGPROF handler and
/// starts the profiler thread, which runs `body(previous_handler, armed)`;
/// returns once `body` says on `armed` that the threads that exist now have
/// their timers (or has ended without saying so).
fn spawn_profiler_thread<T: Send + 'static>(
    body: impl FnOnce(bool, Sender<()>) -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    crate::fork::register();
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(Error::Busy);
    }
    let previous_handler = match signal::install() {
        Ok(had) => had,
        Err(source) => {
            RUNNING.store(false, Ordering::Release);
            return Err(Error::Sys {
                call: "sigaction(SIGPROF)",
                source,
            });
        }
    };
    if previous_handler {
        log::warn!("firewatch: another SIGPROF handler was installed; signals not from our timers are passed to it");
    }
    let (ready, armed) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("firewatch-cpu".into())
        .spawn(move || body(previous_handler, ready))
        .map_err(|source| {
            RUNNING.store(false, Ordering::Release);
            Error::Sys {
                call: "spawning the profiler thread",
                source,
            }
        })?;
    // A profiler thread that died first has sent nothing; its owner reports
    // it when it joins.
    let _ = armed.recv();
    Ok(worker)
}

/// Waits for the profiler thread and releases the process's sampler.
fn join_profiler_thread<T>(worker: JoinHandle<T>) -> Result<T> {
    let result = worker.join();
    RUNNING.store(false, Ordering::Release);
    result.map_err(|_| Error::Sys {
        call: "the profiler thread",
        source: std::io::Error::other("it panicked; sampling was stopped"),
    })
}

impl CpuProfiler {
    /// Starts sampling every thread of the process at `hz` samples per
    /// CPU-second (clamped to 1..=4000).
    ///
    /// Fails with [`Error::Busy`] while another profile runs in the
    /// process, including the agent's shared sampler: while the agent
    /// takes a CPU profile, and for the agent's life when `lookback` is
    /// set.
    pub fn start(hz: u32) -> Result<CpuProfiler> {
        let hz = hz.clamp(1, MAX_HZ);
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let worker = spawn_profiler_thread(move |previous_handler, ready| {
            let mut sampler = Sampler::new(hz, previous_handler, None);
            sampler.subs.push(Sub {
                sampled_hz: hz,
                ..Sub::default()
            });
            sampler.run(&worker_stop, ready);
            sampler.finish()
        })?;
        // The profile's window starts once every thread that exists now has
        // its timer: CPU they use after `start` returns is all counted.
        Ok(CpuProfiler {
            stop,
            worker: Some(worker),
            hz,
            started: SystemTime::now(),
            started_at: Instant::now(),
            cpu_at_start: crate::process::usage::process_cpu_clock(),
        })
    }

    /// Stops sampling and returns the profile, symbolized.
    pub fn stop(self) -> Result<firewatch_profile::Profile> {
        Ok(self.stop_raw()?.to_profile(&[]))
    }

    /// Stops sampling and returns the raw, unsymbolized capture.
    pub fn stop_raw(mut self) -> Result<CpuCapture> {
        let duration = self.started_at.elapsed();
        let used = crate::process::usage::process_cpu_clock().saturating_sub(self.cpu_at_start);
        let finished = self.join()?;
        let sub = finished.sub.unwrap_or_default();
        Ok(Parts {
            hz: self.hz,
            sampled_hz: self.hz,
            started: self.started,
            duration,
            used,
            profile: sub.tally,
            lookback: None,
            threads: sub.threads,
            without_tables: finished.without_tables,
            previous_handler: finished.previous_handler,
        }
        .into_capture())
    }

    fn join(&mut self) -> Result<Finished> {
        self.stop.store(true, Ordering::Release);
        join_profiler_thread(self.worker.take().expect("joined once"))
    }
}

impl Drop for CpuProfiler {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

/// Everything a [`CpuCapture`] is made of.
struct Parts {
    /// The rate the profile asked for.
    hz: u32,
    /// The highest rate its samples were taken at (see [`Sub`]).
    sampled_hz: u32,
    started: SystemTime,
    duration: Duration,
    /// The process's CPU clock over the window.
    used: Duration,
    /// The samples taken at `hz`.
    profile: Tally,
    /// The look-back windows, and what the capture says of them.
    lookback: Option<(Tally, Lookback)>,
    threads: ThreadStats,
    without_tables: usize,
    previous_handler: bool,
}

impl Parts {
    fn into_capture(self) -> CpuCapture {
        let mut total = Tally::default();
        let stacks = |tally: Tally, lookback: bool| {
            tally
                .stacks
                .into_iter()
                .map(move |(key, counts)| CapturedStack {
                    thread: key.thread.name(),
                    labels: crate::labels::LabelSet::from_id(key.labels),
                    frames: key.frames,
                    samples: counts.samples,
                    cpu_ns: counts.cpu_ns,
                    truncated: key.flags & FLAG_TRUNCATED != 0,
                    unwalked: key.flags & FLAG_NO_STACK != 0,
                    lookback,
                })
        };
        let mut captured = Vec::new();
        let lookback = self.lookback.map(|(tally, said)| {
            total.add_totals(&tally);
            captured.extend(stacks(tally, true));
            said
        });
        total.add_totals(&self.profile);
        captured.extend(stacks(self.profile, false));
        let counted = total.cpu_ns + total.dropped_ns;
        CpuCapture {
            hz: self.hz,
            sampled_hz: self.sampled_hz.max(self.hz),
            period_ns: period_for(self.hz),
            started: self.started,
            duration: self.duration,
            stacks: captured,
            dropped_ns: total.dropped_ns,
            unsampled_ns: (self.used.as_nanos() as u64).saturating_sub(counted),
            samples: total.samples,
            cpu_ns: total.cpu_ns,
            truncated: total.truncated,
            unwalked: total.unwalked,
            incomplete: total.incomplete,
            stale: total.stale,
            without_tables: self.without_tables,
            untracked: self.threads.untracked,
            threads_seen: self.threads.threads_seen,
            timer_failures: self.threads.timer_failures,
            previous_handler: self.previous_handler,
            lookback,
        }
    }
}

impl Tally {
    /// Adds `other`'s totals (not its stacks) to these.
    fn add_totals(&mut self, other: &Tally) {
        self.samples += other.samples;
        self.cpu_ns += other.cpu_ns;
        self.dropped_ns += other.dropped_ns;
        self.truncated += other.truncated;
        self.unwalked += other.unwalked;
        self.incomplete += other.incomplete;
        self.stale += other.stale;
    }
}

/// In a child just forked: no timer and no profiler thread came along, so
/// no profile runs here, whatever the parent was doing (a `CpuProfiler` or
/// the agent's shared sampler: both are this one sampler, and the shared
/// sampler keeps no state of its own outside its thread). The
/// parent's pool is left allocated (the child cannot know whether it is
/// still needed by the copy of memory it shares nothing with; a few MiB at
/// most).
pub(crate) fn after_fork_in_child() {
    ENABLED.store(false, Ordering::SeqCst);
    ACTIVE.store(0, Ordering::SeqCst);
    POOL.store(std::ptr::null_mut(), Ordering::SeqCst);
    RUNNING.store(false, Ordering::SeqCst);
}

/// A profiled thread.
struct Tracked {
    slot: usize,
    timer: Option<ThreadTimer>,
    thread: ThreadRef,
}

/// Per slot, the generation of its last owner in any profile of this
/// process.
static LAST_GENERATION: [std::sync::atomic::AtomicU16; MAX_SLOTS] =
    [const { std::sync::atomic::AtomicU16::new(0) }; MAX_SLOTS];

/// When the threads are next listed.
struct ScanSchedule {
    scans: u32,
    next: Instant,
}

impl ScanSchedule {
    fn now() -> ScanSchedule {
        ScanSchedule {
            scans: 0,
            next: Instant::now(),
        }
    }
}

/// The profiler thread's state.
struct Sampler {
    /// The rate every timer runs at now, and its period.
    hz: u32,
    period_ns: u64,
    threads: HashMap<libc::pid_t, Tracked>,
    /// Per slot: the generation of its current (or last) owner and the
    /// owner, for checking a sample's `si_value`.
    owners: Vec<(u16, Option<ThreadRef>)>,
    free_slots: Vec<usize>,
    /// The profiles being taken: a `CpuProfiler`'s whole run; for the
    /// shared sampler, each subscriber's since it subscribed.
    subs: Vec<Sub>,
    /// The shared sampler's look-back windows of the last seconds.
    history: Option<History>,
    previous_handler: bool,
    pool: *mut Pool,
    unwinder: StackUnwinder,
    frames: Vec<u64>,
}

impl Sampler {
    /// A sampler at `hz`, counting into the profiles in `subs` (none yet)
    /// and, with a `history`, into the look-back windows.
    fn new(hz: u32, previous_handler: bool, history: Option<History>) -> Sampler {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = Box::into_raw(Pool::new(pool::slots_for(cpus)));
        POOL.store(pool, Ordering::SeqCst);
        Sampler {
            hz,
            period_ns: period_for(hz),
            threads: HashMap::new(),
            // Generations go on from the last profile's, so a signal of a
            // timer deleted then (queued on kernels before 6.13) is stale
            // now too, not credited to the slot's new owner.
            owners: LAST_GENERATION
                .iter()
                .map(|g| (g.load(Ordering::Relaxed), None))
                .collect(),
            free_slots: (0..MAX_SLOTS).rev().collect(),
            subs: Vec::new(),
            history,
            previous_handler,
            pool,
            unwinder: StackUnwinder::new(),
            frames: Vec::with_capacity(MAX_DEPTH),
        }
    }

    /// Samples until `stop`; says on `ready` once the threads that existed
    /// at the start have their timers.
    fn run(&mut self, stop: &AtomicBool, ready: Sender<()>) {
        ENABLED.store(true, Ordering::Release);
        let mut ready = Some(ready);
        let mut schedule = ScanSchedule::now();
        while !stop.load(Ordering::Acquire) {
            self.scan_if_due(&mut schedule, DRAIN_EVERY, NAMES_EVERY_SCANS);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            self.drain();
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    /// Lists the threads if `schedule` says it is time: new ones get timers,
    /// exited ones are retired, and every `names_every` scans names are
    /// read again.
    fn scan_if_due(&mut self, schedule: &mut ScanSchedule, every: Duration, names_every: u32) {
        // Listing /proc/self/task costs tens of microseconds with a few
        // threads (then every `every`: new threads are found within it)
        // and milliseconds with thousands: the next scan waits 50 times as
        // long as this one took, so scanning stays under 2% of a core
        // (found within ~200 ms at 4,096 threads).
        if Instant::now() < schedule.next {
            return;
        }
        let began = Instant::now();
        schedule.scans = schedule.scans.wrapping_add(1);
        if schedule.scans % names_every == 0 {
            // Reused tids first: their new thread's name must not be
            // written over the old thread's.
            self.retire_reused_tids();
            self.refresh_names();
        }
        self.track_threads();
        schedule.next = began + (began.elapsed() * SCAN_COST_RATIO).max(every);
    }

    /// Starts timers for new threads and retires exited ones.
    fn track_threads(&mut self) {
        let now = threads::list();
        for &tid in &now {
            if self.threads.contains_key(&tid) {
                continue;
            }
            let Some(slot) = self.free_slots.pop() else {
                // More threads than slots: counted, and said in the profile.
                let untracked = now.len().saturating_sub(self.threads.len());
                for sub in &mut self.subs {
                    sub.threads.untracked = sub.threads.untracked.max(untracked);
                }
                break;
            };
            let thread = ThreadRef::new(threads::name(tid));
            let timer = self.arm(tid, slot, &thread);
            for sub in &mut self.subs {
                sub.threads.threads_seen += 1;
            }
            self.threads.insert(
                tid,
                Tracked {
                    slot,
                    timer,
                    thread,
                },
            );
        }
        // A set: with thousands of threads, `Vec::contains` per tracked
        // thread made every 20 ms scan quadratic.
        let alive: std::collections::HashSet<libc::pid_t> = now.iter().copied().collect();
        let gone: Vec<libc::pid_t> = self
            .threads
            .keys()
            .copied()
            .filter(|t| !alive.contains(t))
            .collect();
        self.retire(gone);
    }

    /// A timer at the current period for thread `tid`, the new owner of
    /// `slot` (a new generation, so signals of the slot's earlier timers
    /// are told apart), or `None` if it cannot be made.
    fn arm(&mut self, tid: libc::pid_t, slot: usize, thread: &ThreadRef) -> Option<ThreadTimer> {
        let generation = self.owners[slot].0.wrapping_add(1);
        self.owners[slot] = (generation, Some(thread.clone()));
        LAST_GENERATION[slot].store(generation, Ordering::Relaxed);
        let value = signal::timer_value(slot, generation);
        match ThreadTimer::start(tid, value, self.period_ns) {
            Ok(timer) => Some(timer),
            Err(e) => {
                // The thread may have exited between listing and now.
                log::debug!("firewatch: no CPU timer for thread {tid}: {e}");
                for sub in &mut self.subs {
                    sub.threads.timer_failures += 1;
                }
                None
            }
        }
    }

    /// Changes the sampling rate of every tracked thread (the shared
    /// sampler, when the highest rate its profiles ask for changes: a
    /// capture begins or ends beside look-back). A timer's `si_value`
    /// cannot change, so each thread's timer is deleted, the samples taken
    /// at the old period drained, and a new timer made at the new period
    /// with a new generation. A signal an old timer had already queued
    /// (kernels before 6.13 deliver it after the delete) then carries an
    /// old generation and counts as stale, not at the new weight: at most
    /// one per thread per switch, as a timer has at most one signal
    /// pending. What each thread had used towards its next old period, and
    /// an expiry the kernel had not yet noticed (it checks at a tick while
    /// the thread runs), are not sampled: about a period per busy thread,
    /// in `[firewatch: unsampled]`.
    fn set_rate(&mut self, hz: u32) {
        let period_ns = period_for(hz);
        if period_ns == self.period_ns {
            return;
        }
        for tracked in self.threads.values_mut() {
            drop(tracked.timer.take());
        }
        // Handlers that ran before the deletes left samples of the old
        // period: weighed with it.
        self.drain();
        self.hz = hz;
        self.period_ns = period_ns;
        for sub in &mut self.subs {
            sub.sampled_hz = sub.sampled_hz.max(hz);
        }
        let tids: Vec<(libc::pid_t, usize, ThreadRef)> = self
            .threads
            .iter()
            .map(|(&tid, t)| (tid, t.slot, t.thread.clone()))
            .collect();
        for (tid, slot, thread) in tids {
            let timer = self.arm(tid, slot, &thread);
            if let Some(tracked) = self.threads.get_mut(&tid) {
                tracked.timer = timer;
            }
        }
    }

    /// Threads whose tid was reused between two scans: the timer watches
    /// the thread that exited, so the new one would never be sampled.
    /// Retired here; the next scan tracks the new thread. (A system call per
    /// thread, so with the names, once a second.)
    fn retire_reused_tids(&mut self) {
        let reused: Vec<libc::pid_t> = self
            .threads
            .iter()
            .filter(|(_, t)| {
                t.timer
                    .as_ref()
                    .is_some_and(|t| t.watches_an_exited_thread())
            })
            .map(|(&tid, _)| tid)
            .collect();
        self.retire(reused);
    }

    /// Stops tracking `tids`: timers deleted, their samples taken out of the
    /// pool, their slots freed.
    fn retire(&mut self, tids: Vec<libc::pid_t>) {
        if tids.is_empty() {
            return;
        }
        let mut released = Vec::new();
        for tid in tids {
            if let Some(tracked) = self.threads.remove(&tid) {
                drop(tracked.timer);
                released.push(tracked.slot);
            }
        }
        // Samples of the exited threads still in the pool are theirs: take
        // them out before the slots can be given to new threads.
        self.drain();
        for slot in released {
            self.owners[slot].1 = None;
            self.free_slots.push(slot);
        }
    }

    /// Reads the names of the tracked threads again: a thread may name
    /// itself after it was found, and an exited thread's name can no
    /// longer be read, so names are refreshed while threads live (every
    /// second, and when the profile stops).
    fn refresh_names(&mut self) {
        for (&tid, tracked) in &self.threads {
            if let Some(name) = threads::current_name(tid) {
                tracked.thread.rename(name);
            }
        }
    }

    /// Unwinds every sample in the pool and counts it, at the current
    /// period, in every profile being taken and the current look-back
    /// window.
    fn drain(&mut self) {
        // SAFETY: this thread owns the pool until `finish` frees it.
        let pool = unsafe { &*self.pool };
        let dropped_ns = pool.dropped_periods.swap(0, Ordering::Relaxed) * self.period_ns;
        let Sampler {
            owners,
            unwinder,
            frames,
            subs,
            history,
            period_ns,
            ..
        } = self;
        let period_ns = *period_ns;
        for tally in tallies(subs, history) {
            tally.dropped_ns += dropped_ns;
        }
        pool.drain(|header, stack| match owner_of(owners, header) {
            Some(thread) => {
                let (key, incomplete) = unwind(header, stack, thread, unwinder, frames);
                // Signals of timers at another period were dropped as stale
                // (old generation, see `set_period`): this one's period is
                // the current one.
                let sample = Sample {
                    key: &key,
                    cpu_ns: u64::from(header.periods) * period_ns,
                    incomplete,
                };
                for tally in tallies(&mut *subs, &mut *history) {
                    tally.add(&sample);
                }
            }
            None => {
                for tally in tallies(&mut *subs, &mut *history) {
                    tally.stale += 1;
                }
            }
        });
    }

    fn finish(mut self) -> Finished {
        self.refresh_names();
        // SeqCst, as the handler's load: with Release/Acquire a handler
        // could still record after the first wait below saw ACTIVE at 0,
        // and its sample would miss the last drain (checked by
        // scripts/model-check.sh).
        ENABLED.store(false, Ordering::SeqCst);
        for tracked in self.threads.values_mut() {
            drop(tracked.timer.take());
        }
        signal::wait_for_handlers();
        self.drain();
        self.threads.clear();
        let pool = POOL.swap(std::ptr::null_mut(), Ordering::SeqCst);
        signal::wait_for_handlers();
        debug_assert_eq!(ACTIVE.load(Ordering::SeqCst), 0);
        debug_assert_eq!(pool, self.pool);
        // SAFETY: unpublished above and no handler is running (see POOL):
        // nothing else can reach it.
        let pool = unsafe { Box::from_raw(self.pool) };
        let dropped_ns = pool.dropped_periods.load(Ordering::Relaxed) * self.period_ns;
        for sub in &mut self.subs {
            sub.tally.dropped_ns += dropped_ns;
        }
        drop(pool);
        Finished {
            sub: self.subs.pop(),
            without_tables: self.unwinder.without_tables,
            previous_handler: self.previous_handler,
        }
    }
}

/// Where a sample is counted: every profile being taken, and the current
/// look-back window.
fn tallies<'a>(
    subs: &'a mut [Sub],
    history: &'a mut Option<History>,
) -> impl Iterator<Item = &'a mut Tally> {
    subs.iter_mut()
        .map(|sub| &mut sub.tally)
        .chain(history.as_mut().map(History::current))
}

/// The thread a sample belongs to, or `None` for a stale signal: one whose
/// timer was deleted after it was queued (kernels before 6.13 still deliver
/// it), so its slot is free or has a new owner with a new generation.
fn owner_of<'a>(owners: &'a [(u16, Option<ThreadRef>)], header: &Header) -> Option<&'a ThreadRef> {
    match owners.get(header.thread as usize)? {
        (generation, Some(thread)) if u32::from(*generation) == header.generation => Some(thread),
        _ => None,
    }
}

/// One sample unwound from its copied stack: its key, and whether the walk
/// stopped before the outermost frame.
fn unwind(
    header: &Header,
    stack: &[u8],
    thread: &ThreadRef,
    unwinder: &mut StackUnwinder,
    frames: &mut Vec<u64>,
) -> (StackKey, bool) {
    let mut flags = 0;
    let mut incomplete = false;
    if stack.is_empty() {
        // Nothing of the stack could be read: the PC alone.
        frames.clear();
        frames.push(header.regs.pc);
        flags |= FLAG_NO_STACK;
    } else {
        let copy = CopiedStack {
            start: header.regs.sp,
            bytes: stack,
        };
        match unwinder.unwind(header.regs, copy, MAX_DEPTH, frames) {
            Ending::Complete => {}
            Ending::Truncated => flags |= FLAG_TRUNCATED,
            Ending::Lost => incomplete = true,
        }
    }
    let key = StackKey {
        frames: frames.as_slice().into(),
        thread: thread.clone(),
        flags,
        labels: header.labels,
    };
    (key, incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_from_a_deleted_timer_is_not_given_to_the_slots_next_owner() {
        let mut owners = vec![(0u16, None); 8];
        let header = |thread, generation| Header {
            thread,
            generation,
            ..Header::default()
        };
        let (first, second) = (
            ThreadRef::new("first".into()),
            ThreadRef::new("second".into()),
        );
        // Slot 3: the first owner (generation 1) exits; a second thread
        // (generation 2) takes the slot.
        owners[3] = (1, Some(first.clone()));
        assert_eq!(owner_of(&owners, &header(3, 1)), Some(&first));
        owners[3] = (1, None);
        assert_eq!(owner_of(&owners, &header(3, 1)), None, "free slot");
        owners[3] = (2, Some(second.clone()));
        assert_eq!(
            owner_of(&owners, &header(3, 1)),
            None,
            "late signal of the first owner"
        );
        assert_eq!(owner_of(&owners, &header(3, 2)), Some(&second));
        assert_eq!(owner_of(&owners, &header(99, 2)), None, "slot out of range");
        // The generation travels in si_value next to the slot.
        let value = signal::timer_value(3, 2);
        assert_eq!((value & 0xFFFF_FFFF, (value >> 32) & 0xFFFF), (3, 2));
    }
}
