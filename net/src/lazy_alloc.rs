//! The process's global allocator: the system allocator, except that huge allocations are
//! reserved lazily.
//!
//! Why: kafka-protocol sizes a decoded array up front from the length the client sent
//! (`Vec::with_capacity(n)`), before reading any element. A garbage frame claiming two
//! billion topics asks for hundreds of GiB; the system allocator refuses and Rust aborts the
//! whole broker. Here such a request gets address space only (`MAP_NORESERVE`): nothing is
//! committed until touched, the decode fails on the first missing element, and the mapping
//! is returned. Real allocations of that size never happen (frames are capped by
//! `socket.request.max.bytes`), so nothing else changes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are mapped lazily.
const LAZY_FROM_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

pub struct LazyHugeAlloc;

fn is_lazy(size: usize, align: usize) -> bool {
    size >= LAZY_FROM_BYTES && align <= PAGE_BYTES
}

// SAFETY: every method either forwards to `System` with the caller's arguments, or maps and
// unmaps whole anonymous regions whose size is the layout's (the same for alloc and
// dealloc, which `is_lazy` decides from the layout alone).
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(layout.size(), layout.align()) {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout.size(), layout.align()) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_lazy(layout.size(), layout.align()) {
            // SAFETY: `p` came from `alloc` with this same size, so it is a whole mapping.
            unsafe { libc::munmap(p.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_lazy(layout.size(), layout.align()) && !is_lazy(new_size, layout.align()) {
            // SAFETY: forwarded unchanged.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block, then a copy of the smaller of the two sizes, then the old
        // block freed with its own layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            new
        }
    }
}

/// spate-net's own unit tests run under this allocator too, as the broker does.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: LazyHugeAlloc = LazyHugeAlloc;

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_capacity_is_address_space_only() {
        // 256 GiB: more than the machine has; only the pages touched are committed.
        let mut v: Vec<u64> = Vec::with_capacity(32 << 30);
        v.push(7);
        v.push(8);
        assert_eq!(v.iter().sum::<u64>(), 15);
        v.truncate(1);
        v.shrink_to_fit();
        assert_eq!(v, vec![7]);
    }
}
