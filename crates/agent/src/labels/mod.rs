//! Labels: say which request, endpoint, tenant or job CPU and heap samples
//! belong to, across `await` points.
//!
//! On a work-stealing runtime every worker thread runs every endpoint, so a
//! thread says nothing about what it was doing. A *label set* (`endpoint =
//! /checkout`, `job = reindex`) installed around a piece of work is recorded
//! with every CPU sample taken while it runs and with every sampled
//! allocation it makes; profiles carry it as pprof sample labels, so `go
//! tool pprof -tagfocus endpoint=/checkout` and `-tags` work, and a block
//! allocated under a label keeps it in every later heap snapshot, after the
//! request is over (what Go's heap profiles cannot do).
//!
//! ```
//! use firewatch_agent::labels::{self, LabelsExt};
//!
//! // A synchronous scope: nested scopes add to or override the outer set.
//! let total = labels::with(&[("endpoint", "/checkout")], || {
//!     labels::with(&[("step", "price")], || {
//!         assert_eq!(labels::current().get("endpoint"), Some("/checkout"));
//!         40 + 2
//!     })
//! });
//! assert_eq!(total, 42);
//! assert!(labels::current().is_empty());
//!
//! // A future: the set is installed for each `poll`, on whichever thread
//! // polls it, and the thread's previous set restored after.
//! async fn handle() -> u32 { 7 }
//! let labelled = handle().with_labels([("endpoint", "/checkout")]);
//! # drop(labelled);
//! ```
//!
//! **Spawned tasks** inherit nothing by themselves (the agent has no hook
//! into any executor): pass the set on with [`current`].
//!
//! ```ignore
//! let set = labels::current();
//! tokio::spawn(async move { work().await }.with_label_set(set));
//! tokio::task::spawn_blocking(move || labels::with_set(set, || blocking_work()));
//! ```
//!
//! **Cost**: a scope looks its set up in a lock-free table (hashing its
//! strings, no allocation once the set exists) and swaps a thread-local
//! integer in and out; the wrapper caches its set and pays two thread-local
//! accesses per `poll` (`docs/performance.md`, "Labels", has the figures).
//! The signal handler and the allocator only copy that integer.
//!
//! **Cardinality**: sets are interned for the life of the process (a sample
//! or a live block may refer to one at any time) and are capped at
//! [`MAX_SETS`] sets and [`MAX_BYTES`] of strings; past a cap, a scope
//! whose set is new gets the set `firewatch_labels=overflow` and
//! [`stats`]`().dropped` counts it. Label what has few values (an
//! endpoint, a tenant tier, a job kind), never user or request ids.
//!
//! Keys `thread` and `firewatch_window` are the agent's own CPU-profile
//! labels: a set's pair with such a key is left out of CPU profiles. Where
//! the agent is not part of the main executable (a `dlopen`ed library), CPU
//! samples carry no labels (the signal handler's thread-local read could
//! allocate there); heap samples still do.
//!
//! **Why this is safe where it runs** (the SIGPROF handler and
//! `GlobalAlloc` read the current set; see `ARCHITECTURE.md`, invariants):
//!
//! - Both read only the thread's id: a `const`-initialized atomic without
//!   `Drop`, so no lazy initialization, no destructor registration, no
//!   allocation, no lock, and it can be read during thread teardown. The
//!   handler reads it only where it is an initial-exec TLS load (the agent
//!   in the main executable; `cpu::sampler::signal`).
//! - Neither ever interns: interning is reached only from `with`, the
//!   wrapper and [`LabelSet`]'s constructors, in the service's own code.
//!   It allocates (a new set's strings) through the global allocator, which
//!   may sample that allocation: the sampled path reads the id of the set
//!   installed *outside* the scope being entered (the new id is installed
//!   after interning), and interning holds no lock (a compare-and-swap
//!   into a fixed table), so there is nothing to re-enter or deadlock on,
//!   also not in a child after `fork()`.
//! - Ids stay valid for ever: sets are never freed, so a sample or block
//!   recorded with an id can be resolved at any later capture; the caps
//!   bound the memory that costs.

mod future;
mod table;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

pub use future::{LabelsExt, WithLabels};
pub use table::{MAX_BYTES, MAX_SETS};

/// Key of the label a scope gets when its set could not be interned (a cap
/// was reached).
pub const OVERFLOW_KEY: &str = "firewatch_labels";
/// [`OVERFLOW_KEY`]'s value.
pub const OVERFLOW_VALUE: &str = "overflow";

