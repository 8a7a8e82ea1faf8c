//! The sampling allocator: a [`GlobalAlloc`] wrapper over any allocator that
//! records one allocation in every ~`interval` bytes, with its call stack,
//! for heap snapshots ([`crate::heap::snapshot`]), and counts the bytes in
//! use exactly enough for a heap threshold.
//!
//! The costs, by path:
//!
//! - **unsampled allocation**: a thread-local subtraction and a branch
//!   (`countdown::take`), then the inner allocator. No atomics, no
//!   floating point, no shared cache line written.
//! - **unsampled free**: a compare of the layout against the region's slot
//!   size, then either one load and compare (`region::contains`) or, for
//!   large layouts, one load from a small counting filter
//!   (`large::may_contain`); a thread-local subtraction and a branch for
//!   the in-use accounting; then the inner allocator.
//! - **an event** (every `countdown::FOLD_BYTES` or at a sample point):
//!   an atomic add, and at a sample point a stack walk (in place with the
//!   modules' unwind tables; frame pointers where they cannot be used), a bucket
//!   lookup and the placement of the block (a region slot for blocks up to
//!   the slot size, 64 KiB, or 4 KiB on 32-bit targets and with pages over
//!   4 KiB, see `region`; the inner allocator plus an address table above
//!   that).
//!
//! Nothing here locks, allocates through the global allocator, or panics:
//! every table is a fixed-size static filled lock-free, full tables drop the
//! sample (counted in [`Dropped`]), and a thread-local guard keeps the slow
//! path from sampling anything it might allocate itself.
//!
//! **fork**: no lock is ever held, so a child can allocate at once. The
//! child keeps the parent's samples (its memory is a copy) and keeps
//! sampling; what other parent threads had not folded into the in-use
//! counters is lost (at most 512 KiB per thread). No agent thread runs in
//! the child unless it starts one.

mod buckets;
mod countdown;
mod large;
mod region;
pub(crate) mod stack;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

pub use buckets::{BucketRecord, Reclaimed, MAX_FRAMES};
use countdown::Event;

use crate::unwind::in_place::{self, Fallback};

/// The default mean number of bytes between samples, as Go and jemalloc.
pub const DEFAULT_SAMPLE_INTERVAL: usize = 512 * 1024;

/// A [`GlobalAlloc`] that forwards to `A` and samples allocations.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
///     firewatch_agent::SamplingAllocator::new(std::alloc::System);
/// ```
///
/// Sampling state is process-wide: use one `SamplingAllocator` (the global
/// one), and free every block through the allocator that returned it.
pub struct SamplingAllocator<A> {
    inner: A,
    interval: usize,
}

impl<A> SamplingAllocator<A> {
    /// Wraps `inner`, sampling one allocation per 512 KiB on average.
    pub const fn new(inner: A) -> Self {
        Self::with_sample_interval(inner, DEFAULT_SAMPLE_INTERVAL)
    }

    /// Wraps `inner`, sampling one allocation per `interval` bytes on
    /// average; 0 turns sampling off (the in-use counter still works), 1
    /// samples every allocation (until the tables fill).
    pub const fn with_sample_interval(inner: A, interval: usize) -> Self {
        SamplingAllocator { inner, interval }
    }

