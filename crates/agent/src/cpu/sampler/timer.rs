//! Per-thread CPU-time timers: `timer_create` on a thread's CPU clock with
//! `SIGEV_THREAD_ID`, as Go (≥1.18) does. Each timer signals the thread it
//! measures, when that thread has used one period of CPU, so busy threads are
//! sampled in proportion to their CPU use (a process-wide `setitimer` has one
//! pending signal per process and loses the rest).

use std::io;

pub struct ThreadTimer {
    id: libc::timer_t,
}

// SAFETY: a timer_t is a kernel handle; any thread may arm or delete it.
unsafe impl Send for ThreadTimer {}

/// The CPU-time clock of thread `tid` of this process (Linux's
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`).
fn thread_cpu_clock(tid: libc::pid_t) -> libc::clockid_t {
    ((!tid) << 3) | 6
}

impl ThreadTimer {
    /// A timer on thread `tid`'s CPU clock that sends SIGPROF, carrying
    /// `value` (see `signal::timer_value`), to that thread every
    /// `period_ns` of its CPU time.
    pub fn start(tid: libc::pid_t, value: u64, period_ns: u64) -> io::Result<ThreadTimer> {
        // SAFETY: a zeroed sigevent with the fields SIGEV_THREAD_ID needs.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = libc::SIGPROF;
        event.sigev_notify_thread_id = tid;
        event.sigev_value = libc::sigval {
            sival_ptr: value as usize as *mut libc::c_void,
        };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid clock id, event and out-pointer.
        if unsafe { libc::timer_create(thread_cpu_clock(tid), &mut event, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let timer = ThreadTimer { id };
        let period = libc::timespec {
            tv_sec: (period_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (period_ns % 1_000_000_000) as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        // SAFETY: a timer we own and a valid itimerspec.
        if unsafe { libc::timer_settime(timer.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(timer)
    }
}

impl ThreadTimer {
    /// Whether the thread this timer measures has exited: the kernel
    /// disarms a CPU-clock timer whose thread is gone. Its tid may already
    /// belong to a new thread, which this timer will never sample.
    pub fn watches_an_exited_thread(&self) -> bool {
        // SAFETY: a zeroed itimerspec filled by timer_gettime for a timer we own.
        let mut current: libc::itimerspec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::timer_gettime(self.id, &mut current) } != 0 {
            return true;
        }
        current.it_value.tv_sec == 0 && current.it_value.tv_nsec == 0
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: deleting a timer we own; afterwards it sends no signal.
        unsafe { libc::timer_delete(self.id) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_knows_when_its_thread_has_exited() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        // A value no handler recognises as ours: stray signals are ignored
        // (none fire anyway: the thread sleeps).
        let timer = ThreadTimer::start(tid, 0, 1_000_000_000).unwrap();
        assert!(!timer.watches_an_exited_thread());
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        // `join` returns when the thread's tid is cleared, a little before
        // the kernel reaps the thread and its clock stops: wait for that
        // (the deadline only catches a timer that never notices; the
        // sampler's once-a-second check is as patient). 1 in 30 runs failed
        // when this asserted right after `join`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !timer.watches_an_exited_thread() {
            assert!(
                std::time::Instant::now() < deadline,
                "the timer never saw its thread exit"
            );
            std::thread::yield_now();
        }
    }
}
