//! Buckets: one per distinct (call stack, size) sampled, with counters of
//! sampled allocations and frees, as Go's `runtime/mprof.go` keeps them.
//!
//! Counting per (stack, size) keeps floating point out of the allocator:
//! a snapshot unsamples each bucket exactly with Go's formula at its size.
//! The table is a fixed array (untouched entries cost no memory), filled
//! lock-free: an entry is claimed by a compare-exchange, written, then
//! published; readers skip entries still being written (a bucket may then
//! be created twice, which a snapshot merges). Entries are never removed,
//! so a bucket index stays valid for the life of the process.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Frames kept per sampled stack.
pub const MAX_FRAMES: usize = 64;
/// Most distinct (stack, size) pairs recorded; further ones are dropped
/// and counted.
pub const CAPACITY: usize = 1 << 16;
const MAX_PROBES: usize = 256;

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

pub struct Bucket {
    state: AtomicU32,
    depth: AtomicU32,
    hash: AtomicU64,
    size: AtomicU64,
    interval: AtomicU64,
    allocs: AtomicU64,
    frees: AtomicU64,
    frames: [AtomicU64; MAX_FRAMES],
}

#[allow(clippy::declare_interior_mutable_const)]
const NEW_BUCKET: Bucket = Bucket {
    state: AtomicU32::new(EMPTY),
    depth: AtomicU32::new(0),
    hash: AtomicU64::new(0),
    size: AtomicU64::new(0),
    interval: AtomicU64::new(0),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    frames: [const { AtomicU64::new(0) }; MAX_FRAMES],
};

static BUCKETS: [Bucket; CAPACITY] = [NEW_BUCKET; CAPACITY];
/// Published bucket indices + 1, in order of publication, so readers visit
/// only the entries in use (the table itself is spread by hash).
static PUBLISHED: [AtomicU32; CAPACITY] = [const { AtomicU32::new(0) }; CAPACITY];
static PUBLISHED_COUNT: AtomicUsize = AtomicUsize::new(0);

fn hash_of(frames: &[u64], size: usize) -> u64 {
    let mut h = (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ frames.len() as u64;
    for &f in frames {
        h = (h.rotate_left(5) ^ f).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    h | 1
}

/// The bucket of (`frames`, `size`), created if new; `None` when the table
/// has no room (the allocation is then not sampled).
pub fn intern(frames: &[u64], size: usize, interval: usize) -> Option<u32> {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let h = hash_of(frames, size);
    let home = (h as usize) % CAPACITY;
    for probe in 0..MAX_PROBES {
        let i = (home + probe) % CAPACITY;
        let b = &BUCKETS[i];
        match b.state.load(Ordering::Acquire) {
            READY if b.matches(h, frames, size) => return Some(i as u32),
            EMPTY => {
                if b.state
                    .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    b.hash.store(h, Ordering::Relaxed);
                    b.size.store(size as u64, Ordering::Relaxed);
                    b.interval.store(interval as u64, Ordering::Relaxed);
                    b.depth.store(frames.len() as u32, Ordering::Relaxed);
                    for (slot, &f) in b.frames.iter().zip(frames) {
                        slot.store(f, Ordering::Relaxed);
                    }
                    b.state.store(READY, Ordering::Release);
                    let n = PUBLISHED_COUNT.fetch_add(1, Ordering::AcqRel);
                    PUBLISHED[n].store(i as u32 + 1, Ordering::Release);
                    return Some(i as u32);
                }
                // Lost the race for this entry: it may now hold our key.
                if b.state.load(Ordering::Acquire) == READY && b.matches(h, frames, size) {
                    return Some(i as u32);
                }
            }
            _ => {}
        }
    }
    None
}

impl Bucket {
    fn matches(&self, h: u64, frames: &[u64], size: usize) -> bool {
        self.hash.load(Ordering::Relaxed) == h
            && self.size.load(Ordering::Relaxed) == size as u64
            && self.depth.load(Ordering::Relaxed) as usize == frames.len()
            && self
                .frames
                .iter()
                .zip(frames)
                .all(|(a, &b)| a.load(Ordering::Relaxed) == b)
    }
}

/// Counts a sampled allocation in `bucket`.
pub fn record_alloc(bucket: u32) {
    BUCKETS[bucket as usize]
        .allocs
        .fetch_add(1, Ordering::Relaxed);
}

/// Counts the free of a sampled allocation of `bucket`.
pub fn record_free(bucket: u32) {
    if let Some(b) = BUCKETS.get(bucket as usize) {
        b.frees.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bucket as a snapshot reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRecord {
    /// Return addresses, innermost first (the allocator's own frames too).
    pub frames: Vec<u64>,
    pub size: u64,
    pub interval: u64,
    pub allocs: u64,
    pub frees: u64,
}

/// Every published bucket with at least one sampled allocation. Frees are
/// read before allocations (and clamped), so `frees <= allocs` in every
/// record even while threads allocate.
pub fn records() -> Vec<BucketRecord> {
    let mut out = Vec::new();
    for published in &PUBLISHED[..used()] {
        let Some(i) = published.load(Ordering::Acquire).checked_sub(1) else {
            continue; // claimed a moment ago, index not stored yet
        };
        let b = &BUCKETS[i as usize];
        let frees = b.frees.load(Ordering::Acquire);
        let allocs = b.allocs.load(Ordering::Acquire);
        if allocs == 0 {
            continue;
        }
        let depth = (b.depth.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        out.push(BucketRecord {
            frames: b.frames[..depth]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            size: b.size.load(Ordering::Relaxed),
            interval: b.interval.load(Ordering::Relaxed),
            allocs,
            frees: frees.min(allocs),
        });
    }
    out
}

/// Sampled blocks alive now (allocations minus frees over all buckets),
/// without allocating.
pub fn live_samples() -> u64 {
    PUBLISHED[..used()]
        .iter()
        .filter_map(|p| p.load(Ordering::Acquire).checked_sub(1))
        .map(|i| {
            let b = &BUCKETS[i as usize];
            let frees = b.frees.load(Ordering::Acquire);
            b.allocs.load(Ordering::Acquire).saturating_sub(frees)
        })
        .sum()
}

/// Buckets in use (published).
pub fn used() -> usize {
    PUBLISHED_COUNT.load(Ordering::Acquire).min(CAPACITY)
}
