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
//! (`sampler::timer`), which sends SIGPROF to that thread each time it has used one
//! period of CPU. The handler (`sampler::signal`) copies the interrupted registers
//! and the stack above the stack pointer into a shared pool (`sampler::pool`),
//! with the number of periods the signal stands for (1 + timer overruns), so
//! a sample's weight is CPU time actually used even when the kernel delivers
//! fewer signals than requested. A profiler thread empties the pool every
//! 20 ms, unwinds each copy with the modules' `.eh_frame` tables (frame
//! pointers where there are none; see `crate::unwind`), notices new and
//! exited threads, and aggregates stacks. Stopping disarms the timers and
//! turns the stacks into a pprof profile, symbolized off the signal path.
//!
//! The agent takes every CPU profile (triggers, `capture_cpu`, the
//! `/debug/pprof/profile` endpoint, look-back) through one shared sampler
//! (`sampler::shared`): it runs while any of them does, at the highest rate
//! asked, and each profile gets the samples of its own window. With the
//! agent's `lookback` setting it runs for the agent's life at a low rate
//! and keeps the last seconds in one-second windows, which a capture can
//! begin with. That sampler is the process's one: a [`CpuProfiler::start`]
//! meanwhile gets [`Error::Busy`](crate::Error::Busy).

mod profile;

/// The sampler needs Linux (CPU-clock timers that signal one thread,
/// `SIGEV_THREAD_ID`; `/proc/self/task`; `process_vm_readv`) and an
/// architecture the unwinder knows. Elsewhere [`CpuProfiler::start`] returns
/// [`Error::Unsupported`](crate::Error::Unsupported); the capture types and
/// their conversion to a profile are the same everywhere.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod sampler;
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[path = "unsupported.rs"]
mod sampler;

use std::time::{Duration, SystemTime};

pub(crate) use sampler::after_fork_in_child;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) use sampler::set_labels_in_handler;
pub use sampler::CpuProfiler;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) use sampler::SyntheticHistory;
pub(crate) use sampler::{SharedSampler, Subscription};

/// Deepest stack recorded; deeper stacks are cut and marked truncated.
pub(crate) const MAX_DEPTH: usize = 128;
/// Highest accepted rate. The kernel delivers at most its tick rate
/// (CONFIG_HZ, often 250) signals per thread per second; overruns carry the rest.
pub const MAX_HZ: u32 = 4000;
/// Bytes of stack copied per sample. Deeper stacks are unwound as far as
/// the copy goes and marked truncated.
pub(crate) const WINDOW: usize = 32 * 1024;
/// Threads profiled at once (slots of the sampler's thread table).
pub(crate) const MAX_SLOTS: usize = 4096;

/// What the agent's sampler keeps look-back windows with (the `lookback`,
/// `lookback_hz` and `lookback_memory_limit` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LookbackSettings {
    /// How far back a capture reaches.
    pub span: Duration,
    /// Samples per CPU-second per thread between captures.
    pub hz: u32,
    /// Most bytes the windows may take (estimated).
    pub memory_limit: u64,
}

/// Raw result of a CPU profile, before symbolization.
#[non_exhaustive]
pub struct CpuCapture {
    /// Samples per CPU-second per thread asked for.
    pub hz: u32,
    /// The highest rate the sampler ran at during the window: above `hz`
    /// where the agent's one sampler served another profile that asked for
    /// more at the same time. Each sample weighs the CPU time of the period
    /// in force when it was taken, so `cpu_ns` is right at any rate.
    pub sampled_hz: u32,
    /// CPU time between two samples of a thread.
    pub period_ns: u64,
    /// When the profile's window started: with a [`lookback`](Self::lookback)
    /// part, where that part starts (before the capture itself began).
    pub started: SystemTime,
    /// How long the window is, the look-back part included.
    pub duration: Duration,
    /// Distinct (stack, thread, label set) with their sample counts and CPU time
    /// (a look-back capture's stacks once for each part they appear in).
    pub stacks: Vec<CapturedStack>,
    /// CPU time of samples lost because the pool was full.
    pub dropped_ns: u64,
    /// CPU time the process used in the window that no sample stands for:
    /// what threads used after their last signal before exiting, before
    /// their timer was armed (threads found by the 20 ms scan), or while
    /// the kernel had not yet checked their timer. The process's CPU clock
    /// over the window minus the samples (kept and dropped).
    pub unsampled_ns: u64,
    /// Samples kept.
    pub samples: u64,
    /// CPU time the kept samples stand for.
    pub cpu_ns: u64,
    /// Samples whose stack was cut at the depth limit.
    pub truncated: u64,
    /// Samples whose stack could not be walked at all.
    pub unwalked: u64,
    /// Samples whose unwinding stopped before reaching the outermost frame
    /// (no rule found the caller).
    pub incomplete: u64,
    /// Signals from timers of threads already gone, discarded.
    pub stale: u64,
    /// Executable mappings whose code has no readable unwind table (their
    /// frames are walked with frame pointers only).
    pub without_tables: usize,
    /// Most threads at once that could not be profiled: more threads than
    /// the profiler's 4,096 slots.
    pub untracked: usize,
    /// Threads profiled over the window.
    pub threads_seen: usize,
    /// Threads whose timer could not be created (most had just exited).
    pub timer_failures: usize,
    /// Another `SIGPROF` handler was installed before ours (its signals are
    /// forwarded to it).
    pub previous_handler: bool,
    /// The seconds before the capture began, for a capture of the agent's
    /// look-back sampler that asked for them; `None` for any other profile.
    /// Its samples are in `stacks` (marked) and in every total above.
    pub lookback: Option<Lookback>,
}

/// The look-back part of a [`CpuCapture`]: the windows the agent's
/// look-back sampler kept from before the capture began.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookback {
    /// How far back the capture asked to reach (the `lookback` setting).
    pub requested: Duration,
    /// How far back the windows taken reach: less than `requested` by up
    /// to a window (1 s), by windows dropped for memory, or when the
    /// sampler has run for less time.
    pub covered: Duration,
    /// The sampling rate between captures (`lookback_hz`).
    pub hz: u32,
    /// Samples of the look-back part.
    pub samples: u64,
    /// CPU time they stand for.
    pub cpu_ns: u64,
    /// One-second windows within `requested` that were dropped to stay
    /// within `memory_limit`.
    pub windows_dropped: usize,
    /// The `lookback_memory_limit` setting.
    pub memory_limit: u64,
}

/// One distinct (stack, thread, label set) of a [`CpuCapture`].
#[non_exhaustive]
pub struct CapturedStack {
    /// Code addresses, innermost first.
    pub frames: Box<[u64]>,
    /// The thread's name.
    pub thread: String,
    /// The label set the thread had installed ([`crate::labels`]).
    pub labels: crate::labels::LabelSet,
    /// Samples of this stack.
    pub samples: u64,
    /// CPU time they stand for.
    pub cpu_ns: u64,
    /// The stack was cut at the depth limit.
    pub truncated: bool,
    /// The stack could not be walked (the frames hold the interrupted
    /// address only).
    pub unwalked: bool,
    /// Counted in the look-back part, before the capture began.
    pub lookback: bool,
}
