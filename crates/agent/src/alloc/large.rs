//! Sampled *large* blocks: those too big (or too aligned) for a region slot.
//!
//! They stay in the inner allocator, so big buffers keep its behaviour
//! (huge pages, in-place `mremap` growth), and are remembered in a
//! lock-free open-addressing table keyed by address. Only frees of large
//! layouts ever look here, and first at a 4096-entry counting filter: a
//! zero counter proves the address was never inserted, so the common case
//! costs one load from a 16 KiB array.
//!
//! A removed key becomes a tombstone (reused by later inserts); lookups stop
//! at an empty key or after [`MAX_PROBES`]. An insert that finds no room
//! within [`MAX_PROBES`] fails and the block is simply not sampled.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Entries in the table: the most sampled large blocks alive at once.
pub const CAPACITY: usize = 1 << 16;
const MAX_PROBES: usize = 64;
const FILTER: usize = 4096;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;

static KEYS: [AtomicUsize; CAPACITY] = [const { AtomicUsize::new(EMPTY) }; CAPACITY];
static BUCKETS: [AtomicU32; CAPACITY] = [const { AtomicU32::new(0) }; CAPACITY];
static FILTER_COUNTS: [AtomicU32; FILTER] = [const { AtomicU32::new(0) }; FILTER];

#[inline(always)]
fn hash(ptr: usize) -> usize {
    ((ptr >> 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize
}

#[inline(always)]
fn filter_index(ptr: usize) -> usize {
    hash(ptr) >> (usize::BITS - 12)
}

/// Whether `ptr` may be in the table: one load, false for almost every
/// unsampled large free.
#[inline(always)]
pub fn may_contain(ptr: *mut u8) -> bool {
    FILTER_COUNTS[filter_index(ptr as usize)].load(Ordering::Relaxed) != 0
}

/// Remembers that the block at `ptr` belongs to `bucket`. `false` if the
/// table has no room near `ptr`'s home.
pub fn insert(ptr: *mut u8, bucket: u32) -> bool {
    let key = ptr as usize;
    let home = hash(key) % CAPACITY;
    let filter = &FILTER_COUNTS[filter_index(key)];
    filter.fetch_add(1, Ordering::Relaxed);
    for probe in 0..MAX_PROBES {
        let i = (home + probe) % CAPACITY;
        let current = KEYS[i].load(Ordering::Relaxed);
        if (current == EMPTY || current == TOMBSTONE)
            && KEYS[i]
                .compare_exchange(current, key, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // The block's free happens after the allocation returns, so it
            // sees this store.
            BUCKETS[i].store(bucket, Ordering::Release);
            return true;
        }
    }
    filter.fetch_sub(1, Ordering::Relaxed);
    false
}

/// Forgets `ptr` and returns its bucket, if it was inserted.
pub fn remove(ptr: *mut u8) -> Option<u32> {
    let key = ptr as usize;
    let home = hash(key) % CAPACITY;
    for probe in 0..MAX_PROBES {
        let i = (home + probe) % CAPACITY;
        match KEYS[i].load(Ordering::Acquire) {
            EMPTY => return None,
            k if k == key => {
                let bucket = BUCKETS[i].load(Ordering::Acquire);
                KEYS[i].store(TOMBSTONE, Ordering::Release);
                FILTER_COUNTS[filter_index(key)].fetch_sub(1, Ordering::Relaxed);
                return Some(bucket);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_addresses_are_found_once_and_others_never() {
        // Addresses no allocator hands out, so the allocator under test
        // (the test harness may use it) cannot collide with them: near the
        // top of the user address space.
        let base: usize = if cfg!(target_pointer_width = "64") {
            0x7fff_0000_0000_u64 as usize
        } else {
            0xf000_0000_u32 as usize
        };
        let ptrs: Vec<*mut u8> = (0..1000).map(|i| (base + i * 4096) as *mut u8).collect();
        for (i, &p) in ptrs.iter().enumerate() {
            assert!(insert(p, i as u32));
        }
        for (i, &p) in ptrs.iter().enumerate() {
            assert!(may_contain(p));
            assert_eq!(remove(p), Some(i as u32));
            assert_eq!(remove(p), None);
        }
        assert_eq!(remove((base + 4096 * 5000) as *mut u8), None);
    }
}
