//! Heap snapshots: what the [`crate::SamplingAllocator`] sampled, as a
//! Go-compatible heap profile.
//!
//! The allocator records one allocation in every ~`interval` bytes (the
//! countdown is drawn from an exponential distribution, as Go and jemalloc
//! do) into buckets of (call stack, size). A snapshot *unsamples* each
//! bucket with Go's formula, `1 / (1 - exp(-size / interval))`, here and
//! never in the allocator's hot path, then sums buckets by call stack.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
//!     firewatch_agent::SamplingAllocator::new(std::alloc::System);
//!
//! # fn main() -> Result<(), firewatch_agent::Error> {
//! let profile = firewatch_agent::heap::snapshot()?;
//! profile.write_gzip(std::fs::File::create("heap.pb.gz").unwrap()).unwrap();
//! # Ok(()) }
//! ```

mod snapshot;

pub use crate::alloc::{in_use_bytes, stats, AllocatorStats, Dropped, FramePointerWalks};
pub use snapshot::snapshot;
pub(crate) use snapshot::{
    delta_with_comments, is_allocation_plumbing_frame, records_now, snapshot_with_comments,
    HeapRecords,
};
