//! The CPU pool's handler/retire pair under loom: a handler thread
//! announces itself (`ACTIVE += 1`), loads `POOL`, reads the pool if it got
//! one, and leaves; the retirer swaps `POOL` to null, spins until
//! `ACTIVE == 0` and frees the pool (a write to a `loom::cell::UnsafeCell`,
//! so loom reports a read of the pool not ordered before the free as a
//! causality violation).
//!
//! Loom regards `SeqCst` *accesses* as `AcqRel` (its README, "Unsupported
//! features"; tokio-rs/loom#180) but implements `fence(SeqCst)`. So loom
//! can show the old orderings failing and the fence form passing, but it
//! reports the code's `SeqCst`-access form as failing too: a false alarm,
//! which the RC11 checker (`rc11.rs`) settles.

use std::sync::atomic::Ordering::{self, *};

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicUsize};
use loom::sync::Arc;

const BUILT: u64 = 1;
const FREED: u64 = 2;

#[derive(Clone, Copy)]
pub struct Orderings {
    pub announce: Ordering,
    pub reader_fence: bool,
    pub load: Ordering,
    pub leave: Ordering,
    pub swap: Ordering,
    pub retirer_fence: bool,
    pub wait: Ordering,
}

pub const NOW: Orderings = Orderings {
    announce: SeqCst,
    reader_fence: false,
    load: SeqCst,
    leave: SeqCst,
    swap: SeqCst,
    retirer_fence: false,
    wait: SeqCst,
};

pub const BEFORE: Orderings = Orderings {
    load: Acquire,
    swap: AcqRel,
    ..NOW
};

pub const FENCES: Orderings = Orderings {
    announce: Relaxed,
    reader_fence: true,
    load: Acquire,
    leave: Release,
    swap: AcqRel,
    retirer_fence: true,
    wait: Acquire,
};

pub const READER_FENCE_ONLY: Orderings = Orderings {
    retirer_fence: false,
    ..FENCES
};

struct Shared {
    active: AtomicUsize,
    /// 1: the pool; 0: null.
    pool: AtomicUsize,
    memory: UnsafeCell<u64>,
}

/// Explores every execution loom knows of; `Err` with loom's message if one
/// uses the pool after it is freed. Also returns how many executions ran,
/// and in how many the handler used the pool (that the retirer then freed).
pub fn check(o: Orderings) -> (Result<(), String>, usize, usize) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static USED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    RUNS.store(0, Relaxed);
    USED.store(0, Relaxed);
    // A thread of its own: loom's state is thread-local, and a failing
    // model ends in a panic.
    let result = std::thread::spawn(move || {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = None;
        builder.check(move || {
            RUNS.fetch_add(1, Relaxed);
            let shared = Arc::new(Shared {
                active: AtomicUsize::new(0),
                pool: AtomicUsize::new(1),
                memory: UnsafeCell::new(BUILT),
            });
            let s = shared.clone();
            let handler = loom::thread::spawn(move || {
                s.active.fetch_add(1, o.announce);
                if o.reader_fence {
                    fence(SeqCst);
                }
                if s.pool.load(o.load) == 1 {
                    // SAFETY: loom checks this access against the free.
                    let value = s.memory.with(|p| unsafe { *p });
                    assert_ne!(value, FREED, "the handler read a freed pool");
                    USED.fetch_add(1, Relaxed);
                }
                s.active.fetch_sub(1, o.leave);
            });
            shared.pool.swap(0, o.swap);
            if o.retirer_fence {
                fence(SeqCst);
            }
            while shared.active.load(o.wait) != 0 {
                loom::thread::yield_now();
            }
            // SAFETY: loom checks this access against the handler's.
            shared.memory.with_mut(|p| unsafe { *p = FREED });
            handler.join().unwrap();
        });
    })
    .join();
    let (runs, used) = (RUNS.load(Relaxed), USED.load(Relaxed));
    match result {
        Ok(()) => (Ok(()), runs, used),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            (Err(message), runs, used)
        }
    }
}