/// Pairs merged on the stack before spilling to the heap.
const INLINE_PAIRS: usize = 8;

thread_local! {
    /// The id of the set installed on this thread (0: none).
    ///
    /// `const`-initialized and without `Drop`: reading it never initializes
    /// anything lazily nor registers a destructor, so the SIGPROF handler
    /// and `GlobalAlloc` may read it at any time, during thread teardown
    /// too. An atomic (relaxed: plain loads and stores) because a signal
    /// handler that interrupts this thread reads it.
    static CURRENT: AtomicU32 = const { AtomicU32::new(table::NONE) };
}

/// The id of the set installed on the calling thread. Allocates nothing,
/// takes no lock, cannot panic: safe in a signal handler (in the main
/// executable: see `cpu::sampler::signal` for a `dlopen`ed library) and
/// inside `GlobalAlloc`.
#[inline(always)]
pub(crate) fn current_id() -> u32 {
    CURRENT.try_with(|c| c.load(Relaxed)).unwrap_or(table::NONE)
}

/// Installs `id` on the calling thread; returns the previous id.
#[inline(always)]
fn install(id: u32) -> u32 {
    CURRENT
        .try_with(|c| {
            let previous = c.load(Relaxed);
            c.store(id, Relaxed);
            previous
        })
        .unwrap_or(table::NONE)
}

/// Puts the previous set back when a scope ends, panicking or not.
struct Restore(u32);

impl Drop for Restore {
    #[inline(always)]
    fn drop(&mut self) {
        install(self.0);
    }
}

/// An interned, immutable label set: a small `Copy` handle (pass it to
/// spawned tasks and threads). Pairs are sorted by key, keys unique.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelSet(u32);

impl LabelSet {
    /// The set without labels.
    pub const EMPTY: LabelSet = LabelSet(table::NONE);

    /// Interns `pairs` as a set of its own (later pairs override earlier
    /// ones with the same key). Over a cap, the overflow set.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        LabelSet(merged(table::NONE, &borrowed))
    }

    /// This set with `pairs` added (overriding equal keys).
    pub fn with<K: AsRef<str>, V: AsRef<str>>(
        self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        LabelSet(merged(self.0, &borrowed))
    }

    /// The value of `key` in this set.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        let pairs = self.pairs();
        pairs
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| pairs[i].1)
    }

    /// The pairs, sorted by key. Interned sets live as long as the process.
    pub fn pairs(&self) -> &'static [(&'static str, &'static str)] {
        table::pairs(self.0)
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0 == table::NONE
    }

    /// Whether this is the set given when a cap was reached.
    pub fn is_overflow(&self) -> bool {
        self.0 == table::OVERFLOW
    }

    /// The set's id as samples record it.
    pub(crate) fn id(&self) -> u32 {
        self.0
    }

    /// The set recorded as `id` (an id read from a sample).
    pub(crate) fn from_id(id: u32) -> LabelSet {
        LabelSet(id)
    }
}

impl Default for LabelSet {
    fn default() -> Self {
        LabelSet::EMPTY
    }
}

impl std::fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.pairs().iter().copied()).finish()
    }
}

/// The set installed on the calling thread (by [`with`], [`with_set`] or a
/// labelled future being polled): what to hand to a spawned task.
pub fn current() -> LabelSet {
    LabelSet(current_id())
}

/// Runs `f` with `pairs` added to the calling thread's current set (a pair
/// overrides an outer pair with the same key), then restores the set.
pub fn with<R>(pairs: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let id = merged(current_id(), pairs);
    let _restore = Restore(install(id));
    f()
}

/// Runs `f` with exactly `set` installed (not merged with the current
/// one), then restores the set: for work handed to another thread.
pub fn with_set<R>(set: LabelSet, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(install(set.0));
    f()
}

/// What the label tables hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LabelStats {
    /// Distinct label sets interned (at most [`MAX_SETS`]).
    pub sets: usize,
    /// Bytes of their keys and values, estimated (at most [`MAX_BYTES`]).
    pub bytes: usize,
    /// Scopes that got the overflow set because a cap was reached.
    pub dropped: u64,
}

/// Counts of the label tables.
pub fn stats() -> LabelStats {
    let (sets, bytes, dropped) = table::counts();
    LabelStats {
        sets,
        bytes,
        dropped,
    }
}

