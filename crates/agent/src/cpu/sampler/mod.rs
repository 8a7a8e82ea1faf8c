//! The sampler proper, on Linux on x86_64 and aarch64: per-thread
//! CPU-clock timers, the SIGPROF handler's pool, the profiler thread that
//! drains and unwinds it (see the parent module for how they fit).

mod pool;
mod signal;
mod threads;
mod timer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use pool::{Header, Pool};
use signal::{ACTIVE, ENABLED, POOL};
use timer::ThreadTimer;

use super::{CapturedStack, CpuCapture, MAX_DEPTH, MAX_HZ, MAX_SLOTS};
use crate::unwind::{CopiedStack, Ending, StackUnwinder};

/// The stack was cut: deeper than [`MAX_DEPTH`] or than the copy window.
const FLAG_TRUNCATED: u32 = 1;
/// The stack pointer was not readable: only the PC was kept.
const FLAG_NO_STACK: u32 = 2;

use crate::{Error, Result};

/// Only one CPU profile runs at a time in a process.
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
    worker: Option<JoinHandle<Collected>>,
    hz: u32,
    started: SystemTime,
    started_at: Instant,
    /// The process's CPU clock when the window began.
    cpu_at_start: Duration,
}

/// One aggregated stack: leaf-first addresses, the thread, and flags.
#[derive(Clone, PartialEq, Eq, Hash)]
struct StackKey {
    frames: Box<[u64]>,
    thread: u32,
    flags: u32,
}

/// What the profiler thread gathered.
#[derive(Default)]
struct Collected {
    stacks: HashMap<StackKey, (u64, u64)>,
    thread_names: Vec<String>,
    samples: u64,
    periods: u64,
    dropped_periods: u64,
    truncated: u64,
    unwalked: u64,
    /// Samples whose unwinding stopped before the outermost frame.
    incomplete: u64,
    /// Signals from a timer already deleted (old kernels queue them).
    stale: u64,
    /// Executable mappings without a readable unwind table.
    without_tables: usize,
    /// Most threads at once that had no slot (more than `MAX_SLOTS`).
    untracked: usize,
    threads_seen: usize,
    timer_failures: usize,
    previous_handler: bool,
}

impl CpuProfiler {
    /// Starts sampling every thread of the process at `hz` samples per
    /// CPU-second (clamped to 1..=4000).
    pub fn start(hz: u32) -> Result<CpuProfiler> {
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
        let hz = hz.clamp(1, MAX_HZ);
        let period_ns = 1_000_000_000 / u64::from(hz);
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let (ready, armed) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("firewatch-cpu".into())
            .spawn(move || {
                let mut sampler = Sampler::new(period_ns, previous_handler);
                sampler.run(&worker_stop, ready);
                sampler.finish()
            })
            .map_err(|source| {
                RUNNING.store(false, Ordering::Release);
                Error::Sys {
                    call: "spawning the profiler thread",
                    source,
                }
            })?;
        // The profile's window starts once every thread that exists now has
        // its timer: CPU they use after `start` returns is all counted. (A
        // profiler thread that died first has sent nothing; `stop` reports it.)
        let _ = armed.recv();
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
        let collected = self.join()?;
        let period_ns = 1_000_000_000 / u64::from(self.hz);
        let counted = (collected.periods + collected.dropped_periods) * period_ns;
        let unsampled_ns = (used.as_nanos() as u64).saturating_sub(counted);
        let names = collected.thread_names;
        let stacks = collected
            .stacks
            .into_iter()
            .map(|(key, (samples, periods))| CapturedStack {
                frames: key.frames,
                thread: names.get(key.thread as usize).cloned().unwrap_or_default(),
                samples,
                cpu_ns: periods * period_ns,
                truncated: key.flags & FLAG_TRUNCATED != 0,
                unwalked: key.flags & FLAG_NO_STACK != 0,
            })
            .collect();
        Ok(CpuCapture {
            hz: self.hz,
            period_ns,
            started: self.started,
            duration,
            stacks,
            dropped_ns: collected.dropped_periods * period_ns,
            unsampled_ns,
            samples: collected.samples,
            cpu_ns: collected.periods * period_ns,
            truncated: collected.truncated,
            unwalked: collected.unwalked,
            incomplete: collected.incomplete,
            stale: collected.stale,
            without_tables: collected.without_tables,
            untracked: collected.untracked,
            threads_seen: collected.threads_seen,
            timer_failures: collected.timer_failures,
            previous_handler: collected.previous_handler,
        })
    }

