//! The interned label sets: a fixed, lock-free open-addressing table whose
//! slot index is the set's id.
//!
//! Why this shape:
//!
//! - **The id is a `u32` the signal handler and the allocator can copy**
//!   without touching the set (they only read the thread's current id); the
//!   profile builder turns ids back into strings later, off the hot paths.
//! - **Sets are never freed.** A sample or a sampled block may name an id
//!   for as long as the process lives (a leaked block keeps its labels), so
//!   an entry, once published, stays: keys and values are leaked `&'static
//!   str`. Memory is bounded instead by a cap on sets ([`MAX_SETS`]) and on
//!   their bytes ([`MAX_BYTES`]); past either, a new set is not interned and
//!   the scope gets the [`OVERFLOW`] set (counted in `dropped`).
//! - **No lock.** A new set is allocated, then published with one
//!   compare-and-swap into an empty slot of its probe chain; a thread that
//!   loses the race to an equal set frees its copy and takes the winner's.
//!   Nothing is ever held, so a `fork()` in the middle of an insert leaves
//!   the child a table that is whole (at worst one unpublished allocation
//!   leaked), a signal handler could even read it, and an allocation made
//!   while interning (this module allocates the new set through the global
//!   allocator, which may be the sampling one) can neither deadlock nor
//!   recurse: the allocator reads the thread's current id and nothing here.
//!
//! Capacity: [`SLOTS`] slots for at most [`MAX_SETS`] sets keep the load at
//! or under one half, so a probe chain always ends at an empty slot.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Id of the empty set: no labels.
pub(crate) const NONE: u32 = 0;
/// Id of the set that stands for sets not interned (over a cap).
pub(crate) const OVERFLOW: u32 = 1;
/// Slots of the table (ids 0 and 1 are the two fixed sets above).
pub(crate) const SLOTS: usize = 8192;
/// Most distinct label sets interned in a process's life.
pub const MAX_SETS: usize = 4096;
/// Most bytes of keys and values interned (all sets together).
pub const MAX_BYTES: usize = 1 << 20;
/// Bytes counted per pair besides its strings (two `&str`, the slice).
const PAIR_OVERHEAD: usize = 32;

/// The overflow set's only label.
pub(crate) const OVERFLOW_PAIRS: &[(&str, &str)] = &[(super::OVERFLOW_KEY, super::OVERFLOW_VALUE)];

/// One interned set: pairs sorted by key, keys unique.
pub(crate) struct Entry {
    hash: u64,
    pairs: &'static [(&'static str, &'static str)],
}

static TABLE: [AtomicPtr<Entry>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
static SETS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The pairs of set `id` (empty for [`NONE`] and for an id never issued).
pub(crate) fn pairs(id: u32) -> &'static [(&'static str, &'static str)] {
    match id {
        NONE => &[],
        OVERFLOW => OVERFLOW_PAIRS,
        _ => match TABLE.get(id as usize) {
            // SAFETY: a published entry is never freed or changed (see the
            // module doc); the acquire load sees it fully written.
            Some(slot) => unsafe { slot.load(Ordering::Acquire).as_ref() }.map_or(&[], |e| e.pairs),
            None => &[],
        },
    }
}

/// Sets interned, bytes they take (estimated), and scopes that got the
/// overflow set because a cap was reached.
pub(crate) fn counts() -> (usize, usize, u64) {
    (
        SETS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517C_C1B7_2722_0A95)
}

fn hash_str(mut h: u64, s: &str) -> u64 {
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    mix(mix(h, u64::from_le_bytes(last)), s.len() as u64)
}

/// Hash of sorted, unique pairs.
fn hash_of(pairs: &[(&str, &str)]) -> u64 {
    let mut h = pairs.len() as u64;
    for (k, v) in pairs {
        h = hash_str(hash_str(h, k), v);
    }
    h
}

/// The id of the set `pairs` (sorted by key, keys unique), interned if new;
/// [`OVERFLOW`] (counted) if it is new and a cap is reached.
pub(crate) fn intern(pairs: &[(&str, &str)]) -> u32 {
    if pairs.is_empty() {
        return NONE;
    }
    if pairs == OVERFLOW_PAIRS {
        return OVERFLOW;
    }
    let hash = hash_of(pairs);
    let home = 2 + (hash as usize) % (SLOTS - 2);
    let mut new: *mut Entry = std::ptr::null_mut();
    let mut reserved = 0usize;
    for probe in 0..SLOTS - 2 {
        let i = 2 + (home - 2 + probe) % (SLOTS - 2);
        let mut seen = TABLE[i].load(Ordering::Acquire);
        if seen.is_null() {
            if new.is_null() {
                let Some((entry, bytes)) = make_entry(hash, pairs) else {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                    return OVERFLOW;
                };
                new = entry;
                reserved = bytes;
            }
            match TABLE[i].compare_exchange(
                std::ptr::null_mut(),
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return i as u32,
                Err(winner) => seen = winner,
            }
        }
        // SAFETY: published entries are never freed or changed.
        let entry = unsafe { &*seen };
        if entry.hash == hash && entry.pairs == pairs {
            if !new.is_null() {
                discard(new, reserved);
            }
            return i as u32;
        }
    }
    // Unreachable while MAX_SETS ≤ SLOTS / 2 (a chain ends at an empty
    // slot); counted as an overflow rather than trusted.
    if !new.is_null() {
        discard(new, reserved);
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
    OVERFLOW
}

/// A new entry for `pairs`, with its set and bytes reserved against the
/// caps; `None` if a cap is reached.
fn make_entry(hash: u64, pairs: &[(&str, &str)]) -> Option<(*mut Entry, usize)> {
    let bytes: usize = pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + PAIR_OVERHEAD)
        .sum();
    if SETS.fetch_add(1, Ordering::Relaxed) >= MAX_SETS {
        SETS.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    if BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_BYTES {
        BYTES.fetch_sub(bytes, Ordering::Relaxed);
        SETS.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    let owned: Vec<(&'static str, &'static str)> = pairs
        .iter()
        .map(|(k, v)| {
            let k: &'static str = Box::leak(Box::<str>::from(*k));
            let v: &'static str = Box::leak(Box::<str>::from(*v));
            (k, v)
        })
        .collect();
    let entry = Box::new(Entry {
        hash,
        pairs: Box::leak(owned.into_boxed_slice()),
    });
    Some((Box::into_raw(entry), bytes))
}

/// Frees an entry that was never published and gives its reservation back.
fn discard(entry: *mut Entry, bytes: usize) {
    // SAFETY: `entry` came from `Box::into_raw` in `make_entry` and was not
    // published (the compare-and-swap that would have published it failed),
    // so no one else can see it.
    let entry = unsafe { Box::from_raw(entry) };
    let pairs: *mut [(&'static str, &'static str)] = entry.pairs as *const _ as *mut _;
    for (k, v) in entry.pairs {
        // SAFETY: each string was leaked from a `Box<str>` for this entry alone.
        unsafe {
            drop(Box::from_raw(*k as *const str as *mut str));
            drop(Box::from_raw(*v as *const str as *mut str));
        }
    }
    // SAFETY: the slice was leaked from a boxed slice for this entry alone.
    drop(unsafe { Box::from_raw(pairs) });
    SETS.fetch_sub(1, Ordering::Relaxed);
    BYTES.fetch_sub(bytes, Ordering::Relaxed);
}
