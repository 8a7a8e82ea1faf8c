//! Unwinding the *current* thread's stack from inside the allocator: the
//! sampling allocator's stack capture, in a build without frame pointers.
//!
//! Inside `malloc` nothing may allocate or lock, so everything is prepared
//! beforehand by [`prepare`] (called by `Agent::start`, each heap snapshot,
//! and the agent thread when unknown code shows up after a `dlopen`):
//!
//! - the unwind tables of the loaded modules, in a framehop unwinder that
//!   never allocates during an unwind, published through an atomic pointer;
//! - a pool of unwind caches (~33 KB each), sized by CPUs, each claimed
//!   with one compare-and-swap.
//!
//! The walk reads only the calling thread's own stack, between its current
//! stack pointer and the top of the stack (bounds from
//! `pthread_getattr_np`, exact for the calling thread), which is mapped as
//! long as the thread runs. It needs about 14 KB of stack in an optimised
//! build (~40 KB unoptimised): with less than [`MIN_FREE_STACK`] left, or no
//! published tables, or every cache taken, the caller falls back to frame
//! pointers, and the snapshot counts it.
//!
//! Retiring an unwinder replaced after a `dlopen` uses the same
//! sequentially consistent counter as the CPU sampler's pool: walkers do
//! `WALKERS += 1` then load `PUBLISHED`; [`prepare`] swaps `PUBLISHED`, then
//! waits for `WALKERS == 0` (bounded: after a `fork` a walker of another
//! thread may never finish, and the old unwinder is then kept, not freed).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use framehop::{MustNotAllocateDuringUnwind, Unwinder};

use super::modules::{self, Bytes};

#[cfg(target_arch = "x86_64")]
type InPlaceUnwinder = framehop::x86_64::UnwinderX86_64<Bytes, MustNotAllocateDuringUnwind>;
#[cfg(target_arch = "x86_64")]
type InPlaceCache = framehop::x86_64::CacheX86_64<MustNotAllocateDuringUnwind>;
#[cfg(target_arch = "aarch64")]
type InPlaceUnwinder = framehop::aarch64::UnwinderAarch64<Bytes, MustNotAllocateDuringUnwind>;
#[cfg(target_arch = "aarch64")]
type InPlaceCache = framehop::aarch64::CacheAarch64<MustNotAllocateDuringUnwind>;

/// Stack the walk wants free below the current stack pointer.
pub(crate) const MIN_FREE_STACK: usize = 64 * 1024;

/// Most caches: walks at once beyond this fall back to frame pointers.
const MAX_CACHES: usize = 64;

struct Published {
    unwinder: InPlaceUnwinder,
    /// Executable ranges of the modules in `unwinder`, sorted.
    code: Vec<Range<u64>>,
    /// The executable file mappings they were built from, to tell whether
    /// unknown code means a new module (rebuild) or JIT code (nothing to add).
    mappings: Vec<(u64, u64, u64)>,
}

static PUBLISHED: AtomicPtr<Published> = AtomicPtr::new(std::ptr::null_mut());
static WALKERS: AtomicUsize = AtomicUsize::new(0);

struct CacheSlot {
    busy: AtomicBool,
    cache: AtomicPtr<InPlaceCache>,
}

static CACHES: [CacheSlot; MAX_CACHES] = [const {
    CacheSlot {
        busy: AtomicBool::new(false),
        cache: AtomicPtr::new(std::ptr::null_mut()),
    }
}; MAX_CACHES];

/// Walks that met code in no published module (a library loaded since):
/// [`prepare`] rebuilds the tables when this has grown.
static UNKNOWN_CODE: AtomicU64 = AtomicU64::new(0);
/// `UNKNOWN_CODE` when the published tables were built.
static UNKNOWN_AT_BUILD: AtomicU64 = AtomicU64::new(0);
/// Serializes [`prepare`] (never taken inside the allocator): a flag rather
/// than a mutex, so a child forked while another thread prepared can reset
/// it ([`after_fork_in_child`]).
static PREPARING: AtomicBool = AtomicBool::new(false);