    fn join(&mut self) -> Result<Collected> {
        self.stop.store(true, Ordering::Release);
        let worker = self.worker.take().expect("joined once");
        let result = worker.join();
        RUNNING.store(false, Ordering::Release);
        result.map_err(|_| Error::Sys {
            call: "the profiler thread",
            source: std::io::Error::other("it panicked; sampling was stopped"),
        })
    }
}

impl Drop for CpuProfiler {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

/// In a child just forked: no timer and no profiler thread came along, so
/// no profile runs here, whatever the parent was doing. The parent's pool
/// is left allocated (the child cannot know whether it is still needed by
/// the copy of memory it shares nothing with; a few MiB at most).
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
}

/// Per slot, the generation of its last owner in any profile of this
/// process.
static LAST_GENERATION: [std::sync::atomic::AtomicU16; MAX_SLOTS] =
    [const { std::sync::atomic::AtomicU16::new(0) }; MAX_SLOTS];

/// The profiler thread's state.
struct Sampler {
    period_ns: u64,
    threads: HashMap<libc::pid_t, Tracked>,
    /// Per slot: the generation of its current (or last) owner and the
    /// owner's name, for checking a sample's `si_value`.
    owners: Vec<(u16, Option<u32>)>,
    free_slots: Vec<usize>,
    collected: Collected,
    pool: *mut Pool,
    unwinder: StackUnwinder,
    frames: Vec<u64>,
}

impl Sampler {
    fn new(period_ns: u64, previous_handler: bool) -> Sampler {
        let collected = Collected {
            previous_handler,
            ..Collected::default()
        };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = Box::into_raw(Pool::new(pool::slots_for(cpus)));
        POOL.store(pool, Ordering::SeqCst);
        Sampler {
            period_ns,
            threads: HashMap::new(),
            // Generations go on from the last profile's, so a signal of a
            // timer deleted then (queued on kernels before 6.13) is stale
            // now too, not credited to the slot's new owner.
            owners: LAST_GENERATION
                .iter()
                .map(|g| (g.load(Ordering::Relaxed), None))
                .collect(),
            free_slots: (0..MAX_SLOTS).rev().collect(),
            collected,
            pool,
            unwinder: StackUnwinder::new(),
            frames: Vec::with_capacity(MAX_DEPTH),
        }
    }

