//! The CPU sampler.
//!
//! ```no_run
//! let profiler = firewatch_agent::cpu::CpuProfiler::start(100)?; // Hz
//! // ... the workload ...
//! let profile = profiler.stop()?;
//! # Ok::<(), firewatch_agent::Error>(())
//! ```
//!
//! How it works: every thread of the process gets its own CPU-time timer
//! ([`timer`]), which sends SIGPROF to that thread each time it has used one
//! period of CPU. The handler ([`signal`]) records the interrupted PC and a
//! bounded frame-pointer walk ([`walk`]) into the thread's ring ([`ring`]),
//! with the number of periods the signal stands for (1 + timer overruns), so
//! a sample's weight is CPU time actually used even when the kernel delivers
//! fewer signals than requested. A profiler thread drains the rings every
//! 20 ms, notices new and exited threads, and aggregates stacks. Stopping
//! disarms the timers and turns the stacks into a pprof profile, symbolized
//! off the signal path.

mod profile;
mod ring;
mod signal;
mod threads;
mod timer;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ring::{Ring, FLAG_NO_STACK, FLAG_TRUNCATED};
use signal::{ACTIVE, ENABLED, MAX_SLOTS, READABLE, SLOTS};
use timer::ThreadTimer;
use walk::ReadableRanges;

use crate::{Error, Result};

/// Only one CPU profile runs at a time in a process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// How often the profiler thread drains rings and looks for new threads.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Highest accepted rate. The kernel delivers at most its tick rate
/// (CONFIG_HZ, often 250) signals per thread per second; overruns carry the rest.
pub const MAX_HZ: u32 = 4000;

/// A running CPU profile. Dropping it stops sampling and discards the data.
pub struct CpuProfiler {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Collected>>,
    hz: u32,
    started: SystemTime,
    started_at: Instant,
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
    threads_seen: usize,
    timer_failures: usize,
    previous_handler: bool,
}

/// Raw result of a CPU profile, before symbolization.
pub struct CpuCapture {
    pub hz: u32,
    pub period_ns: u64,
    pub started: SystemTime,
    pub duration: Duration,
    /// Distinct (stack, thread) pairs with their sample counts and CPU time.
    pub stacks: Vec<CapturedStack>,
    /// CPU time of samples lost because a ring was full.
    pub dropped_ns: u64,
    pub samples: u64,
    pub cpu_ns: u64,
    pub truncated: u64,
    pub unwalked: u64,
    pub threads_seen: usize,
    pub timer_failures: usize,
    pub previous_handler: bool,
}

pub struct CapturedStack {
    pub frames: Box<[u64]>,
    pub thread: String,
    pub samples: u64,
    pub cpu_ns: u64,
    pub truncated: bool,
    pub unwalked: bool,
}