/// In a child just forked: walks and preparations of other threads stopped
/// where they were (those threads do not exist here); their counts, cache
/// claims and the preparing flag go back to idle. The published tables are
/// the parent's, copied with its memory, and stay valid.
pub(crate) fn after_fork_in_child() {
    WALKERS.store(0, Ordering::SeqCst);
    for slot in &CACHES {
        slot.busy.store(false, Ordering::SeqCst);
    }
    PREPARING.store(false, Ordering::SeqCst);
}

/// Clears [`PREPARING`] when a preparation ends, however it ends.
struct Preparing;

impl Drop for Preparing {
    fn drop(&mut self) {
        PREPARING.store(false, Ordering::Release);
    }
}

/// Why a walk could not use unwind tables (the caller then walks frame
/// pointers and counts the reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// [`prepare`] has not run yet.
    NotPrepared,
    /// Less than [`MIN_FREE_STACK`] left below the stack pointer.
    SmallStack,
    /// Every cache was in use.
    Busy,
    /// The unwinder panicked (see [`capture`]).
    Broken,
}

/// Gives a claimed cache back, also when the walk panics.
struct Claimed(&'static CacheSlot);

impl Drop for Claimed {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Builds and publishes the unwind tables if none are published yet or
/// code outside them was met since, and fills the cache pool. Off the
/// allocation path only: it reads `/proc`, allocates and may wait.
pub(crate) fn prepare() {
    crate::fork::register();
    // Another thread is preparing: its tables will do.
    if PREPARING.swap(true, Ordering::Acquire) {
        return;
    }
    let _preparing = Preparing;
    super::memory::remember_pid();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    for slot in CACHES.iter().take((2 * cpus).clamp(4, MAX_CACHES)) {
        if slot.cache.load(Ordering::Acquire).is_null() {
            let cache = Box::into_raw(Box::new(InPlaceCache::new_in()));
            slot.cache.store(cache, Ordering::Release);
        }
    }
    let unknown = UNKNOWN_CODE.load(Ordering::Relaxed);
    let current = PUBLISHED.load(Ordering::SeqCst);
    if !current.is_null() && unknown == UNKNOWN_AT_BUILD.load(Ordering::Relaxed) {
        return;
    }
    let mappings = modules::executable_mappings();
    // SAFETY: only `prepare` (serialized by PREPARING) frees published
    // tables, so `current` is alive here.
    if let Some(current) = unsafe { current.as_ref() } {
        if current.mappings == mappings {
            // Code outside every module, but no module is new (JIT code,
            // or a walk that went astray): nothing to add.
            UNKNOWN_AT_BUILD.store(unknown, Ordering::Relaxed);
            return;
        }
    }
    let (loaded, _) = modules::load();
    let mut unwinder = InPlaceUnwinder::new();
    let mut code = Vec::with_capacity(loaded.len());
    for m in loaded {
        code.push(m.code.clone());
        unwinder.add_module(m.module);
    }
    UNKNOWN_AT_BUILD.store(unknown, Ordering::Relaxed);
    let fresh = Box::into_raw(Box::new(Published {
        unwinder,
        code,
        mappings,
    }));
    // SeqCst here and on the walker's side (its `WALKERS` increment, its
    // `PUBLISHED` load): with weaker orderings this swap-then-wait and the
    // walker's announce-then-load form a store-buffering pair in which both
    // read the old values, and the tables are freed under a walk. Checked,
    // both ways, by `scripts/model-check.sh` (models/ring_retirement).
    let old = PUBLISHED.swap(fresh, Ordering::SeqCst);
    if old.is_null() {
        return;
    }
    let until = Instant::now() + Duration::from_millis(100);
    while WALKERS.load(Ordering::SeqCst) != 0 {
        if Instant::now() > until {
            // A walker that never ends (its thread did not survive a fork):
            // keep the old tables rather than free them under it.
            log::debug!("firewatch: an allocator stack walk is still running; old tables kept");
            return;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    // SAFETY: unpublished above, and no walker can still hold it (see the
    // module doc): nothing else reaches it.
    drop(unsafe { Box::from_raw(old) });
}

/// Whether tables were met with code outside them since they were built.
pub(crate) fn stale() -> bool {
    UNKNOWN_CODE.load(Ordering::Relaxed) != UNKNOWN_AT_BUILD.load(Ordering::Relaxed)
}

/// The return addresses above the caller of this function, innermost
/// first, into `frames`; how many (as `alloc::stack::capture` walks them
/// with frame pointers). `stack` is the calling thread's stack,
/// `[bottom, top)`. No allocation, no lock, no system call.
#[inline(never)]
pub(crate) fn capture(
    (bottom, top): (usize, usize),
    frames: &mut [u64],
) -> Result<usize, Fallback> {
    let (pc, sp, fp) = super::registers_here();
    let sp = sp as usize;
    if sp < bottom.saturating_add(MIN_FREE_STACK) || sp >= top {
        return Err(Fallback::SmallStack);
    }
    WALKERS.fetch_add(1, Ordering::SeqCst);
    // framehop's address arithmetic panics on overflow in builds with
    // overflow checks (a garbage frame pointer near 0 or the top of the
    // address space); a panic must not leave `GlobalAlloc::alloc`. (With
    // `panic = "abort"` and overflow checks together, it would abort: a
    // combination of debug settings only.)
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        walk(pc, sp as u64, fp, top as u64, frames)
    }))
    .unwrap_or(Err(Fallback::Broken));
    WALKERS.fetch_sub(1, Ordering::SeqCst);
    result
}

fn walk(pc: u64, sp: u64, fp: u64, top: u64, frames: &mut [u64]) -> Result<usize, Fallback> {
    // SAFETY: a published table stays alive while WALKERS counts us.
    let Some(published) = (unsafe { PUBLISHED.load(Ordering::SeqCst).as_ref() }) else {
        return Err(Fallback::NotPrepared);
    };
    let Some(slot) = CACHES.iter().find(|s| {
        !s.cache.load(Ordering::Acquire).is_null()
            && s.busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }) else {
        return Err(Fallback::Busy);
    };
    let claimed = Claimed(slot);
    // SAFETY: we hold the slot's busy flag, so the cache is ours alone; it
    // is never freed.
    let cache = unsafe { &mut *slot.cache.load(Ordering::Acquire) };
    // Our own live stack between the stack pointer and its top is mapped
    // for as long as this thread runs.
    let mut read = |addr: u64| -> Result<u64, ()> {
        if addr < sp || addr.checked_add(8).is_none_or(|end| end > top) {
            return Err(());
        }
        // SAFETY: [addr, addr + 8) lies in this thread's own stack, above
        // its current stack pointer.
        Ok(unsafe { std::ptr::read_unaligned(addr as *const u64) })
    };
    // The link register is dead here (`capture` called `registers_here`
    // and then `walk`): frame records hold the return addresses.
    let regs = super::Registers { pc, sp, fp, lr: 0 };
    let mut iter =
        published
            .unwinder
            .iter_frames(pc, super::native_registers(regs), cache, &mut read);
    let mut depth = 0;
    let mut unknown = false;
    // Frame 0 is `capture` itself and frame 1 the return into its caller
    // (the allocator): the stack starts above them.
    let mut skip = 2;
    while let Ok(Some(frame)) = iter.next() {
        let addr = super::code_address(frame.address());
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if depth == frames.len() {
            break;
        }
        let i = published.code.partition_point(|r| r.start <= addr);
        unknown |= i == 0 || !published.code[i - 1].contains(&addr);
        frames[depth] = addr;
        depth += 1;
    }
    drop(claimed);
    if unknown {
        UNKNOWN_CODE.fetch_add(1, Ordering::Relaxed);
    }
    Ok(depth)
}
