//! Hooks for the project's benchmarks and tests: not part of the API.
//!
//! They expose the unwinding steps one at a time, so `benches/unwind.rs`
//! can time each on a stack of known depth.

use crate::unwind::{memory, registers_here, CopiedStack, Registers, StackUnwinder};

/// Registers and a copy of the stack, as the CPU sampler's signal handler
/// takes them.
#[derive(Default)]
pub struct StackSample {
    regs: Registers,
    copy: Vec<u8>,
}

impl StackSample {
    /// Bytes of stack copied.
    pub fn copied(&self) -> usize {
        self.copy.len()
    }

    /// Registers here and a copy of up to `window` bytes of this thread's
    /// stack (one `process_vm_readv`, as in the signal handler; the buffer
    /// is reused).
    #[inline(never)]
    pub fn capture_here(&mut self, window: usize) {
        let (pc, sp, fp) = registers_here();
        memory::remember_pid();
        self.copy.resize(window, 0);
        let n = memory::copy(sp, &mut self.copy);
        self.copy.truncate(n);
        self.regs = Registers { pc, sp, fp, lr: 0 };
    }
}

/// The sampler thread's unwinder.
pub struct Unwinder(StackUnwinder);

impl Default for Unwinder {
    fn default() -> Self {
        Unwinder(StackUnwinder::new())
    }
}

impl Unwinder {
    /// Unwinds `sample` (at most 128 frames); the number of frames.
    pub fn unwind(&mut self, sample: &StackSample, frames: &mut Vec<u64>) -> usize {
        let stack = CopiedStack {
            start: sample.regs.sp,
            bytes: &sample.copy,
        };
        self.0.unwind(sample.regs, stack, 128, frames);
        frames.len()
    }
}

/// The sampling allocator's walk of the current stack (tables prepared
/// first); `None` when it fell back. The stack's bounds are looked up once
/// per thread, as the allocator does (`pthread_getattr_np` reads
/// `/proc/self/maps` for the main thread: ~20 µs).
#[inline(never)]
pub fn unwind_in_place_here(frames: &mut [u64]) -> Option<usize> {
    thread_local! {
        static BOUNDS: Option<(usize, usize)> = crate::alloc::stack::query_stack_bounds();
    }
    let bounds = BOUNDS.with(|b| *b)?;
    crate::unwind::in_place::capture(bounds, frames).ok()
}

/// Prepares the allocator's unwind tables (as `Agent::start` does).
pub fn prepare_in_place() {
    crate::unwind::in_place::prepare();
}

/// Restarts the calling thread's allocation-sampling generator from `seed`,
/// for reproducible runs. `interval` must be the allocator's.
pub fn reseed_allocator_thread(seed: u64, interval: usize) {
    crate::alloc::reseed_current_thread(seed, interval);
}

pub use crate::alloc::{BucketRecord, Reclaimed};

/// Every bucket of the sampling allocator with sampled allocations.
pub fn bucket_records() -> Vec<BucketRecord> {
    crate::alloc::bucket_records()
}

/// Bucket-table entries reused once the table filled.
pub fn reclaimed() -> Reclaimed {
    crate::alloc::reclaimed()
}

/// The memory limit the RSS threshold is a percentage of.
pub fn memory_limit_bytes() -> Option<u64> {
    crate::process::memory_limit_bytes()
}

/// Frees parsed debug info and the shared cache of resolved frames, so the
/// next snapshot starts cold.
pub fn forget_symbols() {
    crate::symbolize::Symbolizer::release_debug_info();
    crate::symbolize::Symbolizer::clear_shared_cache();
}

/// The CPU look-back sampler's windows filled with made-up stacks, to
/// measure what they take (`benches/lookback.rs`).
pub struct LookbackHistory(crate::cpu::SyntheticHistory);

impl LookbackHistory {
    /// `windows` one-second windows of `per_window` stacks `depth` frames
    /// deep each, within `memory_limit` bytes; with `distinct`, no stack
    /// repeats across windows, without, every window holds the same ones.
    pub fn fill(
        windows: usize,
        per_window: usize,
        depth: usize,
        distinct: bool,
        memory_limit: usize,
    ) -> LookbackHistory {
        LookbackHistory(crate::cpu::SyntheticHistory::fill(
            windows,
            per_window,
            depth,
            distinct,
            memory_limit,
        ))
    }

    /// The history's own estimate of its bytes (what its limit applies to).
    pub fn estimated_bytes(&self) -> usize {
        self.0.estimated_bytes()
    }

    /// Windows kept.
    pub fn windows(&self) -> usize {
        self.0.windows()
    }

    /// Windows dropped to stay within the limit.
    pub fn dropped(&self) -> usize {
        self.0.dropped()
    }

    /// (stack, thread) entries in the windows kept.
    pub fn entries(&self) -> usize {
        self.0.entries()
    }

    /// Copies and merges every window kept, as a capture does when it
    /// begins; returns the distinct stacks of the copy.
    pub fn take_all(&self) -> usize {
        self.0.take_all()
    }
}

/// Turns the SIGPROF handler's read of the label set on or off while a
/// profile runs (it is decided again when the next profile starts): for
/// `benches/labels.rs`'s overhead comparison.
pub fn set_labels_in_handler(on: bool) {
    crate::cpu::set_labels_in_handler(on);
}

/// The label set a [`BucketRecord`]'s `labels` id stands for.
pub fn label_set_of(id: u32) -> crate::labels::LabelSet {
    crate::labels::LabelSet::from_id(id)
}
