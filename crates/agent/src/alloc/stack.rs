//! The call stack of a sampled allocation: a bounded frame-pointer walk.
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
        if fp == 0 || fp % 8 != 0 || fp.checked_add(16).is_none_or(|end| end > top) {
            break;
        }
        // SAFETY: [fp, fp + 16) lies between this function's own frame
        // and the top of this thread's stack, all mapped and readable.
        let (next, ret) = unsafe {
            (
                std::ptr::read_volatile(fp as *const usize),
                std::ptr::read_volatile((fp + 8) as *const usize),
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
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
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
    let (bottom, top) = query_stack_bounds()?;
    thread.stack_bottom.set(bottom);
    thread.stack_top.set(top);
    Some((bottom, top))
}

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
