//! A reserved address range that holds the sampled *small* blocks.
//!
//! Why: a free must learn whether its block was sampled without touching
//! shared state. Blocks of up to [`SLOT`] bytes that are sampled are served
//! from one range reserved at the first sample, one block per `SLOT`-sized,
//! `SLOT`-aligned slot, so the check on every small free is one load of a
//! never-changing word and a compare ([`contains`]). Reading a header in
//! front of an arbitrary pointer, the other classic trick, is not sound over
//! an allocator we do not own.
//!
//! The range is reserved `PROT_NONE` (no memory, no commit charge) and made
//! readable/writable [`CHUNK_SLOTS`] slots at a time as slots are first used.
//! Only the pages a block touches become resident; when a block of more than
//! one page is freed, its pages past the first are returned with
//! `MADV_DONTNEED`. Resident cost: at most one page per sampled block, which
//! at the default 512 KiB interval is 4 KiB / 512 KiB ≈ 0.8% of the heap.
//!
//! Slots are recycled through a lock-free stack (tagged head against ABA);
//! nothing here takes a lock, so a `fork` at any moment leaves a usable
//! state (at worst one slot leaked).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Size and alignment of a slot: the largest sampled block kept here.
pub const SLOT: usize = 64 << 10;
/// Number of slots, so the most sampled small blocks live at once.
pub const SLOTS: usize = 1 << 17;
/// Bytes of address space reserved (8 GiB of addresses, not of memory).
pub const REGION_BYTES: usize = SLOT * SLOTS;
/// Slots made accessible together (4 MiB of addresses).
const CHUNK_SLOTS: usize = 64;

/// The range: its base and its length, side by side (one cache line for
/// [`contains`]). Until it is reserved the length is 0 and the base the top
/// of the address space, so [`contains`] is false whichever of the two
/// stores another thread has seen: each changes once, from these values.
#[repr(C, align(64))]
struct Range {
    base: AtomicUsize,
    len: AtomicUsize,
}

static RANGE: Range = Range {
    base: AtomicUsize::new(0usize.wrapping_sub(REGION_BYTES)),
    len: AtomicUsize::new(0),
};
/// Slots that fit in the range reserved (at most [`SLOTS`]).
static USABLE: AtomicUsize = AtomicUsize::new(0);
/// Below this much address space left under `RLIMIT_AS`, small blocks are
/// not sampled at all.
const MIN_RESERVED: usize = 64 << 20;
const UNRESERVED: u8 = 0;
const RESERVING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;
/// Not reserved: the address-space limit leaves too little room.
const LIMITED: u8 = 4;
static STATE: AtomicU8 = AtomicU8::new(UNRESERVED);
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Slots never handed out yet start here.
static FRESH: AtomicUsize = AtomicUsize::new(0);
/// Free-slot stack: (tag << 32) | (slot + 1), 0 when empty.
static FREE_HEAD: AtomicU64 = AtomicU64::new(0);
static NEXT: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
static COMMITTED: [AtomicBool; SLOTS / CHUNK_SLOTS] =
    [const { AtomicBool::new(false) }; SLOTS / CHUNK_SLOTS];

/// Whether `ptr` is in the region: the whole cost of a small free's check.
#[inline(always)]
pub fn contains(ptr: *mut u8) -> bool {
    (ptr as usize).wrapping_sub(RANGE.base.load(Ordering::Relaxed))
        < RANGE.len.load(Ordering::Relaxed)
}

/// The slot holding `ptr` (which [`contains`] accepted).
#[inline]
pub fn slot_of(ptr: *mut u8) -> usize {
    ((ptr as usize) - RANGE.base.load(Ordering::Relaxed)) / SLOT
}

fn slot_address(slot: usize) -> *mut u8 {
    (RANGE.base.load(Ordering::Relaxed) + slot * SLOT) as *mut u8
}

/// In a child just forked while another thread was reserving the range:
/// that thread is not here to finish, so the child starts over (the
/// parent's reservation, if made, stays unused address space).
pub(crate) fn after_fork_in_child() {
    let _ = STATE.compare_exchange(RESERVING, UNRESERVED, Ordering::SeqCst, Ordering::SeqCst);
}

/// Whether the region could not be reserved, or not at all for the
/// address-space limit.
pub fn failed() -> bool {
    matches!(STATE.load(Ordering::Relaxed), FAILED | LIMITED)
}

/// Bytes of slots reserved (0 before the first sampled small block).
pub fn reserved() -> usize {
    RANGE.len.load(Ordering::Relaxed)
}

