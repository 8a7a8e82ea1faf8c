//! The SIGPROF handler and everything it may touch.
//!
//! Rules (the bugs other profilers shipped): the handler allocates nothing,
//! takes no lock and dereferences no pointer it did not create. It takes
//! the thread's identity from the timer's `si_value` (no TLS, no `gettid`),
//! copies the interrupted registers, and leaves a copy of the stack in the
//! pool ([`super::pool`]) made by one system call that fails instead of
//! faulting; unwinding happens later, on the sampler thread. It counts what
//! it drops. It is installed once and never uninstalled: a pending SIGPROF
//! meeting the default action would kill the process. Signals that are not
//! from our timers go to the handler that was installed before ours, if any.
//!
//! One thread-local read: the interrupted thread's label set id
//! ([`labels_of_interrupted_thread`]), a `const`-initialized atomic without
//! `Drop`, so no lazy initialization and no destructor registration; in the
//! main executable it is one `%fs`/`tpidr_el0`-relative load (initial- or
//! local-exec TLS model). In a shared library the compiler uses the general
//! dynamic model, whose `__tls_get_addr` may allocate the thread's block on
//! first use when the library was `dlopen`ed: there the handler does not
//! read it ([`LABELS_IN_HANDLER`] is false) and CPU samples carry no
//! labels, while heap samples still do.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::pool::{Header, Pool};
use crate::labels;
use crate::unwind::Registers;

/// Top 16 bits of our timers' `si_value`; then a 16-bit generation and the
/// 32-bit thread slot (see [`timer_value`]).
const MAGIC: u64 = 0xF1AE_u64 << 48;
const MAGIC_MASK: u64 = 0xFFFF_u64 << 48;

/// The `si_value` of the timer of the thread in `slot`, `generation`-th
/// owner of that slot: a signal queued by a deleted timer (kernels before
/// 6.13 deliver it) carries an old generation and is recognised as stale.
pub fn timer_value(slot: usize, generation: u16) -> u64 {
    MAGIC | u64::from(generation) << 32 | slot as u64
}

/// Sampling on/off; stray signals after stop find it false.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// Handlers running now, so the profiler knows when the pool can be freed.
pub static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// The pool samples go to, while a profile runs.
///
/// Freeing it relies on sequential consistency on both sides: the handler
/// does `ACTIVE += 1` then loads `POOL`; the sampler swaps `POOL` to null,
/// then waits for `ACTIVE == 0`. All four operations are `SeqCst`, so they
/// take place in one total order: a handler that still loaded the old pool
/// incremented `ACTIVE` before the swap, and the sampler's later load of
/// `ACTIVE` sees it until that handler is done. (With acquire/release alone,
/// or `SeqCst` on one side only, this store-buffering pattern lets both
/// sides miss each other: the C++/Rust memory model allows the use after
/// free, even where x86 and ARMv8 code generation happens to hide it.
/// Checked in that model, the old orderings shown to fail, by
/// `scripts/model-check.sh`: see models/ring_retirement.)
pub static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

/// The SIGPROF action that was in place before ours (chained to for foreign
/// signals), or null. Replaced, never freed, if someone displaces our handler
/// and we reinstall it: a handler may be reading the old one.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
/// Whether the handler reads the interrupted thread's label set: only when
/// this code is part of the main executable (see the module doc). Decided
/// at [`install`], off the signal path.
static LABELS_IN_HANDLER: AtomicBool = AtomicBool::new(false);

/// Turns the handler's label read on or off until the next [`install`]
/// (`benches/labels.rs` compares the two in one run, through `testing`).
pub(crate) fn set_labels_in_handler(on: bool) {
    LABELS_IN_HANDLER.store(on, Ordering::Relaxed);
}

/// The label set id of the thread the handler interrupted (0 when labels
/// are not read in the handler).
#[inline(always)]
fn labels_of_interrupted_thread() -> u32 {
    if LABELS_IN_HANDLER.load(Ordering::Relaxed) {
        labels::current_id()
    } else {
        0
    }
}

/// Whether `addr` lies in a loaded segment of the main executable (the
/// first object `dl_iterate_phdr` reports).
fn in_main_executable(addr: usize) -> bool {
    struct Search {
        addr: usize,
        found: bool,
    }
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info; `data` is our Search.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        for i in 0..usize::from(info.dlpi_phnum) {
            // SAFETY: the loader's program headers, dlpi_phnum of them.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
            if ph.p_type == libc::PT_LOAD
                && (start..start.wrapping_add(ph.p_memsz as usize)).contains(&search.addr)
            {
                search.found = true;
            }
        }
        1 // only the first object: the main program
    }
    let mut search = Search { addr, found: false };
    // SAFETY: the callback only reads what the loader hands it and writes
    // our Search, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut search).cast()) };
    search.found
}

/// Serializes installation (never touched by the handler).
static INSTALLING: Mutex<()> = Mutex::new(());

