//! Per-thread byte countdowns: when to sample, and exact in-use accounting.
//!
//! Each thread keeps two plain counters in a `const`-initialized
//! thread-local without a destructor (so reading it never registers one and
//! works even while the thread's other thread-locals are being destroyed):
//!
//! - `alloc_left`: bytes this thread may allocate before the next *event*,
//!   which is the sooner of the next sample point (an exponential draw with
//!   the interval as mean, as Go and jemalloc do) and the next accounting
//!   fold ([`FOLD_BYTES`]). The fast path subtracts the size and branches.
//! - `free_left`: bytes this thread may free before its freed bytes are
//!   folded into the process-wide counter.
//!
//! The process-wide counters are therefore exact up to what threads have
//! not folded yet: at most [`FOLD_BYTES`] allocated and [`FOLD_BYTES`] freed
//! per live thread. A thread folds what it holds when it exits (a second
//! thread-local, with a destructor, registered from the slow path), and after
//! that every allocation or free of the exiting thread folds at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bytes a thread allocates (or frees) between two folds into the
/// process-wide counters: bounds the accounting error per thread.
pub const FOLD_BYTES: i64 = 256 << 10;

/// Draws are capped at this many intervals: the cap changes the sampling
/// probability by less than e^-16 and keeps one thread from going unsampled
/// for long.
const MAX_DRAW_INTERVALS: f64 = 16.0;

/// Bytes ever allocated / freed through the sampling allocator, folded.
pub static ALLOCATED: AtomicU64 = AtomicU64::new(0);
pub static FREED: AtomicU64 = AtomicU64::new(0);
/// Seeds per-thread generators (mixed with the thread's state address).
static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

pub struct ThreadCountdown {
    /// Bytes until the next event (sample or fold).
    alloc_left: Cell<i64>,
    /// `alloc_left` as it was set at the last event: `armed - left` is what
    /// was allocated since.
    armed: Cell<i64>,
    /// Bytes until the next sample point (≥ `alloc_left`).
    sample_left: Cell<i64>,
    /// Freed bytes until the next fold.
    free_left: Cell<i64>,
    /// `free_left` as it was set at the last fold.
    free_armed: Cell<i64>,
    /// xorshift64* state; 0 until the thread's first event.
    rng: Cell<u64>,
    /// Set while this thread is inside the allocator's slow path.
    pub busy: Cell<bool>,
    /// The thread has folded its counters at exit: fold everything at once.
    exited: Cell<bool>,
    /// This thread's stack (top 0 until looked up), bounds the walk.
    pub stack_bottom: Cell<usize>,
    pub stack_top: Cell<usize>,
}

thread_local! {
    pub static COUNTDOWN: ThreadCountdown = const {
        ThreadCountdown {
            alloc_left: Cell::new(0),
            armed: Cell::new(0),
            sample_left: Cell::new(0),
            free_left: Cell::new(0),
            free_armed: Cell::new(0),
            rng: Cell::new(0),
            busy: Cell::new(false),
            exited: Cell::new(false),
            stack_bottom: Cell::new(0),
            stack_top: Cell::new(0),
        }
    };
    /// Its destructor folds the thread's counters when the thread exits.
    static EXIT_FOLD: ExitFold = const { ExitFold };
}

struct ExitFold;

impl Drop for ExitFold {
    fn drop(&mut self) {
        let _ = COUNTDOWN.try_with(|c| {
            // Saturating, here and in the other cold paths: a single request
            // near isize::MAX bytes (`try_reserve_exact`) must not overflow,
            // which panics inside `GlobalAlloc` in checked builds (an abort).
            let allocated = c.armed.get().saturating_sub(c.alloc_left.get());
            ALLOCATED.fetch_add(allocated.max(0) as u64, Relaxed);
            let freed = c.free_armed.get().saturating_sub(c.free_left.get());
            FREED.fetch_add(freed.max(0) as u64, Relaxed);
            c.exited.set(true);
            c.alloc_left.set(0);
            c.armed.set(0);
            c.free_left.set(0);
            c.free_armed.set(0);
        });
    }
}

/// The unsampled allocation path: `true` when an event is due (the caller
/// then takes [`on_event`]). A thread-local subtraction and a branch.
#[inline(always)]
pub fn take(size: usize) -> bool {
    COUNTDOWN.with(|c| {
        let left = c.alloc_left.get() - size as i64;
        c.alloc_left.set(left);
        left < 0
    })
}

/// The unsampled free path: a thread-local subtraction and a branch, plus a
/// fold of [`FOLD_BYTES`] into [`FREED`] now and then.
#[inline(always)]
pub fn give_back(size: usize) {
    let fold = COUNTDOWN.with(|c| {
        let left = c.free_left.get() - size as i64;
        c.free_left.set(left);
        left < 0
    });
    if fold {
        fold_freed();
    }
}

/// Takes back what [`take`] counted for an allocation the inner allocator
/// refused: a failed request (`try_reserve` of a hostile length, say) must
/// not count as memory in use. `event` says whether `take` led to an event,
/// which has already folded the request into [`ALLOCATED`].
#[cold]
pub fn refund(size: usize, event: bool) {
    let size = size as i64;
    if event {
        ALLOCATED.fetch_sub(size as u64, Relaxed);
    } else {
        COUNTDOWN.with(|c| c.alloc_left.set(c.alloc_left.get().saturating_add(size)));
    }
}