    /// Samples until `stop`; says on `ready` once the threads that existed
    /// at the start have their timers.
    fn run(&mut self, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) {
        ENABLED.store(true, Ordering::Release);
        let mut ready = Some(ready);
        let (mut scans, mut next_scan) = (0u32, Instant::now());
        while !stop.load(Ordering::Acquire) {
            // Listing /proc/self/task costs tens of microseconds with a few
            // threads (then every round: new threads are found within
            // 20 ms) and milliseconds with thousands: the next scan waits
            // 50 times as long as this one took, so scanning stays under 2%
            // of a core (found within ~200 ms at 4,096 threads).
            if Instant::now() >= next_scan {
                let began = Instant::now();
                scans = scans.wrapping_add(1);
                if scans % NAMES_EVERY_SCANS == 0 {
                    // Reused tids first: their new thread's name must not be
                    // written over the old thread's.
                    self.retire_reused_tids();
                    self.refresh_names();
                }
                self.track_threads();
                next_scan = began + (began.elapsed() * SCAN_COST_RATIO).max(DRAIN_EVERY);
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            self.drain();
            std::thread::sleep(DRAIN_EVERY);
        }
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
                self.collected.untracked = self
                    .collected
                    .untracked
                    .max(now.len().saturating_sub(self.threads.len()));
                break;
            };
            let name = self.collected.thread_names.len() as u32;
            self.collected.thread_names.push(threads::name(tid));
            let generation = self.owners[slot].0.wrapping_add(1);
            self.owners[slot] = (generation, Some(name));
            LAST_GENERATION[slot].store(generation, Ordering::Relaxed);
            let value = signal::timer_value(slot, generation);
            let timer = match ThreadTimer::start(tid, value, self.period_ns) {
                Ok(timer) => Some(timer),
                Err(e) => {
                    // The thread may have exited between listing and now.
                    log::debug!("firewatch: no CPU timer for thread {tid}: {e}");
                    self.collected.timer_failures += 1;
                    None
                }
            };
            self.collected.threads_seen += 1;
            self.threads.insert(tid, Tracked { slot, timer });
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
            let Some(index) = self.owners[tracked.slot].1 else {
                continue;
            };
            if let Some(name) = threads::current_name(tid) {
                self.collected.thread_names[index as usize] = name;
            }
        }
    }

    /// Unwinds and aggregates every sample in the pool.
    fn drain(&mut self) {
        // SAFETY: this thread owns the pool until `finish` frees it.
        let pool = unsafe { &*self.pool };
        self.collected.dropped_periods += pool.dropped_periods.swap(0, Ordering::Relaxed);
        let (owners, unwinder, frames, collected) = (
            &self.owners,
            &mut self.unwinder,
            &mut self.frames,
            &mut self.collected,
        );
        pool.drain(|header, stack| match owner_of(owners, header) {
            Some(name) => record(header, stack, name, unwinder, frames, collected),
            None => collected.stale += 1,
        });
    }

    fn finish(mut self) -> Collected {
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
        self.collected.dropped_periods += pool.dropped_periods.load(Ordering::Relaxed);
        drop(pool);
        self.collected.without_tables = self.unwinder.without_tables;
        self.collected
    }
}

/// The thread (its name's index) a sample belongs to, or `None` for a
/// stale signal: one whose timer was deleted after it was queued (kernels
/// before 6.13 still deliver it), so its slot is free or has a new owner
/// with a new generation.
fn owner_of(owners: &[(u16, Option<u32>)], header: &Header) -> Option<u32> {
    match owners.get(header.thread as usize)? {
        &(generation, Some(name)) if u32::from(generation) == header.generation => Some(name),
        _ => None,
    }
}

/// One sample: unwound from its copied stack and counted under its stack.
fn record(
    header: &Header,
    stack: &[u8],
    thread: u32,
    unwinder: &mut StackUnwinder,
    frames: &mut Vec<u64>,
    collected: &mut Collected,
) {
    let mut flags = 0;
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
            Ending::Lost => collected.incomplete += 1,
        }
    }
    let key = StackKey {
        frames: frames.as_slice().into(),
        thread,
        flags,
    };
    let periods = u64::from(header.periods);
    let entry = collected.stacks.entry(key).or_insert((0, 0));
    entry.0 += 1;
    entry.1 += periods;
    collected.samples += 1;
    collected.periods += periods;
    if flags & FLAG_TRUNCATED != 0 {
        collected.truncated += 1;
    }
    if flags & FLAG_NO_STACK != 0 {
        collected.unwalked += 1;
    }
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
        // Slot 3: first owner (generation 1, name 7) exits; a second thread
        // (generation 2, name 9) takes the slot.
        owners[3] = (1, Some(7));
        assert_eq!(owner_of(&owners, &header(3, 1)), Some(7));
        owners[3] = (1, None);
        assert_eq!(owner_of(&owners, &header(3, 1)), None, "free slot");
        owners[3] = (2, Some(9));
        assert_eq!(
            owner_of(&owners, &header(3, 1)),
            None,
            "late signal of the first owner"
        );
        assert_eq!(owner_of(&owners, &header(3, 2)), Some(9));
        assert_eq!(owner_of(&owners, &header(99, 2)), None, "slot out of range");
        // The generation travels in si_value next to the slot.
        let value = signal::timer_value(3, 2);
        assert_eq!((value & 0xFFFF_FFFF, (value >> 32) & 0xFFFF), (3, 2));
    }
}