    /// The mean number of bytes between samples.
    pub const fn sample_interval(&self) -> usize {
        self.interval
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

/// Samples not recorded, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The region for small sampled blocks was full or could not be reserved.
    pub no_slot: u64,
    /// The large-block address table had no room.
    pub no_large_entry: u64,
    /// The bucket table (distinct stack × size) was full.
    pub no_bucket: u64,
}

static DROPPED_NO_SLOT: AtomicU64 = AtomicU64::new(0);
static DROPPED_NO_LARGE: AtomicU64 = AtomicU64::new(0);
static DROPPED_NO_BUCKET: AtomicU64 = AtomicU64::new(0);
/// Sampled stacks walked with frame pointers, by why unwind tables were not
/// used (see [`FramePointerWalks`]).
static FP_NOT_PREPARED: AtomicU64 = AtomicU64::new(0);
static FP_SMALL_STACK: AtomicU64 = AtomicU64::new(0);
static FP_BUSY: AtomicU64 = AtomicU64::new(0);
/// The interval of the allocator that took the last sample (0: none yet).
static INTERVAL: AtomicUsize = AtomicUsize::new(0);
/// Events seen: non-zero once a `SamplingAllocator` has served allocations.
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// What the sampling allocator knows, process-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllocatorStats {
    /// Whether a `SamplingAllocator` has served allocations in this process.
    pub active: bool,
    /// The sampling interval in use (0 if sampling is off or not started).
    pub sample_interval: u64,
    /// Bytes allocated minus bytes freed, as folded by threads so far (each
    /// live thread may hold up to 256 KiB of each unfolded).
    pub in_use_bytes: u64,
    /// Bytes allocated since the process started, as folded so far.
    pub allocated_bytes: u64,
    /// Bytes freed since the process started, as folded so far.
    pub freed_bytes: u64,
    /// Sampled blocks alive now.
    pub live_samples: u64,
    /// Distinct (stack, size) buckets in the table (in use or reusable).
    pub buckets: usize,
    /// Region slots ever used (each holds at most one resident page when free).
    pub region_slots_used: usize,
    /// Samples not recorded because a table was full, by table.
    pub dropped: Dropped,
    /// Sampled allocations whose stack was walked with frame pointers only
    /// (incomplete in a build without them), by reason.
    pub frame_pointer_walks: FramePointerWalks,
}

/// Why sampled stacks were walked with frame pointers instead of unwind
/// tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramePointerWalks {
    /// Before the tables were prepared (allocations before `Agent::start`
    /// or the first heap snapshot).
    pub not_prepared: u64,
    /// Less than 64 KiB of stack was left for the walk.
    pub small_stack: u64,
    /// More walks at once than prepared caches (or the unwinder failed).
    pub busy: u64,
}

impl FramePointerWalks {
    /// Walks with frame pointers only, whatever the reason.
    pub fn total(&self) -> u64 {
        self.not_prepared + self.small_stack + self.busy
    }
}

/// Resets what a child of `fork` inherits mid-operation (see `crate::fork`).
pub(crate) fn after_fork_in_child() {
    region::after_fork_in_child();
}

/// Counters of the sampling allocator. Allocates nothing.
pub fn stats() -> AllocatorStats {
    let freed = countdown::FREED.load(Relaxed);
    let allocated = countdown::ALLOCATED.load(Relaxed);
    AllocatorStats {
        active: EVENTS.load(Relaxed) != 0,
        sample_interval: INTERVAL.load(Relaxed) as u64,
        in_use_bytes: allocated.saturating_sub(freed),
        allocated_bytes: allocated,
        freed_bytes: freed,
        live_samples: buckets::live_samples(),
        buckets: buckets::used(),
        region_slots_used: region::slots_used(),
        dropped: Dropped {
            no_slot: DROPPED_NO_SLOT.load(Relaxed),
            no_large_entry: DROPPED_NO_LARGE.load(Relaxed),
            no_bucket: DROPPED_NO_BUCKET.load(Relaxed),
        },
        frame_pointer_walks: FramePointerWalks {
            not_prepared: FP_NOT_PREPARED.load(Relaxed),
            small_stack: FP_SMALL_STACK.load(Relaxed),
            busy: FP_BUSY.load(Relaxed),
        },
    }
}

/// Whether a `SamplingAllocator` has served allocations in this process
/// (one load).
pub fn active() -> bool {
    EVENTS.load(Relaxed) != 0
}

/// Bytes in use through the sampling allocator (cheap: two loads).
pub fn in_use_bytes() -> u64 {
    countdown::in_use()
}

/// Every bucket with sampled allocations (for [`crate::heap`]).
pub fn bucket_records() -> Vec<BucketRecord> {
    buckets::records()
}

/// Buckets reused for new stacks once the table filled, and the history
/// they took with them.
pub fn reclaimed() -> Reclaimed {
    buckets::reclaimed()
}

