//! Unwinding: from registers and a copy of a thread's stack to the chain of
//! return addresses, without frame pointers and without ever faulting.
//!
//! - [`memory`] is the only way the agent reads memory it does not own (a
//!   kernel copy that fails instead of faulting).
//! - [`modules`] copies every loaded module's `.eh_frame` tables.
//! - [`in_place`] walks the current thread's own stack from inside the
//!   sampling allocator, with tables prepared beforehand.
//! - [`StackUnwinder`] walks a *copied* stack with those tables (DWARF CFI,
//!   through `framehop`), and with frame pointers where no table covers the
//!   code (JIT code, hand-written assembly). Every stack read goes to the
//!   copy, so a wrong rule or a garbage register ends the walk, never the
//!   process.
//!
//! The CPU sampler's signal handler only copies registers and the stack
//! window; the unwinding happens later on the sampler's own thread, where
//! allocating and reading `/proc` are allowed (see `cpu`).

pub(crate) mod in_place;
pub(crate) mod memory;
mod modules;
pub(crate) mod self_check;

use std::ops::Range;
use std::time::{Duration, Instant};

use framehop::{MayAllocateDuringUnwind, Unwinder};

use modules::Bytes;

#[cfg(target_arch = "x86_64")]
type NativeUnwinder = framehop::x86_64::UnwinderX86_64<Bytes, MayAllocateDuringUnwind>;
#[cfg(target_arch = "x86_64")]
type NativeCache = framehop::x86_64::CacheX86_64<MayAllocateDuringUnwind>;
#[cfg(target_arch = "aarch64")]
type NativeUnwinder = framehop::aarch64::UnwinderAarch64<Bytes, MayAllocateDuringUnwind>;
#[cfg(target_arch = "aarch64")]
type NativeCache = framehop::aarch64::CacheAarch64<MayAllocateDuringUnwind>;

/// The address bits of a code pointer on aarch64 Linux: user addresses have
/// at most 48 bits, and the bits above may hold a pointer-authentication
/// code (return addresses saved by code built with
/// `-mbranch-protection=pac-ret`). Every unwinder strips it.
#[cfg(target_arch = "aarch64")]
pub(crate) const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_ffff;

/// The interrupted thread's registers that unwinding starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Registers {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// aarch64's link register (0 elsewhere).
    pub(crate) lr: u64,
}

/// A copy of a thread's stack from its stack pointer upwards.
#[derive(Clone, Copy)]
pub(crate) struct CopiedStack<'a> {
    /// The address `bytes[0]` was copied from.
    pub(crate) start: u64,
    pub(crate) bytes: &'a [u8],
}

impl CopiedStack<'_> {
    /// The 8 bytes at `addr`, if the copy holds them.
    fn read(&self, addr: u64) -> Result<u64, ()> {
        let at = usize::try_from(addr.checked_sub(self.start).ok_or(())?).map_err(|_| ())?;
        let word = self.bytes.get(at..at.checked_add(8).ok_or(())?).ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
    }
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// At the outermost frame.
    Complete,
    /// The next frame lies beyond the copied part of the stack (a stack
    /// deeper than the copy window) or beyond `max` frames.
    Truncated,
    /// No rule could find the caller (garbage frame pointer, no table).
    Lost,
}

/// Unwinds copied stacks with the unwind tables of the modules loaded now.
/// One per sampler thread; not for signal handlers (it allocates).
pub(crate) struct StackUnwinder {
    unwinder: NativeUnwinder,
    cache: NativeCache,
    /// Executable ranges of the known modules, sorted.
    code: Vec<Range<u64>>,
    /// Executable mappings found without a readable unwind table.
    pub(crate) without_tables: usize,
    reloaded: Instant,
}

/// Addresses in no known module trigger a reload at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

