//! The one way the agent reads memory it does not own: a copy made by the
//! kernel (`process_vm_readv` on our own pid), which answers `EFAULT` for an
//! unmapped or `PROT_NONE` page instead of raising `SIGSEGV`.
//!
//! A snapshot of `/proc/self/maps` cannot make a direct read safe: a
//! mapping can go away (`munmap`, `dlclose`) between the snapshot and the
//! read. So nothing here dereferences a pointer it was given; it asks the
//! kernel to copy, one page-sized piece at a time, and stops at the first
//! piece that fails. The call is a plain system call: no allocation, no
//! lock, usable inside a signal handler (about 1.7 µs a call).
//!
//! Where `process_vm_readv` is refused (a seccomp filter answering `EPERM`,
//! an emulator answering `ENOSYS`), the copy falls back, for good, to
//! `pread` on `/proc/self/mem`, opened beforehand: also a system call that
//! fails (`EIO`) instead of faulting (it reads `PROT_NONE` pages, as
//! debuggers do, where `process_vm_readv` stops: harmless for a copy).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub(crate) const PAGE: usize = 4096;

/// Most pages copied by one call (the iovec arrays live on the caller's stack).
const MAX_PIECES: usize = 32;

/// Our pid, set before the first copy: the handler cannot afford `getpid`
/// in every sample, and after `fork` the child sets its own when it starts
/// profiling (no timer of ours survives a fork).
static PID: AtomicI32 = AtomicI32::new(0);

/// `/proc/self/mem` of the process that opened it (-1: not open), for the
/// fallback. The file stands for the address space it was opened in, so a
/// forked child opens its own.
static MEM_FD: AtomicI32 = AtomicI32::new(-1);
/// `process_vm_readv` was refused: use the fallback from now on.
static VM_READV_REFUSED: AtomicBool = AtomicBool::new(false);

/// Records this process's pid (and opens `/proc/self/mem` for the fallback)
/// for [`copy`]; call before copies can happen, and again in a forked child.
pub(crate) fn remember_pid() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if PID.swap(pid, Ordering::SeqCst) == pid && MEM_FD.load(Ordering::SeqCst) >= 0 {
        return;
    }
    // SAFETY: a constant NUL-terminated path; the descriptor is ours.
    let fd = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // A parent's descriptor inherited over fork reads the parent's memory:
    // it is replaced (and left open: another thread may be using it).
    MEM_FD.store(fd, Ordering::SeqCst);
}

/// In a child just forked: the inherited `/proc/self/mem` reads the
/// parent's memory and the pid is the parent's; copies fail until
/// [`remember_pid`] runs here (every profile start calls it).
pub(crate) fn after_fork_in_child() {
    PID.store(0, Ordering::SeqCst);
}

/// For tests: copy through `/proc/self/mem` as if `process_vm_readv` were refused.
#[cfg(test)]
pub(crate) fn refuse_vm_readv(refused: bool) {
    VM_READV_REFUSED.store(refused, Ordering::SeqCst);
}

/// The fallback: `pread` of `/proc/self/mem`, which copies up to the first
/// unreadable page and answers `EIO` if that is the first one.
fn copy_by_pread(addr: u64, out: &mut [u8]) -> usize {
    let fd = MEM_FD.load(Ordering::Relaxed);
    let Ok(offset) = libc::off_t::try_from(addr) else {
        return 0;
    };
    if fd < 0 {
        return 0;
    }
    // SAFETY: `out` is ours for the call; the kernel checks the address
    // range it reads and fails instead of faulting.
    let n = unsafe { libc::pread(fd, out.as_mut_ptr().cast(), out.len(), offset) };
    if n < 0 {
        0
    } else {
        n as usize
    }
}

