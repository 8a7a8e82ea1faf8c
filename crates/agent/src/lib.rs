//! `firewatch-agent`: the in-process half of firewatch.
//!
//! A service links this crate and starts an [`Agent`]. The agent watches the
//! process and writes **CPU profiles** as pprof files (gzip-compressed
//! `profile.proto`, readable by `go tool pprof` and `firewatch analyze`) into a
//! directory: when the process receives `SIGUSR2`, when its CPU use stays
//! above a threshold, or when the service asks. Captures are throttled (one
//! at a time, minimum gaps, an hourly budget, a lifetime cap) and old files
//! are deleted (max files, bytes, age), so the agent never hurts the service
//! nor fills its disk.
//!
//! ```no_run
//! # fn main() -> Result<(), firewatch_agent::Error> {
//! let _agent = firewatch_agent::Agent::builder()
//!     .output_dir("/var/lib/myservice/profiles")
//!     .start()?; // FIREWATCH_* environment variables override the builder
//! // ... the service runs; `kill -USR2 <pid>` writes a 10 s CPU profile.
//! # Ok(()) }
//! ```
//!
//! Where things live:
//!
//! - [`cpu`]: the sampler (per-thread CPU-time timers, the SIGPROF handler,
//!   the frame-pointer walk, per-thread rings) and [`cpu::CpuProfiler`] for
//!   profiles on demand, without an agent;
//! - [`capture`]: the pipeline from "a trigger fired" to "a file is on disk":
//!   gate, throttle, atomic store with a disk guard, retention;
//! - [`trigger`]: threshold state machines; [`config`]: settings and
//!   environment overrides;
//! - [`process`]: `/proc` readings (mappings and build IDs, CPU time, RSS,
//!   memory limit); [`symbolize`] and [`stacks_to_profile`]: addresses to a
//!   pprof profile, off the signal path.
//!
//! See `docs/agent.md` for the user guide.

mod agent;
pub mod alloc;
pub mod capture;
pub mod config;
pub mod cpu;
mod error;
pub mod heap;
pub mod process;
pub mod stacks_to_profile;
pub mod symbolize;
pub mod trigger;

pub use agent::{Agent, AgentBuilder};
pub use alloc::SamplingAllocator;
pub use config::Config;
pub use error::{Error, Result};
