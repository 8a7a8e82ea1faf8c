//! Buckets: one per distinct (call stack, size, label set) sampled, with
//! counters of sampled allocations and frees, as Go's `runtime/mprof.go`
//! keeps them (Go's key has no labels). The label set is the one installed
//! on the allocating thread (`crate::labels`), so a block keeps the labels it
//! was allocated under for as long as it lives; each distinct set a stack
//! allocates under is an entry of its own, counted against [`CAPACITY`].
//!
//! Counting per (stack, size) keeps floating point out of the allocator:
//! a snapshot unsamples each bucket exactly with Go's formula at its size.
//! The table is a fixed array (untouched entries cost no memory), filled
//! lock-free: an entry is claimed by a compare-exchange, written, then
//! published; readers skip entries being written (a bucket may then be
//! created twice, which a snapshot merges).
//!
//! **Reuse.** Go never frees a bucket; a service that runs for weeks and
//! allocates many distinct sizes would fill a fixed table and then drop
//! samples. Once the table is [`PRESSURE`] full, a new (stack, size) takes
//! over an entry in its probe chain that has **nothing live** (every sampled
//! block of it freed) instead of a never-used one, so the table holds what is
//! in use plus as much history as fits. What a reused entry had counted
//! (its sampled allocations, for `alloc_space`) is added to [`reclaimed`]
//! and said in the snapshot.
//!
//! Counting and reuse cannot race: [`intern`] counts the allocation as it
//! finds the bucket (a compare-exchange on `allocs` that fails once the
//! entry is retired), and an entry is retired only by a compare-exchange of
//! `allocs` from a value equal to `frees`, with the retired bit. A block
//! counted in a bucket therefore keeps it from reuse until it is freed, and
//! a free always lands in the bucket that counted its block. Readers check
//! the entry's generation before and after reading it (a sequence lock) and
//! skip entries that changed meanwhile.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Frames kept per sampled stack.
pub const MAX_FRAMES: usize = 64;
/// Most distinct (stack, size) pairs recorded at once; further ones are
/// dropped and counted.
pub const CAPACITY: usize = 1 << 16;
/// Entries in use (out of [`CAPACITY`]) from which dead entries are reused
/// rather than never-used ones claimed.
pub const PRESSURE: usize = CAPACITY / 4 * 3;
const MAX_PROBES: usize = 256;

/// `state`: generation << 2 | kind.
const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;
const KIND: u32 = 3;
/// `allocs`: no allocation may be counted any more; the entry is being reused.
const RETIRED: u64 = 1 << 63;

pub struct Bucket {
    state: AtomicU32,
    depth: AtomicU32,
    labels: AtomicU32,
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
    labels: AtomicU32::new(0),
    hash: AtomicU64::new(0),
    size: AtomicU64::new(0),
    interval: AtomicU64::new(0),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    frames: [const { AtomicU64::new(0) }; MAX_FRAMES],
};

static BUCKETS: [Bucket; CAPACITY] = [NEW_BUCKET; CAPACITY];
/// Claimed bucket indices + 1, in order of first claim, so readers visit
/// only the entries ever used (the table itself is spread by hash). A
/// reused entry keeps its place here.
static PUBLISHED: [AtomicU32; CAPACITY] = [const { AtomicU32::new(0) }; CAPACITY];
static PUBLISHED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Entries reused, and the sampled allocations and bytes they had counted.
static RECLAIMED_BUCKETS: AtomicU64 = AtomicU64::new(0);
static RECLAIMED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static RECLAIMED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The key of a bucket: frames, size, label set id.
#[derive(Clone, Copy)]
struct Key<'a> {
    frames: &'a [u64],
    size: usize,
    labels: u32,
}