/// Copies `[addr, addr + out.len())` into `out` as far as it is readable
/// from the start, a page at a time, and returns how many bytes were copied
/// (0 when `addr` itself is not readable or copying is not permitted).
/// Async-signal-safe. At most `MAX_PIECES` pages are copied per call.
pub(crate) fn copy(addr: u64, out: &mut [u8]) -> usize {
    let pid = PID.load(Ordering::Relaxed);
    if pid == 0 || out.is_empty() {
        return 0;
    }
    if VM_READV_REFUSED.load(Ordering::Relaxed) {
        let len = out.len().min(MAX_PIECES * PAGE);
        return copy_by_pread(addr, &mut out[..len]);
    }
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_PIECES];
    let mut pieces = 0;
    let mut at = addr;
    let end = addr.saturating_add(out.len() as u64);
    while at < end && pieces < MAX_PIECES {
        let page_end = (at / PAGE as u64 + 1).saturating_mul(PAGE as u64);
        let piece_end = page_end.min(end);
        remote[pieces] = libc::iovec {
            iov_base: at as usize as *mut libc::c_void,
            iov_len: (piece_end - at) as usize,
        };
        pieces += 1;
        at = piece_end;
    }
    let wanted = (at - addr) as usize;
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: wanted,
    };
    // SAFETY: `local` describes `out`, which we own for the call; the
    // remote ranges are only read by the kernel, which checks them and
    // returns an error or a short count instead of faulting.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), pieces as _, 0) };
    if n >= 0 {
        return n as usize;
    }
    // SAFETY: __errno_location returns this thread's errno, valid for the
    // thread's life. (The signal handler restores errno on its way out.)
    let errno = unsafe { *libc::__errno_location() };
    if errno == libc::ENOSYS || errno == libc::EPERM {
        VM_READV_REFUSED.store(true, Ordering::Relaxed);
        return copy_by_pread(addr, &mut out[..wanted]);
    }
    0
}

/// [`copy`] without the page limit, for large reads off the signal path
/// (unwind tables): the whole readable prefix of `[addr, addr + len)`.
pub(crate) fn copy_all(addr: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = copy(addr + done as u64, &mut out[done..]);
        if n == 0 {
            break;
        }
        done += n;
    }
    out.truncate(done);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(len: usize, prot: i32) -> u64 {
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as u64
    }

    /// `len` bytes mapped far below where the kernel places mappings (it
    /// searches top-down from just under the libraries), so a hole cut in
    /// them stays a hole: a hole among ordinary mappings was filled by the
    /// next one-page mapping of a test running beside this one (6 of 40
    /// runs). Falls back to an ordinary mapping on a small address space.
    fn map_apart(len: usize, prot: i32) -> u64 {
        let salt = (std::process::id() as u64 % 4096) << 24;
        for hint in [0x2000_0000_0000u64, 0x40_0000_0000, 0x4_0000_0000] {
            let want = hint + salt;
            // SAFETY: an anonymous mapping at an address nothing uses
            // (NOREPLACE: the kernel refuses rather than replace a mapping).
            let p = unsafe {
                libc::mmap(
                    want as *mut _,
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p as u64 == want {
                return want;
            }
            if p != libc::MAP_FAILED {
                // A kernel before 4.17 took the flag as a hint and put it elsewhere.
                // SAFETY: unmapping what was just mapped.
                unsafe { libc::munmap(p, len) };
            }
        }
        map(len, prot)
    }

    #[test]
    fn copies_what_is_readable_and_stops_at_the_first_hole() {
        // Both ways: the system call, then the /proc/self/mem fallback.
        copy_checks(false);
        refuse_vm_readv(true);
        copy_checks(true);
        refuse_vm_readv(false);
    }

    fn copy_checks(fallback: bool) {
        remember_pid();
        let base = map_apart(3 * PAGE, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: writing our own mapping, then cutting a hole in its middle
        // page and making the last one PROT_NONE.
        unsafe {
            std::ptr::write_bytes(base as *mut u8, 0xAB, 3 * PAGE);
            libc::munmap((base + PAGE as u64) as *mut _, PAGE);
        }
        let mut out = vec![0u8; 3 * PAGE];
        // From 100 bytes before the hole: exactly those 100 bytes.
        let from = base + PAGE as u64 - 100;
        assert_eq!(copy(from, &mut out), 100);
        assert!(out[..100].iter().all(|&b| b == 0xAB));
        // Starting inside the hole: nothing, no fault.
        assert_eq!(copy(base + PAGE as u64 + 8, &mut out), 0);
        // PROT_NONE is refused too by process_vm_readv; /proc/self/mem
        // reads it (its reads ignore protections: the page's zeros), without
        // a fault either way.
        let none = map(PAGE, libc::PROT_NONE);
        assert_eq!(copy(none, &mut out[..64]), if fallback { 64 } else { 0 });
        // Unmapped addresses near zero and at the top.
        assert_eq!(copy(16, &mut out[..64]), 0);
        assert_eq!(copy(u64::MAX - 8, &mut out[..64]), 0);
        assert_eq!(copy_all(base, 3 * PAGE).len(), PAGE);
        // SAFETY: unmapping what this test mapped.
        unsafe {
            libc::munmap(base as *mut _, PAGE);
            libc::munmap((base + 2 * PAGE as u64) as *mut _, PAGE);
            libc::munmap(none as *mut _, PAGE);
        }
    }
}