/// What a profile's comments say when scopes got the overflow set.
pub(crate) fn overflow_comment() -> Option<String> {
    let s = stats();
    (s.dropped > 0).then(|| {
        format!(
            "firewatch: labels_dropped: {} label scopes got {OVERFLOW_KEY}={OVERFLOW_VALUE} \
             ({} sets, {} bytes interned; caps {MAX_SETS} sets, {MAX_BYTES} bytes)",
            s.dropped, s.sets, s.bytes
        )
    })
}

/// The id of set `outer` with `pairs` added: later pairs override earlier
/// ones and the outer set's. Merged on the stack (no allocation) up to
/// [`INLINE_PAIRS`] pairs; looking up an existing set allocates nothing.
fn merged(outer: u32, pairs: &[(&str, &str)]) -> u32 {
    if pairs.is_empty() {
        return outer;
    }
    // The common case, a top-level scope with sorted, distinct keys (one
    // pair always is): looked up as given, nothing copied.
    if outer == table::NONE && pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        return table::intern(pairs);
    }
    let outer_pairs = table::pairs(outer);
    let mut inline = [("", ""); INLINE_PAIRS];
    let mut len = 0;
    let mut spill: Vec<(&str, &str)> = Vec::new();
    for &(k, v) in outer_pairs.iter().chain(pairs) {
        let slice: &mut [(&str, &str)] = if spill.is_empty() {
            &mut inline[..len]
        } else {
            &mut spill
        };
        if let Some(slot) = slice.iter_mut().find(|(key, _)| *key == k) {
            slot.1 = v;
        } else if spill.is_empty() && len < INLINE_PAIRS {
            inline[len] = (k, v);
            len += 1;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline[..len]);
            }
            spill.push((k, v));
        }
    }
    let all: &mut [(&str, &str)] = if spill.is_empty() {
        &mut inline[..len]
    } else {
        &mut spill
    };
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
    table::intern(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_add_and_override_then_restore() {
        assert!(current().is_empty());
        with(&[("endpoint", "/a"), ("tenant", "t1")], || {
            let outer = current();
            assert_eq!(outer.pairs(), &[("endpoint", "/a"), ("tenant", "t1")]);
            with(&[("step", "db"), ("endpoint", "/b")], || {
                let inner = current();
                assert_eq!(
                    inner.pairs(),
                    &[("endpoint", "/b"), ("step", "db"), ("tenant", "t1")]
                );
                // Later pairs of one scope override earlier ones.
                with(&[("x", "1"), ("x", "2")], || {
                    assert_eq!(current().get("x"), Some("2"));
                });
            });
            assert_eq!(current(), outer);
            // A panic inside a scope still restores the outer set.
            let caught = std::panic::catch_unwind(|| with(&[("p", "1")], || panic!("boom")));
            assert!(caught.is_err());
            assert_eq!(current(), outer);
            // `with_set` installs exactly the set given.
            with_set(LabelSet::EMPTY, || assert!(current().is_empty()));
            assert_eq!(current(), outer);
        });
        assert!(current().is_empty());
    }

    #[test]
    fn equal_sets_are_one_set_whatever_the_order_or_the_string_types() {
        let owned = String::from("/orders");
        let a = LabelSet::new([("endpoint", owned.as_str()), ("tier", "gold")]);
        let b = LabelSet::new([
            (String::from("tier"), String::from("gold")),
            ("endpoint".into(), owned),
        ]);
        assert_eq!(a, b);
        assert_eq!(a.id(), b.id());
        let c = LabelSet::EMPTY
            .with([("tier", "gold")])
            .with([("endpoint", "/orders")]);
        assert_eq!(a, c);
        assert_ne!(a, LabelSet::new([("endpoint", "/orders")]));
        assert_eq!(LabelSet::new(Vec::<(&str, &str)>::new()), LabelSet::EMPTY);
        // Interned strings outlive their source.
        assert_eq!(a.get("endpoint"), Some("/orders"));
        assert_eq!(
            format!("{a:?}"),
            r#"{"endpoint": "/orders", "tier": "gold"}"#
        );
    }

    #[test]
    fn many_pairs_spill_past_the_stack_buffer() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        with(&pairs[..10], || {
            with(&pairs[5..], || {
                let set = current();
                assert_eq!(set.pairs().len(), 40);
                assert!(set.pairs().windows(2).all(|w| w[0].0 < w[1].0));
            })
        });
    }

    #[test]
    fn interning_from_many_threads_gives_one_id_per_set() {
        let ids: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|i| LabelSet::new([("race", format!("{}", i % 50))]).id())
                            .collect::<Vec<u32>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &ids[1..] {
            assert_eq!(other, &ids[0]);
        }
        let mut distinct = ids[0].clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 50);
    }
}
