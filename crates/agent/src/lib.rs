//! `firewatch-agent`: the in-process half of firewatch.
//!
//! A service links this crate, installs [`SamplingAllocator`] as its global
//! allocator (for heap snapshots) and starts an [`Agent`]. The agent watches
//! the process and writes **CPU profiles** and **heap snapshots** as pprof
//! files (gzip-compressed `profile.proto`, readable by `go tool pprof` and
//! `firewatch analyze`) into a directory: when the process receives
//! `SIGUSR2`, when its CPU use, heap in use or RSS crosses a threshold, or
//! when the service asks. Captures are throttled (one
//! at a time, minimum gaps, an hourly budget, a lifetime cap) and old files
//! are deleted (max files, bytes, age), so the agent never hurts the service
//! nor fills its disk.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
//!     firewatch_agent::SamplingAllocator::new(std::alloc::System);
//!
//! # fn main() -> Result<(), firewatch_agent::Error> {
//! let _agent = firewatch_agent::Agent::builder()
//!     .output_dir("/var/lib/myservice/profiles")
//!     .heap_threshold_bytes(2 << 30)
//!     .start()?; // FIREWATCH_* environment variables override the builder
//! // ... the service runs; `kill -USR2 <pid>` writes a heap snapshot and a
//! // 10 s CPU profile; 2 GiB in use writes a heap snapshot.
//! # Ok(()) }
//! ```
//!
//! The public surface: [`Agent`] and its builder (every setting: see
//! [`Config`] and `docs/agent.md`, "Options"), [`SamplingAllocator`],
//! [`cpu::CpuProfiler`] for a CPU profile on demand without an agent,
//! [`heap::snapshot`] and [`heap::stats`] for heap snapshots and the
//! allocator's counters without an agent, [`labels`] to say which request
//! or task CPU and heap samples belong to, and [`Error`]. Everything else is
//! internal; `ARCHITECTURE.md` maps it for contributors.
//!
//! See `docs/agent.md` for the user guide.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod agent;
mod alloc;
mod capture;
mod config;
pub mod cpu;
mod elf;
mod error;
mod fork;
pub mod heap;
mod http;
pub mod labels;
mod process;
mod stacks_to_profile;
mod symbolize;
mod trigger;
/// Unwinding (unwind tables, copied stacks, `process_vm_readv`) needs Linux
/// on x86_64 or aarch64; elsewhere a stub says so and the allocator's stacks
/// come from frame pointers alone (`docs/agent.md`, "Targets").
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    path = "unwind/unsupported.rs"
)]
mod unwind;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[doc(hidden)]
pub mod testing;

pub use agent::{Agent, AgentBuilder};
pub use alloc::{SamplingAllocator, DEFAULT_SAMPLE_INTERVAL};
pub use capture::Throttled;
pub use config::Config;
pub use error::{Error, Result, SkipReason};