impl StackUnwinder {
    pub(crate) fn new() -> StackUnwinder {
        memory::remember_pid();
        let mut unwinder = StackUnwinder {
            unwinder: NativeUnwinder::new(),
            cache: NativeCache::new(),
            code: Vec::new(),
            without_tables: 0,
            reloaded: Instant::now(),
        };
        unwinder.load();
        unwinder
    }

    fn load(&mut self) {
        let (modules, without_tables) = modules::load();
        let mut unwinder = NativeUnwinder::new();
        self.code.clear();
        for m in modules {
            self.code.push(m.code.clone());
            unwinder.add_module(m.module);
        }
        self.unwinder = unwinder;
        self.without_tables = without_tables;
        self.reloaded = Instant::now();
    }

    /// Whether `addr` is code of a module whose tables are loaded.
    fn knows(&self, addr: u64) -> bool {
        let i = self.code.partition_point(|r| r.start <= addr);
        i > 0 && self.code[i - 1].contains(&addr)
    }

    /// The stack of `regs` into `out` (leaf PC first, then return
    /// addresses, at most `max`), and how the walk ended. A PC in code the
    /// tables do not cover yet (a library `dlopen`ed since) reloads them
    /// first, at most once a second.
    pub(crate) fn unwind(
        &mut self,
        regs: Registers,
        stack: CopiedStack<'_>,
        max: usize,
        out: &mut Vec<u64>,
    ) -> Ending {
        if !self.knows(regs.pc) && self.reloaded.elapsed() >= RELOAD_AT_MOST_EVERY {
            self.load();
        }
        // framehop's address arithmetic panics on overflow in builds with
        // overflow checks, for garbage register values: a lost stack, not a
        // dead profiler thread.
        let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.walk(regs, stack, max, out)
        }));
        walked.unwrap_or_else(|_| {
            out.clear();
            out.push(regs.pc);
            Ending::Lost
        })
    }

    fn walk(
        &mut self,
        regs: Registers,
        stack: CopiedStack<'_>,
        max: usize,
        out: &mut Vec<u64>,
    ) -> Ending {
        out.clear();
        let mut read = |addr: u64| stack.read(addr);
        let mut frames =
            self.unwinder
                .iter_frames(regs.pc, native_registers(regs), &mut self.cache, &mut read);
        loop {
            match frames.next() {
                Ok(Some(frame)) => {
                    if out.len() == max {
                        return Ending::Truncated;
                    }
                    out.push(code_address(frame.address()));
                }
                Ok(None) => return Ending::Complete,
                Err(framehop::Error::CouldNotReadStack(addr))
                    if addr >= stack.start + stack.bytes.len() as u64 =>
                {
                    return Ending::Truncated
                }
                Err(_) => return Ending::Lost,
            }
        }
    }
}

/// framehop's registers for `regs`, on this architecture.
#[cfg(target_arch = "x86_64")]
fn native_registers(regs: Registers) -> framehop::x86_64::UnwindRegsX86_64 {
    framehop::x86_64::UnwindRegsX86_64::new(regs.pc, regs.sp, regs.fp)
}

/// framehop's registers for `regs`, on this architecture: return addresses
/// read from the stack are stripped of their pointer-authentication code.
#[cfg(target_arch = "aarch64")]
fn native_registers(regs: Registers) -> framehop::aarch64::UnwindRegsAarch64 {
    let mask = framehop::aarch64::PtrAuthMask(ADDRESS_MASK);
    framehop::aarch64::UnwindRegsAarch64::new_with_ptr_auth_mask(mask, regs.lr, regs.sp, regs.fp)
}

/// A code address as found on the stack, without a pointer-authentication
/// code (framehop's slow DWARF path can return one unstripped).
#[inline]
fn code_address(addr: u64) -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        addr & ADDRESS_MASK
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        addr
    }
}

