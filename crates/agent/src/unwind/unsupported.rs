//! Unwinding where it does not exist: anything but Linux on x86_64 and
//! aarch64 (the unwind tables are read through `/proc/self/maps` and
//! `process_vm_readv`, and framehop knows those two architectures). The
//! CPU sampler is not built there (`crate::cpu`); the sampling allocator's
//! "in-place walk" is its frame-pointer walk, where it has one (Linux on
//! x86), and the stacks of sampled allocations are empty elsewhere.

/// The address bits of a code pointer on aarch64 (see the Linux module).
#[cfg(target_arch = "aarch64")]
pub(crate) const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_ffff;

pub(crate) mod in_place {
    use crate::alloc::MAX_FRAMES;

    /// Why a walk could not use unwind tables (never, here: there are none
    /// to use, so frame pointers are the walk).
    #[allow(dead_code)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Fallback {
        NotPrepared,
        SmallStack,
        Busy,
        Broken,
    }

    /// Nothing to prepare but the fork handler.
    pub(crate) fn prepare() {
        crate::fork::register();
    }

    pub(crate) fn stale() -> bool {
        false
    }

    pub(crate) fn after_fork_in_child() {}

    /// The return addresses above the caller of this function, with frame
    /// pointers (as the Linux version falls back to).
    #[inline(always)]
    pub(crate) fn capture(bounds: (usize, usize), frames: &mut [u64]) -> Result<usize, Fallback> {
        let frames: &mut [u64; MAX_FRAMES] = frames.try_into().map_err(|_| Fallback::Broken)?;
        Ok(crate::alloc::stack::capture(bounds, frames))
    }
}

pub(crate) mod memory {
    pub(crate) fn after_fork_in_child() {}
}

pub(crate) mod self_check {
    use std::sync::Once;

    /// What this target's stacks are like, for a profile's comments.
    pub(crate) struct SelfCheck;

    const NOTE: &str = "firewatch: no unwind tables on this target: allocation stacks are \
                        walked with frame pointers (Linux on x86) or not at all; see \
                        docs/agent.md, \"Targets\"";

    impl SelfCheck {
        pub(crate) fn comment(&self) -> Option<String> {
            Some(NOTE.to_string())
        }
    }

    /// Logged once, as the Linux check logs a failure.
    pub(crate) fn result() -> SelfCheck {
        static LOGGED: Once = Once::new();
        LOGGED.call_once(|| log::warn!("{NOTE}"));
        SelfCheck
    }
}