/// Whether the region for small sampled blocks could not be reserved.
pub fn region_unavailable() -> bool {
    region::failed()
}

/// Bytes of address space reserved for sampled small blocks, the most it
/// would take without an address-space limit, and the bytes per slot (one
/// sampled block each).
pub(crate) fn region_reserved() -> (usize, usize, usize) {
    (
        region::reserved(),
        region::full_bytes(),
        region::slot_bytes(),
    )
}

/// Restarts the calling thread's sampling generator from `seed`, for
/// reproducible tests (through `testing`). `interval` must be the allocator's.
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code)
)]
pub fn reseed_current_thread(seed: u64, interval: usize) {
    countdown::reseed(seed, interval);
}

/// Small blocks (and their alignment) fit a region slot when sampled. The
/// slot size is decided at the first event (`region::decide`), before any
/// block is placed.
#[inline(always)]
fn fits_slot(size: usize, align: usize) -> bool {
    region::fits(size, align)
}

/// Where a live sampled block is recorded.
#[derive(Clone, Copy)]
enum Sampled {
    Slot(usize),
    Large(u32),
}

/// Whether the block at `ptr` with `layout` was sampled (and where).
#[inline(always)]
fn sampled_block(ptr: *mut u8, layout: Layout) -> Option<Sampled> {
    if fits_slot(layout.size(), layout.align()) {
        if region::contains(ptr) {
            return Some(Sampled::Slot(region::slot_of(ptr)));
        }
        None
    } else if large::may_contain(ptr) {
        large::remove(ptr).map(Sampled::Large)
    } else {
        None
    }
}

/// Per-slot bucket of the block living in it.
static SLOT_BUCKET: [std::sync::atomic::AtomicU32; region::SLOTS] =
    [const { std::sync::atomic::AtomicU32::new(0) }; region::SLOTS];

/// Records the death of a sampled block; a region slot is released.
fn forget(block: Sampled, size: usize) {
    match block {
        Sampled::Slot(slot) => {
            buckets::record_free(SLOT_BUCKET[slot].load(Relaxed));
            region::release_slot(slot, size);
        }
        Sampled::Large(bucket) => buckets::record_free(bucket),
    }
}

/// The stack of the allocation being sampled, interned with its size, and
/// the allocation counted in it (give it back with `buckets::cancel` if the
/// block is not kept). `None` (and counted) when the bucket table is full.
fn bucket_for(size: usize, interval: usize) -> Option<u32> {
    let mut frames = [0u64; MAX_FRAMES];
    // The walk runs here, not inside a thread-local closure, so every frame
    // above it is the allocator's or its caller's. The reentrancy guard is
    // set first: `stack_bounds` may allocate (glibc, for the main thread).
    let (was_busy, bounds) = countdown::COUNTDOWN.with(|c| {
        let was_busy = c.busy.replace(true);
        (was_busy, stack::stack_bounds(c))
    });
    let depth = match bounds {
        // Unwind tables first; frame pointers when they cannot be used.
        Some(bounds) => match in_place::capture(bounds, &mut frames) {
            Ok(depth) => depth,
            Err(reason) => {
                let counter = match reason {
                    Fallback::NotPrepared => &FP_NOT_PREPARED,
                    Fallback::SmallStack => &FP_SMALL_STACK,
                    Fallback::Busy | Fallback::Broken => &FP_BUSY,
                };
                counter.fetch_add(1, Relaxed);
                stack::capture(bounds, &mut frames)
            }
        },
        None => 0,
    };
    countdown::COUNTDOWN.with(|c| c.busy.set(was_busy));
    INTERVAL.store(interval, Relaxed);
    // The label set installed on this thread: a relaxed load of a
    // `const`-initialized thread-local without `Drop`, so it allocates
    // nothing, registers nothing, and works while the thread's other
    // thread-locals are being destroyed (it is never reset: a destructor
    // that allocates under a label records that label).
    // Nothing on this path interns label sets: an allocation made while a
    // set is being interned (`labels::with` allocates a new set's strings)
    // is sampled under the thread's outer set, and interning holds no lock,
    // so there is nothing to re-enter or deadlock on.
    let labels = crate::labels::current_id();
    let bucket = buckets::intern(&frames[..depth], size, labels, interval);
    if bucket.is_none() {
        DROPPED_NO_BUCKET.fetch_add(1, Relaxed);
    }
    bucket
}