/// The program counter, stack pointer and frame pointer at this point of
/// the caller (inlined into it).
#[inline(always)]
pub(crate) fn registers_here() -> (u64, u64, u64) {
    let (pc, sp, fp): (u64, u64, u64);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads registers and the address of the next instruction.
    unsafe {
        std::arch::asm!("lea {pc}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
            options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads registers and the address of this instruction.
    unsafe {
        std::arch::asm!("adr {pc}, .", "mov {sp}, sp", "mov {fp}, x29",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
            options(nomem, nostack, preserves_flags));
    }
    (pc, sp, fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers and a copy of the current thread's stack, taken in a
    /// function that then returns: the copy is a faithful picture of the
    /// stack at that moment, as the signal handler would take it.
    #[inline(never)]
    fn snapshot_here(window: usize) -> (Registers, Vec<u8>) {
        let (pc, sp, fp) = registers_here();
        let mut copy = vec![0u8; window];
        memory::remember_pid();
        let n = memory::copy(sp, &mut copy);
        copy.truncate(n);
        let lr = 0;
        (Registers { pc, sp, fp, lr }, copy)
    }

    #[inline(never)]
    fn chain_three(window: usize) -> (Registers, Vec<u8>) {
        std::hint::black_box(snapshot_here(window))
    }
    #[inline(never)]
    fn chain_two(window: usize) -> (Registers, Vec<u8>) {
        std::hint::black_box(chain_three(window))
    }
    #[inline(never)]
    fn chain_one(window: usize) -> (Registers, Vec<u8>) {
        std::hint::black_box(chain_two(window))
    }

    fn names(addrs: &[u64]) -> Vec<String> {
        let mut s = crate::symbolize::Symbolizer::new();
        addrs
            .iter()
            .enumerate()
            .flat_map(|(i, &a)| {
                let a = if i == 0 { a } else { a - 1 };
                s.resolve(a)
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn unwinds_a_copied_stack_through_a_known_chain() {
        let (regs, copy) = chain_one(64 * 1024);
        let mut unwinder = StackUnwinder::new();
        let mut out = Vec::new();
        let stack = CopiedStack {
            start: regs.sp,
            bytes: &copy,
        };
        let ending = unwinder.unwind(regs, stack, 128, &mut out);
        let names = names(&out);
        let position = |f: &str| names.iter().position(|n| n.ends_with(f));
        let (three, two, one) = (
            position("chain_three"),
            position("chain_two"),
            position("chain_one"),
        );
        assert!(
            three.is_some() && three < two && two < one,
            "{ending:?} {names:#?}"
        );
        assert!(
            position("unwinds_a_copied_stack_through_a_known_chain") > one,
            "{names:#?}"
        );

        // A copy that ends early truncates the walk; it never reads past it.
        let short = CopiedStack {
            start: regs.sp,
            bytes: &copy[..64.min(copy.len())],
        };
        let ending = unwinder.unwind(regs, short, 128, &mut out);
        assert_ne!(ending, Ending::Complete, "{out:x?}");
        // A depth limit truncates.
        assert_eq!(unwinder.unwind(regs, stack, 2, &mut out), Ending::Truncated);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn garbage_registers_end_the_walk_without_reading_outside_the_copy() {
        let mut unwinder = StackUnwinder::new();
        let mut out = Vec::new();
        let copy = [0xAAu8; 256];
        let top = u64::MAX - 255;
        let known = unwinds_a_copied_stack_through_a_known_chain as *const () as u64;
        for (pc, sp, fp, start) in [
            (0, 0, 0, 0x1000),
            (1, u64::MAX - 7, u64::MAX, 0x1000),
            (0xdead_beef, 0x1000, 0x1008, 0x1000),
            (known, 0x1000, 0x1010, 0x1000),
            // A frame record at the top of the address space: the next
            // frame's address overflows: the walk ends.
            (0xdead_beef, top, u64::MAX - 15, top),
        ] {
            let regs = Registers { pc, sp, fp, lr: 0 };
            let stack = CopiedStack {
                start,
                bytes: &copy,
            };
            unwinder.unwind(regs, stack, 128, &mut out);
            assert!(!out.is_empty() && out.len() <= 128);
        }
    }
}