fn hash_of(key: Key<'_>) -> u64 {
    let Key {
        frames,
        size,
        labels,
    } = key;
    let mut h = (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ frames.len() as u64
        ^ u64::from(labels) << 40;
    for &f in frames {
        h = (h.rotate_left(5) ^ f).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    h | 1
}

/// The bucket of (`frames`, `size`, `labels`), created if new, with one
/// sampled allocation counted in it; `None` when the table has no room (the
/// allocation is then not sampled). A caller that does not keep the block
/// after all gives the count back with [`cancel`].
pub fn intern(frames: &[u64], size: usize, labels: u32, interval: usize) -> Option<u32> {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let key = Key {
        frames,
        size,
        labels,
    };
    let h = hash_of(key);
    let home = (h as usize) % CAPACITY;
    let under_pressure = used() >= PRESSURE;
    // A dead entry passed on the way, to reuse under pressure.
    let mut dead = None;
    for probe in 0..MAX_PROBES {
        let i = (home + probe) % CAPACITY;
        let b = &BUCKETS[i];
        let state = b.state.load(Ordering::Acquire);
        match state & KIND {
            READY => {
                if b.count_if_key(state, h, key) {
                    return Some(i as u32);
                }
                if under_pressure && dead.is_none() && b.is_dead() {
                    dead = Some(i);
                }
            }
            EMPTY => {
                if let Some(d) = dead {
                    if let Some(i) = reuse(d, h, key, interval) {
                        return Some(i);
                    }
                }
                if b.state
                    .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    b.write(WRITING, h, key, interval);
                    let n = PUBLISHED_COUNT.fetch_add(1, Ordering::AcqRel);
                    PUBLISHED[n].store(i as u32 + 1, Ordering::Release);
                    return Some(i as u32);
                }
                // Lost the race for this entry: it may now hold our key.
                let state = b.state.load(Ordering::Acquire);
                if b.count_if_key(state, h, key) {
                    return Some(i as u32);
                }
            }
            _ => {}
        }
    }
    dead.and_then(|d| reuse(d, h, key, interval))
}

/// Retires the dead entry `i` (if it is still dead) and writes the new key
/// into it, with one allocation counted.
fn reuse(i: usize, h: u64, key: Key<'_>, interval: usize) -> Option<u32> {
    let b = &BUCKETS[i];
    let state = b.state.load(Ordering::Acquire);
    if state & KIND != READY {
        return None;
    }
    let frees = b.frees.load(Ordering::Acquire);
    // Only an entry whose every counted block was freed can be retired: no
    // free can then arrive, and the retired bit refuses new counts.
    b.allocs
        .compare_exchange(frees, frees | RETIRED, Ordering::AcqRel, Ordering::Acquire)
        .ok()?;
    if b.state.load(Ordering::Acquire) != state {
        // Reused by another thread since `state` was read: `frees` may be
        // the old key's and the allocations counted the new key's. Undo.
        b.allocs.fetch_and(!RETIRED, Ordering::AcqRel);
        return None;
    }
    RECLAIMED_BUCKETS.fetch_add(1, Ordering::Relaxed);
    RECLAIMED_ALLOCS.fetch_add(frees, Ordering::Relaxed);
    RECLAIMED_BYTES.fetch_add(
        frees.saturating_mul(b.size.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    let writing = ((state >> 2).wrapping_add(1) << 2) | WRITING;
    b.state.store(writing, Ordering::Relaxed);
    // Readers that see any of the new key's fields see `writing` too.
    std::sync::atomic::fence(Ordering::Release);
    b.write(writing, h, key, interval);
    Some(i as u32)
}

impl Bucket {
    fn matches(&self, h: u64, key: Key<'_>) -> bool {
        let Key {
            frames,
            size,
            labels,
        } = key;
        self.hash.load(Ordering::Relaxed) == h
            && self.size.load(Ordering::Relaxed) == size as u64
            && self.labels.load(Ordering::Relaxed) == labels
            && self.depth.load(Ordering::Relaxed) as usize == frames.len()
            && self
                .frames
                .iter()
                .zip(frames)
                .all(|(a, &b)| a.load(Ordering::Relaxed) == b)
    }

    /// Writes the key of an entry this thread holds in `writing` state,
    /// counts one allocation, and publishes it.
    fn write(&self, writing: u32, h: u64, key: Key<'_>, interval: usize) {
        let Key {
            frames,
            size,
            labels,
        } = key;
        self.hash.store(h, Ordering::Relaxed);
        self.size.store(size as u64, Ordering::Relaxed);
        self.labels.store(labels, Ordering::Relaxed);
        self.interval.store(interval as u64, Ordering::Relaxed);
        self.depth.store(frames.len() as u32, Ordering::Relaxed);
        for (slot, &f) in self.frames.iter().zip(frames) {
            slot.store(f, Ordering::Relaxed);
        }
        self.frees.store(0, Ordering::Relaxed);
        self.allocs.store(1, Ordering::Release);
        self.state
            .store((writing & !KIND) | READY, Ordering::Release);
    }

    /// Counts one allocation if the entry, read in `state`, holds the key
    /// `key` (hashed `h`) and is not retired. The key is compared
    /// before counting and the state after: an entry reused in between has
    /// a new generation, and the count is given back.
    fn count_if_key(&self, state: u32, h: u64, key: Key<'_>) -> bool {
        if state & KIND != READY || !self.matches(h, key) {
            return false;
        }
        let counted = self
            .allocs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a & RETIRED == 0).then_some(a + 1)
            })
            .is_ok();
        if !counted {
            return false;
        }
        // A count of a rewritten entry read its `allocs` (a release store
        // after the new generation), so this load sees the new generation.
        if self.state.load(Ordering::Acquire) != state {
            self.allocs.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Nothing live: every allocation counted has been freed.
    fn is_dead(&self) -> bool {
        let frees = self.frees.load(Ordering::Acquire);
        self.allocs.load(Ordering::Acquire) == frees
    }
}

/// Takes back the allocation [`intern`] counted in `bucket`, when the block
/// was not kept after all (no slot, no room in the large-block table, the
/// inner allocator refused). The count held the entry, so it is still ours.
pub fn cancel(bucket: u32) {
    BUCKETS[bucket as usize]
        .allocs
        .fetch_sub(1, Ordering::AcqRel);
}

/// Counts the free of a sampled allocation of `bucket`.
pub fn record_free(bucket: u32) {
    if let Some(b) = BUCKETS.get(bucket as usize) {
        b.frees.fetch_add(1, Ordering::AcqRel);
    }
}

/// A bucket as a snapshot reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRecord {
    /// Return addresses, innermost first (the allocator's own frames too).
    pub frames: Vec<u64>,
    /// The size of each allocation counted here.
    pub size: u64,
    /// The label set the allocations were made under (`crate::labels`).
    pub labels: u32,
    /// The sampling interval they were sampled at.
    pub interval: u64,
    /// Sampled allocations counted.
    pub allocs: u64,
    /// Of those, freed (at most `allocs`).
    pub frees: u64,
}

/// Entries reused for a new (stack, size) since the process started, and
/// the sampled allocations and bytes they had counted (missing from every
/// later snapshot's `alloc_*` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Entries reused.
    pub buckets: u64,
    /// Sampled allocations they had counted.
    pub allocs: u64,
    /// Bytes of those sampled allocations (not unsampled).
    pub bytes: u64,
}

