//! Where the signal handler leaves its samples: one pool for the whole
//! process, sized by CPUs, not by threads.
//!
//! A sample is the interrupted registers and a copy of the stack above the
//! stack pointer (up to [`WINDOW`] bytes), unwound later by the sampler
//! thread. Only as many handlers run at once as there are CPUs, and the
//! sampler empties the pool every 20 ms, so a few dozen slots per CPU
//! suffice however many threads the process has (per-thread buffers of this
//! size would cost gigabytes at thousands of threads).
//!
//! Memory: [`slots_for`] × (`WINDOW` + 64 bytes): 2 CPUs → 64 slots, 2 MiB;
//! capped at 512 slots (16 MiB). Allocated when a profile starts, freed
//! when it stops (while handlers may still be running: how that is safe is
//! argued at `signal::POOL` and checked by `scripts/model-check.sh`).
//!
//! Each slot has a state word. The handler claims a free slot with one
//! compare-and-swap (scanning from a rotating start), fills it, and marks
//! it ready; the sampler thread takes ready slots and frees them. No locks,
//! no allocation: a handler that finds no free slot counts the periods it
//! drops, and the profile reports them.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::cpu::WINDOW;
use crate::unwind::{memory, Registers};

const FREE: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

/// What the handler records besides the stack copy.
#[derive(Clone, Copy, Default)]
pub(crate) struct Header {
    /// The thread's slot in the sampler's table and its generation (from
    /// the timer's `si_value`), checked when the sample is taken out.
    pub(crate) thread: u32,
    pub(crate) generation: u32,
    /// Timer periods this sample stands for (1 + overruns).
    pub(crate) periods: u32,
    /// Bytes of the stack copied (0: the stack pointer was not readable).
    pub(crate) copied: u32,
    /// The label set installed on the thread when it was interrupted
    /// (`crate::labels`; 0: none).
    pub(crate) labels: u32,
    pub(crate) regs: Registers,
}

pub(crate) struct Pool {
    states: Box<[AtomicU32]>,
    headers: Box<[UnsafeCell<Header>]>,
    /// `states.len()` stack copies of `WINDOW` bytes, one after another:
    /// a leaked `Box<[u8]>` (taken back in `Drop`), so slots can be lent out
    /// mutably through `&Pool` under the state protocol.
    stacks: *mut u8,
    next: AtomicUsize,
    /// Periods of samples dropped because every slot was taken.
    pub(crate) dropped_periods: AtomicU64,
}

// SAFETY: `stacks` is owned by the pool (freed in `Drop`); a slot's header and stack are written only by the handler that
// moved its state FREE → WRITING (one compare-and-swap winner) until it
// stores READY (release), and read only by the sampler thread after it saw
// READY (acquire) until it stores FREE (release); the handler's acquire
// compare-and-swap orders the next write after that.
unsafe impl Sync for Pool {}

/// Slots for a machine with `cpus` CPUs.
pub(crate) fn slots_for(cpus: usize) -> usize {
    (32 * cpus).clamp(64, 512)
}

impl Pool {
    pub(crate) fn new(slots: usize) -> Box<Pool> {
        let stacks = Box::into_raw(vec![0u8; slots * WINDOW].into_boxed_slice()).cast::<u8>();
        Box::new(Pool {
            states: (0..slots).map(|_| AtomicU32::new(FREE)).collect(),
            headers: (0..slots)
                .map(|_| UnsafeCell::new(Header::default()))
                .collect(),
            stacks,
            next: AtomicUsize::new(0),
            dropped_periods: AtomicU64::new(0),
        })
    }

    /// Handler side: records a sample of `header.regs` with a copy of the
    /// stack from its stack pointer, or counts it as dropped. Async-signal-
    /// safe: atomics and one `process_vm_readv`.
    pub(crate) fn record(&self, mut header: Header) {
        let slots = self.states.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..slots {
            let k = (start + i) % slots;
            if self.states[k]
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: we won slot k (FREE → WRITING): nobody else touches it
            // until we store READY; slot k's bytes lie inside the allocation.
            let stack =
                unsafe { std::slice::from_raw_parts_mut(self.stacks.add(k * WINDOW), WINDOW) };
            header.copied = memory::copy(header.regs.sp, stack) as u32;
            // SAFETY: as above.
            unsafe { *self.headers[k].get() = header };
            self.states[k].store(READY, Ordering::Release);
            return;
        }
        self.dropped_periods
            .fetch_add(u64::from(header.periods), Ordering::Relaxed);
    }

    /// Sampler side: hands every ready sample to `each` (header, copied
    /// stack), then frees its slot.
    pub(crate) fn drain(&self, mut each: impl FnMut(&Header, &[u8])) {
        for (k, state) in self.states.iter().enumerate() {
            if state.load(Ordering::Acquire) != READY {
                continue;
            }
            // SAFETY: READY (acquire) means the handler finished writing and
            // will not touch the slot until we store FREE.
            let header = unsafe { &*self.headers[k].get() };
            let copied = (header.copied as usize).min(WINDOW);
            // SAFETY: as above; slot k's bytes lie inside the allocation.
            let stack = unsafe { std::slice::from_raw_parts(self.stacks.add(k * WINDOW), copied) };
            each(header, stack);
            state.store(FREE, Ordering::Release);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let len = self.states.len() * WINDOW;
        // SAFETY: `stacks` came from a boxed slice of exactly `len` bytes in
        // `new`, and is given back once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.stacks, len)) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_out_once_and_a_full_pool_counts_drops() {
        memory::remember_pid();
        let pool = Pool::new(4);
        let local = [7u64; 64];
        let sp = local.as_ptr() as u64;
        for i in 0..6 {
            pool.record(Header {
                thread: i,
                periods: 2,
                regs: Registers {
                    sp,
                    ..Registers::default()
                },
                ..Header::default()
            });
        }
        assert_eq!(pool.dropped_periods.load(Ordering::Relaxed), 4);
        let mut seen = Vec::new();
        pool.drain(|h, stack| {
            assert!(stack.len() >= 64 * 8);
            assert_eq!(&stack[..8], &7u64.to_le_bytes());
            seen.push(h.thread);
        });
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3]);
        pool.drain(|_, _| panic!("drained twice"));
        // An unreadable stack pointer: a sample with an empty copy.
        pool.record(Header {
            regs: Registers {
                sp: 16,
                ..Registers::default()
            },
            ..Header::default()
        });
        pool.drain(|h, stack| assert_eq!((h.copied, stack.len()), (0, 0)));
        assert_eq!(slots_for(2), 64);
        assert_eq!(slots_for(64), 512);
    }
}