/// How much to reserve: the whole range, or under a finite `RLIMIT_AS` an
/// eighth of the address space left, in whole chunks, so sampling never
/// takes from the service what its limit allows it. (Called inside the
/// allocator: a `getrlimit` and a read of `/proc/self/statm` into a stack
/// buffer, no allocation.)
fn reservable() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return REGION_BYTES;
    }
    let used = address_space_used().unwrap_or(usize::MAX);
    let left = (limit.rlim_cur as usize).saturating_sub(used);
    (left / 8).min(REGION_BYTES) / (CHUNK_SLOTS * SLOT) * (CHUNK_SLOTS * SLOT)
}

/// The process's address-space size (`VmSize`), from `/proc/self/statm`.
fn address_space_used() -> Option<usize> {
    let mut buf = [0u8; 128];
    // SAFETY: a constant NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: reading into our own buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let pages: usize = std::str::from_utf8(text)
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    pages.checked_mul(page)
}

/// Reserves the range on first use. `false` while another thread is doing
/// it or if it failed: the caller then does not sample this block.
fn ready() -> bool {
    match STATE.load(Ordering::Acquire) {
        READY => return true,
        RESERVING | FAILED | LIMITED => return false,
        _ => {}
    }
    if STATE
        .compare_exchange(UNRESERVED, RESERVING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return STATE.load(Ordering::Acquire) == READY;
    }
    let len = reservable();
    if len < MIN_RESERVED {
        STATE.store(LIMITED, Ordering::Release);
        return false;
    }
    // SAFETY: an anonymous PROT_NONE reservation with no fixed address
    // cannot clobber existing mappings.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + SLOT,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        STATE.store(FAILED, Ordering::Release);
        return false;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        PAGE.store(page as usize, Ordering::Relaxed);
    }
    let base = (raw as usize + SLOT - 1) & !(SLOT - 1);
    USABLE.store(len / SLOT, Ordering::Relaxed);
    RANGE.base.store(base, Ordering::Relaxed);
    RANGE.len.store(len, Ordering::Relaxed);
    STATE.store(READY, Ordering::Release);
    true
}

/// A slot for a sampled block, its memory accessible; `None` when the region
/// is unavailable or full (the block is then not sampled).
pub fn take_slot() -> Option<usize> {
    if !ready() {
        return None;
    }
    let slot = pop().or_else(|| {
        let fresh = FRESH.fetch_add(1, Ordering::Relaxed);
        (fresh < USABLE.load(Ordering::Relaxed)).then_some(fresh)
    })?;
    let chunk = slot / CHUNK_SLOTS;
    if !COMMITTED[chunk].load(Ordering::Acquire) {
        let start = slot_address(chunk * CHUNK_SLOTS);
        // SAFETY: the chunk lies inside our own reservation; making it
        // accessible twice (two threads racing here) is harmless.
        let rc = unsafe {
            libc::mprotect(
                start.cast(),
                CHUNK_SLOTS * SLOT,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            push(slot);
            return None;
        }
        COMMITTED[chunk].store(true, Ordering::Release);
    }
    Some(slot)
}

/// The block's address in `slot`.
pub fn block(slot: usize) -> *mut u8 {
    slot_address(slot)
}

/// Returns `slot`, whose block of `size` bytes is dead, to the free stack.
pub fn release_slot(slot: usize, size: usize) {
    let page = PAGE.load(Ordering::Relaxed);
    if size > page {
        let end = size.min(SLOT).div_ceil(page) * page;
        // SAFETY: the pages lie inside the dead block's slot, which nobody
        // uses until it is pushed below.
        unsafe {
            libc::madvise(
                slot_address(slot).add(page).cast(),
                end - page,
                libc::MADV_DONTNEED,
            );
        }
    }
    push(slot);
}

fn pop() -> Option<usize> {
    let mut head = FREE_HEAD.load(Ordering::Acquire);
    loop {
        let top = (head & 0xFFFF_FFFF) as usize;
        if top == 0 {
            return None;
        }
        let next = u64::from(NEXT[top - 1].load(Ordering::Relaxed));
        let tag = (head >> 32).wrapping_add(1);
        match FREE_HEAD.compare_exchange_weak(
            head,
            (tag << 32) | next,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(top - 1),
            Err(now) => head = now,
        }
    }
}

fn push(slot: usize) {
    let mut head = FREE_HEAD.load(Ordering::Relaxed);
    loop {
        NEXT[slot].store((head & 0xFFFF_FFFF) as u32, Ordering::Relaxed);
        let tag = (head >> 32).wrapping_add(1);
        match FREE_HEAD.compare_exchange_weak(
            head,
            (tag << 32) | (slot as u64 + 1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Slots handed out at least once (the high-water mark).
pub fn slots_used() -> usize {
    FRESH
        .load(Ordering::Relaxed)
        .min(USABLE.load(Ordering::Relaxed))
}