impl CpuProfiler {
    /// Starts sampling every thread of the process at `hz` samples per
    /// CPU-second (clamped to 1..=4000).
    pub fn start(hz: u32) -> Result<CpuProfiler> {
        if !cfg!(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )) {
            return Err(Error::Config(
                "CPU profiling needs Linux on x86_64 or aarch64".into(),
            ));
        }
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
        })
    }

    /// Stops sampling and returns the profile, symbolized.
    pub fn stop(self) -> Result<firewatch_profile::Profile> {
        Ok(self.stop_raw()?.to_profile(&[]))
    }

    /// Stops sampling and returns the raw, unsymbolized capture.
    pub fn stop_raw(mut self) -> Result<CpuCapture> {
        let duration = self.started_at.elapsed();
        let collected = self.join()?;
        let period_ns = 1_000_000_000 / u64::from(self.hz);
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
            samples: collected.samples,
            cpu_ns: collected.periods * period_ns,
            truncated: collected.truncated,
            unwalked: collected.unwalked,
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

/// A profiled thread.
struct Tracked {
    slot: usize,
    name: u32,
    timer: Option<ThreadTimer>,
}

/// The profiler thread's state.
struct Sampler {
    period_ns: u64,
    threads: HashMap<libc::pid_t, Tracked>,
    free_slots: Vec<usize>,
    collected: Collected,
    unwalked_at_refresh: u64,
}

impl Sampler {
    fn new(period_ns: u64, previous_handler: bool) -> Sampler {
        let collected = Collected {
            previous_handler,
            ..Collected::default()
        };
        Sampler {
            period_ns,
            threads: HashMap::new(),
            free_slots: (0..MAX_SLOTS).rev().collect(),
            collected,
            unwalked_at_refresh: 0,
        }
    }

    /// Samples until `stop`; says on `ready` once the threads that existed
    /// at the start have their timers.
    fn run(&mut self, stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) {
        self.refresh_readable();
        ENABLED.store(true, Ordering::Release);
        let mut ready = Some(ready);
        while !stop.load(Ordering::Acquire) {
            // Listing /proc/self/task costs tens of microseconds: doing it
            // every round finds new threads within 20 ms.
            self.track_threads();
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            self.drain_all();
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    /// Starts timers for new threads and retires exited ones.
    fn track_threads(&mut self) {
        let now = threads::list();
        let mut new = false;
        for &tid in &now {
            if self.threads.contains_key(&tid) {
                continue;
            }
            let Some(slot) = self.free_slots.pop() else {
                break;
            };
            SLOTS[slot].store(Box::into_raw(Ring::new()), Ordering::Release);
            let name = self.collected.thread_names.len() as u32;
            self.collected.thread_names.push(threads::name(tid));
            let timer = match ThreadTimer::start(tid, slot, self.period_ns) {
                Ok(timer) => Some(timer),
                Err(e) => {
                    // The thread may have exited between listing and now.
                    log::debug!("firewatch: no CPU timer for thread {tid}: {e}");
                    self.collected.timer_failures += 1;
                    None
                }
            };
            self.collected.threads_seen += 1;
            self.threads.insert(tid, Tracked { slot, name, timer });
            new = true;
        }
        let gone: Vec<libc::pid_t> = self
            .threads
            .keys()
            .copied()
            .filter(|t| !now.contains(t))
            .collect();
        for tid in gone {
            if let Some(tracked) = self.threads.remove(&tid) {
                drop(tracked.timer);
                self.retire_slot(tracked.slot, tracked.name);
            }
        }
        // New threads have new stacks; so may threads whose samples could not be walked.
        if new || self.collected.unwalked > self.unwalked_at_refresh {
            self.refresh_readable();
            self.unwalked_at_refresh = self.collected.unwalked;
        }
    }

    /// Publishes a fresh readable-memory table and frees the old one.
    fn refresh_readable(&mut self) {
        let Ok(table) = ReadableRanges::snapshot() else {
            return;
        };
        let old = READABLE.swap(Box::into_raw(Box::new(table)), Ordering::AcqRel);
        if !old.is_null() {
            signal::wait_for_handlers();
            // SAFETY: unpublished above, and no handler that could have
            // loaded it is still running.
            drop(unsafe { Box::from_raw(old) });
        }
    }

    /// Unpublishes a ring, waits out handlers that may hold it, drains and frees it.
    fn retire_slot(&mut self, slot: usize, name: u32) {
        let ring = SLOTS[slot].swap(std::ptr::null_mut(), Ordering::AcqRel);
        if ring.is_null() {
            return;
        }
        signal::wait_for_handlers();
        // SAFETY: unpublished and no handler is running: we own it now.
        let ring = unsafe { Box::from_raw(ring) };
        // SAFETY: only this thread replaces the table, so it is alive.
        let table = unsafe { READABLE.load(Ordering::Acquire).as_ref() };
        drain_ring(&ring, name, table, &mut self.collected);
        self.free_slots.push(slot);
    }

    fn drain_all(&mut self) {
        // SAFETY: only this thread replaces the table, so it is alive.
        let table = unsafe { READABLE.load(Ordering::Acquire).as_ref() };
        for tracked in self.threads.values() {
            let ring = SLOTS[tracked.slot].load(Ordering::Acquire);
            // SAFETY: only this thread frees rings, so a published ring is alive.
            if let Some(ring) = unsafe { ring.as_ref() } {
                drain_ring(ring, tracked.name, table, &mut self.collected);
            }
        }
    }

    fn finish(mut self) -> Collected {
        ENABLED.store(false, Ordering::Release);
        for tracked in self.threads.values_mut() {
            drop(tracked.timer.take());
        }
        signal::wait_for_handlers();
        let threads: Vec<(usize, u32)> = self.threads.values().map(|t| (t.slot, t.name)).collect();
        self.threads.clear();
        for (slot, name) in threads {
            self.retire_slot(slot, name);
        }
        let old = READABLE.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !old.is_null() {
            signal::wait_for_handlers();
            // SAFETY: unpublished and no handler is running.
            drop(unsafe { Box::from_raw(old) });
        }
        debug_assert_eq!(ACTIVE.load(Ordering::SeqCst), 0);
        self.collected
    }
}

fn drain_ring(ring: &Ring, thread: u32, table: Option<&ReadableRanges>, collected: &mut Collected) {
    collected.dropped_periods += ring.dropped_periods.swap(0, Ordering::Relaxed);
    ring.drain(|record| {
        let depth = (record.depth as usize).clamp(1, record.frames.len());
        let mut frames: Vec<u64> = record.frames[..depth].to_vec();
        // A leaf without its own frame record (frameless code such as libc or
        // the vDSO, or a prologue/epilogue) leaves its caller's return
        // address at the stack pointer; the frame chain would skip it.
        let caller = record.sp_word;
        if caller != 0
            && frames.get(1) != Some(&caller)
            && table.is_some_and(|t| t.is_return_address(caller))
        {
            frames.insert(1, caller);
            frames.truncate(ring::MAX_DEPTH);
        }
        let key = StackKey {
            frames: frames.into(),
            thread,
            flags: record.flags,
        };
        let entry = collected.stacks.entry(key).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += u64::from(record.periods);
        collected.samples += 1;
        collected.periods += u64::from(record.periods);
        if record.flags & FLAG_TRUNCATED != 0 {
            collected.truncated += 1;
        }
        if record.flags & FLAG_NO_STACK != 0 {
            collected.unwalked += 1;
        }
    });
}
