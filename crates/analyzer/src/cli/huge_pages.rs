//! The binary's allocator: the system's, with large blocks given
//! transparent huge pages where the kernel leaves them to the program
//! (`madvise` mode, the default of most distributions). Heap snapshots
//! and large profiles fill hundreds of MB of fresh columns; at 4 KiB a page
//! that is a fault per page, at 2 MiB one per 512 of them.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes are advised (glibc serves them with
/// `mmap`, so the advice covers memory nobody else shares).
const HUGE_BLOCK: usize = 8 << 20;
const HUGE_PAGE: usize = 2 << 20;

pub struct HugePageAllocator;

impl HugePageAllocator {
    /// Advises the whole huge pages inside `[ptr, ptr + size)`.
    fn advise(ptr: *mut u8, size: usize) {
        if ptr.is_null() || size < HUGE_BLOCK {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + size) & !(HUGE_PAGE - 1);
        if end > start {
            // SAFETY: the range lies inside a block this allocator just
            // returned, so it is mapped and ours; MADV_HUGEPAGE is advice
            // that changes neither contents nor mappings, and a failure
            // (a kernel without THP) leaves the block as it was.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments, and
// its result returned unchanged; `advise` only gives advice on the block.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        let ptr = unsafe { System.alloc(layout) };
        Self::advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        Self::advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's to check.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        Self::advise(new, new_size);
        new
    }
}
