//! A table of distinct call stacks with their summed values.
//!
//! Profiles with a million samples often have a million distinct stacks, so
//! the table avoids an allocation per stack: frames live in one arena, and a
//! raw hash table (hashbrown's `HashTable`) maps a stack's hash to its entry.
//! Tables are sharded by hash so the workers' tables merge in parallel.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use rayon::prelude::*;
use rustc_hash::FxBuildHasher;

/// One distinct stack: `frames[start..start + len]` of its table, root first.
#[derive(Clone, Copy, Debug)]
pub struct StackEntry {
    start: usize,
    len: u32,
    hash: u64,
    /// Net value (profiles minus base).
    pub value: i64,
    /// The base's contribution, positive (zero without a base).
    pub base: i64,
}

impl StackEntry {
    /// [`hash_stack`] of its frames.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

#[derive(Default)]
#[allow(clippy::len_without_is_empty)]
pub struct StackTable {
    /// Each entry's hash beside its index: a probe compares hashes
    /// without reaching into `entries` (a cache miss of its own).
    index: HashTable<(u64, u32)>,
    entries: Vec<StackEntry>,
    frames: Vec<u32>,
}

pub fn hash_stack(stack: &[u32]) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write_usize(stack.len());
    for &f in stack {
        h.write_u32(f);
    }
    h.finish()
}

impl StackTable {
    /// A table expecting about `stacks` distinct stacks of `frames` frames in
    /// all. Reserving generously costs address space only: pages are touched
    /// when written, and growth never has to copy.
    pub fn with_capacity(stacks: usize, frames: usize) -> StackTable {
        StackTable {
            index: HashTable::new(),
            entries: Vec::with_capacity(stacks),
            frames: Vec::with_capacity(frames),
        }
    }

    /// A table that will hold about `stacks` distinct stacks of `frames`
    /// frames in all: its index too is sized for them at once, sparing the
    /// rehashes of growth.
    pub fn with_expected(stacks: usize, frames: usize) -> StackTable {
        StackTable {
            index: HashTable::with_capacity(stacks),
            entries: Vec::with_capacity(stacks),
            frames: Vec::with_capacity(frames),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds `value` (and `base`) to `stack`, inserting it if new.
    #[inline]
    pub fn add(&mut self, stack: &[u32], hash: u64, value: i64, base: i64) {
        let (entries, frames) = (&mut self.entries, &mut self.frames);
        let found = self.index.find(hash, |&(h, i)| {
            h == hash && {
                let e = &entries[i as usize];
                &frames[e.start..e.start + e.len as usize] == stack
            }
        });
        if let Some(&(_, i)) = found {
            let e = &mut entries[i as usize];
            e.value = e.value.wrapping_add(value);
            e.base = e.base.wrapping_add(base);
            return;
        }
        let i = u32::try_from(entries.len())
            .expect("fewer than 2^32 distinct stacks: bounded by input size");
        entries.push(StackEntry {
            start: frames.len(),
            len: stack.len() as u32,
            hash,
            value,
            base,
        });
        frames.extend_from_slice(stack);
        self.index.insert_unique(hash, (hash, i), |&(h, _)| h);
    }

    /// Adds every stack of `other`.
    pub fn merge(&mut self, other: StackTable) {
        for e in &other.entries {
            self.add(other.frames(e), e.hash, e.value, e.base);
        }
    }

    pub fn frames(&self, entry: &StackEntry) -> &[u32] {
        &self.frames[entry.start..entry.start + entry.len as usize]
    }

    pub fn entries(&self) -> &[StackEntry] {
        &self.entries
    }
}

/// Stack tables split by hash, so that merging is parallel per shard.
pub const SHARDS: usize = 64;

#[inline]
pub fn shard_of(hash: u64) -> usize {
    // The table uses the low bits; shard by the high ones.
    (hash >> 58) as usize
}

/// Merges several sets of sharded tables (shard `i` of each set holds the
/// same hashes) into one set, shard by shard in parallel.
pub fn merge_sharded(sets: Vec<Vec<StackTable>>) -> Vec<StackTable> {
    let mut by_shard: Vec<Vec<StackTable>> = (0..SHARDS).map(|_| Vec::new()).collect();
    for set in sets {
        for (shard, table) in by_shard.iter_mut().zip(set) {
            shard.push(table);
        }
    }
    by_shard
        .into_par_iter()
        .map(|tables| {
            let mut tables = tables.into_iter();
            let mut merged = tables.next().unwrap_or_default();
            for table in tables {
                if merged.len() < table.len() {
                    // Insert the smaller table into the larger one.
                    let smaller = std::mem::replace(&mut merged, table);
                    merged.merge(smaller);
                } else {
                    merged.merge(table);
                }
            }
            merged
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_stacks_sum_and_distinct_stacks_stay_apart() {
        let mut t = StackTable::default();
        for (stack, v) in [
            (&[1, 2, 3][..], 5),
            (&[1, 2], 1),
            (&[1, 2, 3], 7),
            (&[3, 2, 1], 2),
        ] {
            t.add(stack, hash_stack(stack), v, 0);
        }
        assert_eq!(t.len(), 3);
        let mut other = StackTable::default();
        other.add(&[1, 2], hash_stack(&[1, 2]), 10, 4);
        t.merge(other);
        let mut got: Vec<(Vec<u32>, i64, i64)> = t
            .entries()
            .iter()
            .map(|e| (t.frames(e).to_vec(), e.value, e.base))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (vec![1, 2], 11, 4),
                (vec![1, 2, 3], 12, 0),
                (vec![3, 2, 1], 2, 0)
            ]
        );
    }
}