/// After a `realloc` the inner allocator refused: the new size is refunded,
/// and the old block, which [`give_back`] counted as freed, is still live.
#[cold]
pub fn refund_realloc(old: usize, new: usize, event: bool) {
    refund(new, event);
    ALLOCATED.fetch_add(old as u64, Relaxed);
}

#[cold]
fn fold_freed() {
    COUNTDOWN.with(|c| {
        // Saturating, here and in the other cold paths: a single request
        // near isize::MAX bytes (`try_reserve_exact`) must not overflow,
        // which panics inside `GlobalAlloc` in checked builds (an abort).
        let freed = c.free_armed.get().saturating_sub(c.free_left.get());
        FREED.fetch_add(freed.max(0) as u64, Relaxed);
        let next = if c.exited.get() { 0 } else { FOLD_BYTES };
        c.free_left.set(next);
        c.free_armed.set(next);
    });
}

/// What the slow path should do with the allocation that hit an event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Only the counters were folded.
    Fold,
    /// Sample this allocation.
    Sample,
}

/// Folds what this thread allocated since the last event (including the
/// allocation that hit it) and re-arms. `interval` 0 turns sampling off.
/// A reentrant call (from inside the slow path) or an exiting thread never
/// samples.
#[cold]
pub fn on_event(interval: usize) -> Event {
    COUNTDOWN.with(|c| {
        let spent = c.armed.get().saturating_sub(c.alloc_left.get());
        ALLOCATED.fetch_add(spent.max(0) as u64, Relaxed);
        if c.exited.get() {
            c.alloc_left.set(0);
            c.armed.set(0);
            return Event::Fold;
        }
        if c.rng.get() == 0 {
            first_event(c, interval);
        }
        let mut sample_left = c.sample_left.get().saturating_sub(spent);
        let mut event = Event::Fold;
        if sample_left < 0 && interval > 0 {
            sample_left = draw(c, interval);
            if !c.busy.get() {
                event = Event::Sample;
            }
        } else if interval == 0 {
            sample_left = i64::MAX;
        }
        c.sample_left.set(sample_left);
        let next = sample_left.min(FOLD_BYTES);
        c.alloc_left.set(next);
        c.armed.set(next);
        event
    })
}

/// A thread's first event: seed its generator, arrange the exit fold, draw
/// the first sample point.
fn first_event(c: &ThreadCountdown, interval: usize) {
    let address = c as *const ThreadCountdown as u64;
    let seed = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
    c.rng.set(splitmix(seed ^ address.rotate_left(32)) | 1);
    c.sample_left.set(if interval > 0 {
        draw(c, interval)
    } else {
        i64::MAX
    });
    // Registering a destructor may allocate (reentrantly: `busy` keeps
    // that from sampling). During thread exit it may be too late: then the
    // thread just keeps folding at every event.
    let was_busy = c.busy.replace(true);
    let _ = EXIT_FOLD.try_with(|_| ());
    c.busy.set(was_busy);
}

/// Restarts this thread's generator from `seed` and draws a new sample
/// point (tests use it for reproducible runs).
pub fn reseed(seed: u64, interval: usize) {
    COUNTDOWN.with(|c| {
        let spent = c.armed.get().saturating_sub(c.alloc_left.get());
        ALLOCATED.fetch_add(spent.max(0) as u64, Relaxed);
        c.rng.set(splitmix(seed) | 1);
        let left = if interval > 0 {
            draw(c, interval)
        } else {
            i64::MAX
        };
        c.sample_left.set(left);
        let next = left.min(FOLD_BYTES);
        c.alloc_left.set(next);
        c.armed.set(next);
    });
}

/// Next sample distance: exponential with mean `interval`, capped.
fn draw(c: &ThreadCountdown, interval: usize) -> i64 {
    let mut x = c.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c.rng.set(x);
    let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11; // 53 random bits
    let u = (bits as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    let distance = (-u.ln()).min(MAX_DRAW_INTERVALS) * interval as f64;
    distance as i64
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bytes in use through the sampling allocator, as folded so far.
pub fn in_use() -> u64 {
    let freed = FREED.load(Relaxed);
    ALLOCATED.load(Relaxed).saturating_sub(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_exponential_with_the_interval_as_mean() {
        let c = ThreadCountdown {
            alloc_left: Cell::new(0),
            armed: Cell::new(0),
            sample_left: Cell::new(0),
            free_left: Cell::new(0),
            free_armed: Cell::new(0),
            rng: Cell::new(splitmix(7) | 1),
            busy: Cell::new(false),
            exited: Cell::new(false),
            stack_bottom: Cell::new(0),
            stack_top: Cell::new(0),
        };
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| draw(&c, 1000) as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        // An exponential's mean is the interval; its median is ln 2 of it.
        assert!((mean - 1000.0).abs() < 10.0, "mean {mean}");
        let below_median = draws.iter().filter(|&&d| d < 693.147).count() as f64 / n as f64;
        assert!((below_median - 0.5).abs() < 0.005, "{below_median}");
        assert!(draws.iter().all(|&d| (0.0..=16_000.0).contains(&d)));
    }
}
