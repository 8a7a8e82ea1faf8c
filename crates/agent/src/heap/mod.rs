//! Heap profiles. This release has the snapshot's arithmetic and encoding;
//! the sampling allocator that feeds it comes next.
//!
//! A sampling allocator records one allocation in every ~`interval` bytes
//! (the countdown is drawn from an exponential distribution, as Go and
//! jemalloc do), so a stack's recorded counts stand for more: they are
//! *unsampled* when the snapshot is taken, with Go's formula, never in the
//! allocator's hot path.

mod snapshot;

pub use snapshot::{heap_profile, unsample, HeapStack, ALLOCATOR_FRAMES};
