//! The SIGPROF handler and everything it may touch.
//!
//! Rules (the bugs competitors shipped, see prior-art/cpu.md §6): the handler
//! allocates nothing, takes no lock, makes no system call; it reads its
//! thread's ring from the timer's `si_value` (no TLS, no `gettid`), walks
//! frame pointers inside known-readable memory, and counts what it drops. It
//! is installed once and never uninstalled: a pending SIGPROF meeting the
//! default action would kill the process. Signals that are not from our
//! timers go to the handler that was installed before ours, if any.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::ring::Ring;
use super::walk::{walk, ReadableRanges, Registers};

/// Upper half of our timers' `si_value`; the lower half is the slot index.
pub const MAGIC: u64 = 0xF1AE_u64 << 32;
/// Threads profiled at once.
pub const MAX_SLOTS: usize = 4096;

/// Sampling on/off; stray signals after stop find it false.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// Handlers running now, so the profiler knows when a ring or table can be freed.
pub static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// The readable-memory table the walk checks against.
pub static READABLE: AtomicPtr<ReadableRanges> = AtomicPtr::new(std::ptr::null_mut());
/// One ring per profiled thread, indexed by the slot in the timer's `si_value`.
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicPtr<Ring> = AtomicPtr::new(std::ptr::null_mut());
pub static SLOTS: [AtomicPtr<Ring>; MAX_SLOTS] = [EMPTY; MAX_SLOTS];

/// The SIGPROF action that was in place before ours (chained to for foreign
/// signals), or null. Replaced, never freed, if someone displaces our handler
/// and we reinstall it: a handler may be reading the old one.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
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
    // interrupted code's errno intact whatever happens below.
    let errno = unsafe { *libc::__errno_location() };
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; we
    // read the timer fields only when si_code says it is a timer signal.
    let timer = unsafe { (info as *const TimerInfo).as_ref() };
    match timer {
        Some(t) if t.code == SI_TIMER && t.value & 0xFFFF_FFFF_0000_0000 == MAGIC => {
            let slot = (t.value & 0xFFFF_FFFF) as usize;
            if ENABLED.load(Ordering::Acquire) && slot < MAX_SLOTS {
                let ring = SLOTS[slot].load(Ordering::Acquire);
                // SAFETY: a non-null slot points to a live ring; rings are
                // freed only after being unpublished and ACTIVE drops to 0.
                if let Some(ring) = unsafe { ring.as_ref() } {
                    // SAFETY: as above for the table; context is the
                    // kernel's ucontext for this signal.
                    unsafe { record(ring, t.overrun, context) };
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

/// # Safety
/// Called from the handler with a live ring and the signal's ucontext.
#[inline]
unsafe fn record(ring: &Ring, overrun: i32, context: *mut c_void) {
    let periods = 1 + overrun.max(0) as u32;
    // SAFETY: this thread's handler is the ring's only producer, and SIGPROF
    // is blocked while it runs, so it cannot re-enter.
    let Some(slot) = (unsafe { ring.reserve() }) else {
        ring.dropped_periods
            .fetch_add(u64::from(periods), Ordering::Relaxed);
        return;
    };
    // SAFETY: reserve handed us exclusive access to this record.
    let record = unsafe { &mut *slot };
    record.periods = periods;
    // SAFETY: context is the ucontext_t the kernel built for this signal.
    let regs = unsafe { registers(context) };
    // SAFETY: tables are retired only when no handler runs.
    let table = unsafe { READABLE.load(Ordering::Acquire).as_ref() };
    // SAFETY: the table describes mapped memory (see walk's contract).
    unsafe { walk(regs, table, record) };
    ring.publish();
}

#[cfg(target_arch = "x86_64")]
unsafe fn registers(context: *mut c_void) -> Registers {
    // SAFETY: the caller passes the kernel's ucontext_t.
    let gregs = unsafe { &(*(context as *const libc::ucontext_t)).uc_mcontext.gregs };
    Registers {
        pc: gregs[libc::REG_RIP as usize] as u64,
        fp: gregs[libc::REG_RBP as usize] as u64,
        sp: gregs[libc::REG_RSP as usize] as u64,
        lr: None,
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
        lr: Some(m.regs[30]),
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

/// Waits until no handler is running, so memory they could see can be freed.
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