/// A region slot for a sampled small block of `bucket`, or `None` (counted).
fn slot_for(bucket: u32) -> Option<usize> {
    let slot = region::take_slot();
    match slot {
        Some(slot) => SLOT_BUCKET[slot].store(bucket, Relaxed),
        None => {
            DROPPED_NO_SLOT.fetch_add(1, Relaxed);
        }
    }
    slot
}

/// Records a sampled large block at `ptr`; `false` (counted) if no room.
fn remember_large(ptr: *mut u8, bucket: u32) -> bool {
    let ok = large::insert(ptr, bucket);
    if !ok {
        DROPPED_NO_LARGE.fetch_add(1, Relaxed);
    }
    ok
}

impl<A: GlobalAlloc> SamplingAllocator<A> {
    /// An allocation that hit an event: fold, and maybe sample it.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_event(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        EVENTS.fetch_add(1, Relaxed);
        region::decide();
        let plain = |this: &Self| {
            // SAFETY: the caller's contract for `alloc`/`alloc_zeroed`.
            unsafe {
                if zeroed {
                    this.inner.alloc_zeroed(layout)
                } else {
                    this.inner.alloc(layout)
                }
            }
        };
        // A refused request is not memory in use.
        let plain = |this: &Self| {
            let ptr = plain(this);
            if ptr.is_null() {
                countdown::refund(layout.size(), true);
            }
            ptr
        };
        if countdown::on_event(self.interval) != Event::Sample {
            return plain(self);
        }
        let Some(bucket) = bucket_for(layout.size(), self.interval) else {
            return plain(self);
        };
        if fits_slot(layout.size(), layout.align()) {
            let Some(slot) = slot_for(bucket) else {
                buckets::cancel(bucket);
                return plain(self);
            };
            let ptr = region::block(slot);
            if zeroed {
                // SAFETY: the slot is ours and, as `fits_slot` said, holds `size` bytes.
                unsafe { ptr.write_bytes(0, layout.size()) };
            }
            return ptr;
        }
        let ptr = plain(self);
        if ptr.is_null() || !remember_large(ptr, bucket) {
            buckets::cancel(bucket);
        }
        ptr
    }

    /// `realloc` as a free of the old block plus a sampled allocation of
    /// `new_size`, for the cases where either side is sampled.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_sampled(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
        old: Option<Sampled>,
        event: bool,
    ) -> *mut u8 {
        // The caller's `realloc` contract holds throughout: `ptr` is a live
        // block of `layout`, and `new_size` rounded up to `layout.align()`
        // does not overflow `isize`.
        // SAFETY: that contract makes (new_size, align) a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        region::decide();
        let sample = event && countdown::on_event(self.interval) == Event::Sample;
        let bucket = if sample {
            bucket_for(new_size, self.interval)
        } else {
            None
        };
        let copy = layout.size().min(new_size);
        match (old, bucket) {
            // The old block stays in the inner allocator, the new is unsampled.
            (None | Some(Sampled::Large(_)), None) => {
                // SAFETY: `ptr` is the inner allocator's (not a slot), live,
                // of `layout`.
                let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
                if new.is_null() {
                    self.restore(ptr, old);
                } else if let Some(block) = old {
                    forget(block, layout.size());
                }
                new
            }
            // A sampled small block moves out to the inner allocator.
            (Some(Sampled::Slot(slot)), None) => {
                // SAFETY: a valid, non-zero layout (`new_size` ≥ 1 by the
                // contract).
                let new = unsafe { self.inner.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks hold at least `copy` bytes and are
                    // distinct (one is a slot, the other the inner allocator's).
                    unsafe { std::ptr::copy_nonoverlapping(ptr, new, copy) };
                    forget(Sampled::Slot(slot), layout.size());
                }
                new
            }
            (old, Some(bucket)) if fits_slot(new_size, layout.align()) => {
                if let Some(Sampled::Slot(slot)) = old {
                    // Stays in its slot, now counted under the new bucket.
                    buckets::record_free(SLOT_BUCKET[slot].load(Relaxed));
                    SLOT_BUCKET[slot].store(bucket, Relaxed);
                    return ptr;
                }
                let Some(slot) = slot_for(bucket) else {
                    buckets::cancel(bucket);
                    // SAFETY: `old` is not a slot here (handled above), so
                    // `ptr` is the inner allocator's, live, of `layout`.
                    let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
                    if new.is_null() {
                        self.restore(ptr, old);
                    } else if let Some(block) = old {
                        forget(block, layout.size());
                    }
                    return new;
                };
                let new = region::block(slot);
                // SAFETY: the slot is ours and holds `new_size` ≥ `copy`
                // bytes; `ptr` is the inner allocator's (not a slot), live,
                // of `layout`, and freed once copied.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, copy);
                    self.inner.dealloc(ptr, layout);
                }
                if let Some(block) = old {
                    forget(block, layout.size());
                }
                new
            }
            (old, Some(bucket)) => {
                // The new block is large: it lives in the inner allocator.
                let new = match old {
                    Some(Sampled::Slot(_)) => {
                        // SAFETY: a valid, non-zero layout.
                        let new = unsafe { self.inner.alloc(new_layout) };
                        if !new.is_null() {
                            // SAFETY: both hold at least `copy` bytes, distinct.
                            unsafe { std::ptr::copy_nonoverlapping(ptr, new, copy) };
                        }
                        new
                    }
                    // SAFETY: `ptr` is the inner allocator's, live, of `layout`.
                    _ => unsafe { self.inner.realloc(ptr, layout, new_size) },
                };
                if new.is_null() {
                    buckets::cancel(bucket);
                    self.restore(ptr, old);
                    return new;
                }
                if let Some(block) = old {
                    forget(block, layout.size());
                }
                if !remember_large(new, bucket) {
                    buckets::cancel(bucket);
                }
                new
            }
        }
    }

    /// After a failed move, the old block is still live: a large sampled
    /// block goes back into the address table (a slot never left it).
    fn restore(&self, ptr: *mut u8, old: Option<Sampled>) {
        if let Some(Sampled::Large(bucket)) = old {
            if !remember_large(ptr, bucket) {
                // Lost track: count its death now rather than never.
                buckets::record_free(bucket);
            }
        }
    }
}

