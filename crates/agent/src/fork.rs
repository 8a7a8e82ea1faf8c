//! What the agent does in a child process made by `fork()`.
//!
//! Only the forking thread exists in the child; the agent thread, the
//! profiler thread and every other thread are gone, and with them anything
//! they were in the middle of. POSIX timers are not inherited. So a child
//! handler, registered with `pthread_atfork` the first time a profile or the
//! allocator's unwind tables are set up, puts the agent's process-wide state
//! back to idle: no CPU profile running (a child can start its own), no
//! walk or preparation in progress, the sampled-block range not half
//! reserved, no stale `/proc/self/mem` of the parent. It only stores to
//! atomics, as a handler running right after `fork` in a multi-threaded
//! process must.
//!
//! Nothing restarts the agent in the child: a pre-forking server that wants
//! captures from its workers starts an `Agent` in each worker after the fork
//! (the output directory and file names carry the worker's pid).

use std::sync::Once;

/// Registers the child handler, once per process.
pub(crate) fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a handler that only stores to atomics; the
        // other two hooks are none.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            log::warn!("firewatch: pthread_atfork failed ({rc}): a forked child cannot profile");
        }
    });
}

extern "C" fn in_child() {
    crate::cpu::after_fork_in_child();
    crate::unwind::in_place::after_fork_in_child();
    crate::unwind::memory::after_fork_in_child();
    crate::alloc::after_fork_in_child();
}
