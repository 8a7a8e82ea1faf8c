//! The fallback walk for the call stack of a sampled allocation: a bounded
//! frame-pointer walk, used where the in-place walk with the modules' unwind
//! tables (`unwind::in_place`) cannot run (tables not prepared yet, little
//! stack left, every unwind cache busy; targets without unwinding).
//!
//! The walk starts at its own frame and follows saved frame pointers
//! upwards. Every frame record read lies between the walk's own frame and
//! the top of the thread's stack (looked up once per thread with
//! `pthread_getattr_np`), frame pointers must be aligned and strictly
//! increasing: everything between the current stack pointer and the top is
//! mapped, so a broken chain (a frame built without frame pointers, whose
//! register holds anything) ends the walk instead of faulting. Code running
//! on another stack (a coroutine's, a C library's own) is not walked at all:
//! between that stack and the thread's there may be unmapped memory.

use super::buckets::MAX_FRAMES;
use super::countdown::ThreadCountdown;

/// A frame record is two words: the caller's frame pointer, then the
/// return address.
const WORD: usize = std::mem::size_of::<usize>();

/// The return addresses above the caller, innermost first, into `frames`;
/// returns how many. Skips the walk's own return address.
#[inline(never)]
pub fn capture((bottom, top): (usize, usize), frames: &mut [u64; MAX_FRAMES]) -> usize {
    let mut fp = current_frame_pointer();
    if fp < bottom || fp >= top {
        return 0;
    }
    let mut depth = 0;
    let mut skipped = false;
    while depth < MAX_FRAMES {
        if fp == 0 || fp % WORD != 0 || fp.checked_add(2 * WORD).is_none_or(|end| end > top) {
            break;
        }
        // SAFETY: [fp, fp + 2 words) lies between this function's own frame
        // and the top of this thread's stack, all mapped and readable.
        let (next, ret) = unsafe {
            (
                std::ptr::read_volatile(fp as *const usize),
                std::ptr::read_volatile((fp + WORD) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        if skipped {
            frames[depth] = code_address(ret as u64);
            depth += 1;
        }
        skipped = true;
        if next <= fp {
            break;
        }
        fp = next;
    }
    depth
}

/// A saved return address without its pointer-authentication code: on
/// aarch64, code built with `-mbranch-protection=pac-ret` (C libraries of
/// some distributions) signs the return address it saves in its frame
/// record, on CPUs with pointer authentication.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn code_address(ret: u64) -> u64 {
    ret & crate::unwind::ADDRESS_MASK
}

#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn code_address(ret: u64) -> u64 {
    ret
}

#[inline(always)]
fn current_frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "x86")]
    // SAFETY: reads a register.
    unsafe {
        std::arch::asm!("mov {}, ebp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    // Elsewhere no walk: the stack is empty.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86")))]
    {
        fp = 0;
    }
    fp
}

/// This thread's stack, `[bottom, top)`, cached per thread.
pub fn stack_bounds(thread: &ThreadCountdown) -> Option<(usize, usize)> {
    let cached = (thread.stack_bottom.get(), thread.stack_top.get());
    if cached.1 != 0 {
        return Some(cached);
    }
    #[cfg(test)]
    tests::DURING_LOOKUP.with(|hook| hook.get().map(|f| f()));
    let (bottom, top) = query_stack_bounds()?;
    thread.stack_bottom.set(bottom);
    thread.stack_top.set(top);
    Some((bottom, top))
}

/// The calling thread's stack, `[bottom, top)` (not cached; not for the
/// allocation path).
#[cfg(target_os = "linux")]
pub(crate) fn query_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and
    // destroyed after; the out-pointers are valid locals. glibc may call
    // malloc here for the main thread (reading /proc/self/maps): that is
    // the C allocator, not this one, and the caller holds the reentrancy
    // guard in case it is.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0 && !addr.is_null()).then(|| (addr as usize, addr as usize + size))
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn query_stack_bounds() -> Option<(usize, usize)> {
    None
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use crate::SamplingAllocator;

    thread_local! {
        /// Runs inside the stack-bounds lookup, standing for a C library
        /// whose `malloc` is routed to the Rust global allocator (glibc
        /// calls `malloc` there for the main thread).
        pub(super) static DURING_LOOKUP: Cell<Option<fn()>> = const { Cell::new(None) };
    }

    /// Samples every allocation, so an allocation made during the lookup
    /// would be sampled and look the bounds up again, and so on.
    static EVERY_BYTE: SamplingAllocator<System> =
        SamplingAllocator::with_sample_interval(System, 1);

    fn allocate_through_the_sampler() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let ptr = EVERY_BYTE.alloc(layout);
            assert!(!ptr.is_null());
            EVERY_BYTE.dealloc(ptr, layout);
        }
    }

    /// Finding 10 of the lifecycle review: the reentrancy guard was set
    /// after the lookup (tuple order), so an allocation made inside it was
    /// sampled, looked the bounds up again, and recursed until the stack
    /// overflowed (the test process dies with SIGSEGV).
    #[test]
    fn an_allocation_inside_the_stack_bounds_lookup_is_not_sampled() {
        // A new thread: its bounds are not cached yet.
        std::thread::spawn(|| {
            DURING_LOOKUP.with(|hook| hook.set(Some(allocate_through_the_sampler)));
            allocate_through_the_sampler();
            DURING_LOOKUP.with(|hook| hook.set(None));
            allocate_through_the_sampler();
        })
        .join()
        .unwrap();
    }
}