// SAFETY: every method returns memory from `inner` under the caller's
// layout, or a region slot (slot-sized and aligned, reserved for this
// block alone until it is freed, so it satisfies any layout that
// `fits_slot` admits); frees go back where the block came from.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SamplingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if countdown::take(layout.size()) {
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_event(layout, false) };
        }
        // SAFETY: forwarded caller contract.
        let ptr = unsafe { self.inner.alloc(layout) };
        if ptr.is_null() {
            countdown::refund(layout.size(), false);
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if countdown::take(layout.size()) {
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_event(layout, true) };
        }
        // SAFETY: forwarded caller contract.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if ptr.is_null() {
            countdown::refund(layout.size(), false);
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        countdown::give_back(layout.size());
        match sampled_block(ptr, layout) {
            Some(block) => {
                let in_inner = matches!(block, Sampled::Large(_));
                forget(block, layout.size());
                if in_inner {
                    // SAFETY: a large sampled block came from `inner`.
                    unsafe { self.inner.dealloc(ptr, layout) }
                }
            }
            // SAFETY: forwarded caller contract.
            None => unsafe { self.inner.dealloc(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        countdown::give_back(layout.size());
        let event = countdown::take(new_size);
        let old = sampled_block(ptr, layout);
        let new = if old.is_none() && !event {
            // SAFETY: forwarded caller contract.
            unsafe { self.inner.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: forwarded caller contract.
            unsafe { self.realloc_sampled(ptr, layout, new_size, old, event) }
        };
        if new.is_null() {
            // The old block lives on; the new size was never in use.
            countdown::refund_realloc(layout.size(), new_size, event);
        }
        new
    }
}
