//! Per-thread sample rings: single producer (the SIGPROF handler on one
//! thread), single consumer (the profiler thread).
//!
//! Records have a fixed size, so the handler only stores words: no
//! allocation, no locks, no syscalls. A full ring drops the sample and
//! counts the CPU time it stood for, which the profile then reports.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Deepest stack recorded; deeper stacks are cut and marked truncated.
pub const MAX_DEPTH: usize = 128;
/// Records per thread: at the kernel's tick rate (≤1000 Hz) and a 20 ms
/// drain period, a ring holds several drain periods of samples.
pub const CAPACITY: usize = 64;

pub const FLAG_TRUNCATED: u32 = 1;
/// The stack pointer was in no known readable mapping: only the PC was kept.
pub const FLAG_NO_STACK: u32 = 2;

#[repr(C)]
pub struct Record {
    /// Timer periods this sample stands for (1 + overruns).
    pub periods: u32,
    pub flags: u32,
    pub depth: u32,
    /// The word at the interrupted stack pointer (0 when unreadable): the
    /// return address when the leaf is a frameless function or is in its
    /// prologue or epilogue, which the frame-pointer chain would skip.
    pub sp_word: u64,
    /// Leaf first: the interrupted PC, then return addresses.
    pub frames: [u64; MAX_DEPTH],
}

pub struct Ring {
    head: AtomicUsize,
    tail: AtomicUsize,
    /// Periods of samples dropped because the ring was full.
    pub dropped_periods: AtomicU64,
    records: Box<[UnsafeCell<Record>]>,
}

// SAFETY: the ring is shared between one producer and one consumer that
// coordinate through `head`/`tail` (release/acquire): a record is written
// only by the producer while it is outside `tail..head`, and read only by the
// consumer while it is inside.
unsafe impl Sync for Ring {}

impl Ring {
    pub fn new() -> Box<Ring> {
        let records = (0..CAPACITY)
            .map(|_| {
                UnsafeCell::new(Record {
                    periods: 0,
                    flags: 0,
                    depth: 0,
                    sp_word: 0,
                    frames: [0; MAX_DEPTH],
                })
            })
            .collect();
        Box::new(Ring {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped_periods: AtomicU64::new(0),
            records,
        })
    }

    /// Producer side: the next free record, or `None` when full (the caller
    /// counts the drop). Finish with [`Ring::publish`].
    ///
    /// # Safety
    /// Only the ring's single producer may call this, and must not call it
    /// again before `publish`.
    #[inline]
    pub unsafe fn reserve(&self) -> Option<*mut Record> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= CAPACITY {
            return None;
        }
        Some(self.records[head % CAPACITY].get())
    }

    /// Producer side: makes the reserved record visible to the consumer.
    #[inline]
    pub fn publish(&self) {
        let head = self.head.load(Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
    }

    /// Consumer side: hands every published record to `each`, then frees them.
    pub fn drain(&self, mut each: impl FnMut(&Record)) {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let mut at = tail;
        while at != head {
            // SAFETY: records in tail..head were published (release) and the
            // producer will not touch them until `tail` moves past them.
            each(unsafe { &*self.records[at % CAPACITY].get() });
            at = at.wrapping_add(1);
        }
        self.tail.store(head, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_order_and_overflow_is_refused() {
        let ring = Ring::new();
        for i in 0..CAPACITY {
            // SAFETY: this test is the only producer.
            let rec = unsafe { ring.reserve() }.expect("room");
            unsafe { (*rec).periods = i as u32 };
            ring.publish();
        }
        assert!(unsafe { ring.reserve() }.is_none(), "full");
        let mut seen = Vec::new();
        ring.drain(|r| seen.push(r.periods));
        assert_eq!(seen, (0..CAPACITY as u32).collect::<Vec<_>>());
        assert!(
            unsafe { ring.reserve() }.is_some(),
            "room again after draining"
        );
    }
}
