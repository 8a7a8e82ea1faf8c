//! What the agent needs to know about its own process: the executable
//! mappings with build IDs (so profiles can be symbolized offline) and the
//! resource usage the triggers watch (CPU time, RSS, the memory limit).
//!
//! Everything here reads `/proc`, `/sys` or files and allocates: call it from
//! the agent thread, never from a signal handler.

pub mod maps;
pub mod usage;

pub use maps::{current_mappings, Mapping};
pub use usage::{memory_limit_bytes, process_cpu_time, rss_bytes};
