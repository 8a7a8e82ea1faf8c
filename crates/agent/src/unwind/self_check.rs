//! Does unwinding work in this build? Checked once, on a call chain of the
//! agent's own whose shape is known, so a profile of a service where it does
//! not (tables missing, a toolchain we do not understand) says so in the log
//! and in the file instead of quietly showing short stacks.

use std::hint::black_box;
use std::sync::OnceLock;

use super::{memory, CopiedStack, Registers, StackUnwinder};

/// What the check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SelfCheck {
    /// A copied stack (the CPU sampler's way) unwound through the chain.
    pub(crate) copied: bool,
    /// The allocator's in-place walk went through the chain.
    pub(crate) in_place: bool,
}

impl SelfCheck {
    /// A line for a profile's comments when something failed.
    pub(crate) fn comment(&self) -> Option<String> {
        (!self.copied || !self.in_place).then(|| {
            format!(
                "firewatch: unwinding self-check failed ({}{}): stacks in this profile may be \
                 cut short; see docs/agent.md, \"Stacks in your build\"",
                if self.copied { "" } else { "copied stacks" },
                if self.in_place {
                    ""
                } else if self.copied {
                    "allocator stacks"
                } else {
                    ", allocator stacks"
                }
            )
        })
    }
}

/// The check's result, run on first use (and logged once if it failed).
pub(crate) fn result() -> SelfCheck {
    static RESULT: OnceLock<SelfCheck> = OnceLock::new();
    *RESULT.get_or_init(|| {
        let result = SelfCheck {
            copied: copied_stack_check(),
            in_place: in_place_check(),
        };
        if let Some(comment) = result.comment() {
            log::warn!("{comment}");
        }
        result
    })
}

/// Functions of the chain are this small; a return address into one lies
/// within this many bytes of its start.
const FUNCTION_SPAN: u64 = 1024;

fn within(addr: u64, function: u64) -> bool {
    addr > function && addr < function + FUNCTION_SPAN
}

// ---- The CPU sampler's way: registers and a stack copy, unwound later.

#[inline(never)]
fn copy_here() -> (Registers, Vec<u8>) {
    let (pc, sp, fp) = super::registers_here();
    let mut copy = vec![0u8; 16 * 1024];
    memory::remember_pid();
    let n = memory::copy(sp, &mut copy);
    copy.truncate(n);
    (Registers { pc, sp, fp, lr: 0 }, copy)
}

#[inline(never)]
fn copy_two() -> (Registers, Vec<u8>) {
    let r = black_box(copy_here());
    black_box(r)
}

#[inline(never)]
fn copy_one() -> (Registers, Vec<u8>) {
    let r = black_box(copy_two());
    black_box(r)
}

fn copied_stack_check() -> bool {
    let (regs, copy) = copy_one();
    let mut unwinder = StackUnwinder::new();
    let mut frames = Vec::new();
    let stack = CopiedStack {
        start: regs.sp,
        bytes: &copy,
    };
    unwinder.unwind(regs, stack, 16, &mut frames);
    // [pc in copy_here, return into copy_two, return into copy_one, ...]
    frames.len() >= 3
        && within(frames[1], copy_two as *const () as u64)
        && within(frames[2], copy_one as *const () as u64)
}

// ---- The allocator's way: walking the own stack in place.

#[inline(never)]
fn in_place_here(frames: &mut [u64; 8]) -> Option<usize> {
    let bounds = crate::alloc::stack::query_stack_bounds()?;
    let n = super::in_place::capture(bounds, frames).ok();
    black_box(n)
}

#[inline(never)]
fn in_place_two(frames: &mut [u64; 8]) -> Option<usize> {
    let r = black_box(in_place_here(frames));
    black_box(r)
}

#[inline(never)]
fn in_place_one(frames: &mut [u64; 8]) -> Option<usize> {
    let r = black_box(in_place_two(frames));
    black_box(r)
}

fn in_place_check() -> bool {
    super::in_place::prepare();
    let mut frames = [0u64; 8];
    // `capture` returns the frames above its caller's caller: here the
    // return into `in_place_two`, then into `in_place_one`.
    match in_place_one(&mut frames) {
        Some(n) if n >= 2 => {
            within(frames[0], in_place_two as *const () as u64)
                && within(frames[1], in_place_one as *const () as u64)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwinding_works_in_the_test_build() {
        assert_eq!(
            result(),
            SelfCheck {
                copied: true,
                in_place: true
            }
        );
        assert_eq!(result().comment(), None);
        let failed = SelfCheck {
            copied: false,
            in_place: false,
        };
        assert!(failed
            .comment()
            .unwrap()
            .contains("copied stacks, allocator stacks"));
    }
}