/// The layout of `siginfo_t` for POSIX timer signals on 64-bit Linux.
#[repr(C)]
struct TimerInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    timer_id: i32,
    overrun: i32,
    value: u64,
}

const SI_TIMER: i32 = -2;

/// Makes sure our handler is the SIGPROF handler. It is installed at the
/// first profile and never removed; if another library has since replaced it
/// (another profiler, whose stop may even have set `SIG_IGN`), it is put back
/// and that library's handler becomes the one foreign signals go to. Returns
/// whether another handler was found, which the caller reports.
pub fn install() -> std::io::Result<bool> {
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let ours = on_sigprof as *const () as usize;
    LABELS_IN_HANDLER.store(in_main_executable(ours), Ordering::Relaxed);
    // SAFETY: querying the current action into a zeroed struct.
    let current = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        current
    };
    if current.sa_sigaction == ours {
        return Ok(!PREVIOUS.load(Ordering::Acquire).is_null());
    }
    let foreign = current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN;
    if foreign {
        // Published before our handler can see a signal that needs it.
        PREVIOUS.store(Box::into_raw(Box::new(current)), Ordering::Release);
    }
    // SAFETY: sigaction with a zeroed struct, our handler and an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ours;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(foreign || !PREVIOUS.load(Ordering::Acquire).is_null())
}

extern "C" fn on_sigprof(signo: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the
    // interrupted code's errno intact whatever happens below (the stack
    // copy is a system call).
    let errno = unsafe { *libc::__errno_location() };
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; we
    // read the timer fields only when si_code says it is a timer signal.
    let timer = unsafe { (info as *const TimerInfo).as_ref() };
    match timer {
        Some(t) if t.code == SI_TIMER && t.value & MAGIC_MASK == MAGIC => {
            if ENABLED.load(Ordering::SeqCst) {
                let pool = POOL.load(Ordering::SeqCst);
                // SAFETY: a non-null pool is alive: it is freed only after
                // being unpublished and ACTIVE drops to 0 (see POOL).
                if let Some(pool) = unsafe { pool.as_ref() } {
                    pool.record(Header {
                        thread: (t.value & 0xFFFF_FFFF) as u32,
                        generation: ((t.value >> 32) & 0xFFFF) as u32,
                        periods: 1 + t.overrun.max(0) as u32,
                        copied: 0,
                        labels: labels_of_interrupted_thread(),
                        // SAFETY: context is the kernel's ucontext_t for
                        // this signal.
                        regs: unsafe { registers(context) },
                    });
                }
            }
        }
        // SAFETY: forwarding the arguments we were given.
        _ => unsafe { forward(signo, info, context) },
    }
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: restoring the value saved above.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(target_arch = "x86_64")]
unsafe fn registers(context: *mut c_void) -> Registers {
    // SAFETY: the caller passes the kernel's ucontext_t.
    let gregs = unsafe { &(*(context as *const libc::ucontext_t)).uc_mcontext.gregs };
    Registers {
        pc: gregs[libc::REG_RIP as usize] as u64,
        fp: gregs[libc::REG_RBP as usize] as u64,
        sp: gregs[libc::REG_RSP as usize] as u64,
        lr: 0,
    }
}

#[cfg(target_arch = "aarch64")]
unsafe fn registers(context: *mut c_void) -> Registers {
    // SAFETY: the caller passes the kernel's ucontext_t.
    let m = unsafe { &(*(context as *const libc::ucontext_t)).uc_mcontext };
    Registers {
        pc: m.pc,
        fp: m.regs[29],
        sp: m.sp,
        lr: m.regs[30],
    }
}

/// Hands a signal that is not ours to the handler installed before us. With
/// none (or the default action), it is ignored: a stray SIGPROF must not kill
/// the service.
unsafe fn forward(signo: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // An atomic load of a pointer to a never-freed struct: async-signal-safe.
    // SAFETY: PREVIOUS is null or points to a leaked, never-mutated sigaction.
    let Some(previous) = (unsafe { PREVIOUS.load(Ordering::Acquire).as_ref() }) else {
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous owner registered this as an SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signo, info, context);
    } else {
        // SAFETY: the previous owner registered this as a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signo);
    }
}

/// Waits until no handler is running, so memory they could see can be
/// freed (see [`POOL`] for why this load is `SeqCst`).
pub fn wait_for_handlers() {
    let mut spins = 0u32;
    while ACTIVE.load(Ordering::SeqCst) != 0 {
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_reads_labels_only_from_the_main_executable() {
        // This test binary is the main executable; libc is a shared object
        // (where this crate's thread-locals would go through
        // `__tls_get_addr`), and a stack address is in neither.
        assert!(in_main_executable(on_sigprof as *const () as usize));
        assert!(!in_main_executable(libc::getpid as *const () as usize));
        let local = 0u8;
        assert!(!in_main_executable(&local as *const u8 as usize));
        install().unwrap();
        assert!(LABELS_IN_HANDLER.load(Ordering::Relaxed));
    }
}