/// See [`Reclaimed`].
pub fn reclaimed() -> Reclaimed {
    Reclaimed {
        buckets: RECLAIMED_BUCKETS.load(Ordering::Relaxed),
        allocs: RECLAIMED_ALLOCS.load(Ordering::Relaxed),
        bytes: RECLAIMED_BYTES.load(Ordering::Relaxed),
    }
}

/// Every bucket with at least one sampled allocation. Frees are read before
/// allocations (and clamped), so `frees <= allocs` in every record even
/// while threads allocate; an entry being written or reused meanwhile is
/// skipped (it had nothing live).
pub fn records() -> Vec<BucketRecord> {
    let mut out = Vec::new();
    for published in &PUBLISHED[..used()] {
        let Some(i) = published.load(Ordering::Acquire).checked_sub(1) else {
            continue; // claimed a moment ago, index not stored yet
        };
        let b = &BUCKETS[i as usize];
        let before = b.state.load(Ordering::Acquire);
        if before & KIND != READY {
            continue;
        }
        let frees = b.frees.load(Ordering::Acquire);
        let allocs = b.allocs.load(Ordering::Acquire);
        if allocs == 0 || allocs & RETIRED != 0 {
            continue;
        }
        let depth = (b.depth.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        let record = BucketRecord {
            frames: b.frames[..depth]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            size: b.size.load(Ordering::Relaxed),
            labels: b.labels.load(Ordering::Relaxed),
            interval: b.interval.load(Ordering::Relaxed),
            allocs,
            frees: frees.min(allocs),
        };
        // The key was read between two equal generations: not torn. (The
        // fence orders the relaxed reads of the key before the re-check.)
        std::sync::atomic::fence(Ordering::Acquire);
        if b.state.load(Ordering::Relaxed) == before {
            out.push(record);
        }
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
            let allocs = b.allocs.load(Ordering::Acquire);
            if allocs & RETIRED != 0 {
                0
            } else {
                allocs.saturating_sub(frees)
            }
        })
        .sum()
}

/// Entries ever claimed (in use or reusable).
pub fn used() -> usize {
    PUBLISHED_COUNT.load(Ordering::Acquire).min(CAPACITY)
}
