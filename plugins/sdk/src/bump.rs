//! A bump allocator for plugins that run one fresh instance per call, as deskhost runs them.
//!
//! The instance is thrown away when the call returns, so everything `free` does (coalescing,
//! bin upkeep) is work nobody benefits from: the triage plugin made ~95 allocations and ~35
//! reallocations a ticket, and dlmalloc's `malloc`/`free`/`realloc` were ~9 % of its
//! `bench triage` profile. [`Bump`] takes chunks from the system allocator (so it shares the
//! heap with wasi-libc's own allocations) and hands them out in order; `free` gives memory
//! back only when it is the latest allocation, and growing the latest allocation extends it in
//! place (a `Vec` pushed to, a `String` written to).
//!
//! Opt in from a plugin crate, for the Wasm build only:
//!
//! ```ignore
//! #[cfg(target_arch = "wasm32")]
//! #[global_allocator]
//! static ALLOCATOR: deskhost_sdk::bump::Bump = deskhost_sdk::bump::Bump::new();
//! ```
//!
//! Do not use it where one instance serves many calls: nothing is ever reused but the latest
//! allocation, so memory would grow with every call until the memory limit stops it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::null_mut;

/// Bytes taken from the system allocator at a time.
const CHUNK: usize = 64 * 1024;
/// Larger allocations go to the system allocator directly (and are never freed either).
const LARGE: usize = CHUNK / 4;

/// A bump allocator over chunks of the system allocator's memory. See the module docs.
pub struct Bump {
    /// Next free byte of the current chunk.
    next: Cell<usize>,
    /// End of the current chunk.
    end: Cell<usize>,
    /// Start of the latest allocation (0: none that can grow in place).
    last: Cell<usize>,
}

// SAFETY: the cells are only touched from the one thread a wasm32 plugin without the
// `atomics` feature has; the allocator is for such plugins (see the module docs). Native
// builds (tests) use an instance per thread.
unsafe impl Sync for Bump {}

impl Bump {
    /// An allocator with no chunk yet.
    pub const fn new() -> Self {
        Self {
            next: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(0),
        }
    }

    /// `size` bytes aligned to `align` from the current chunk, or `None` if it has no room.
    fn carve(&self, size: usize, align: usize) -> Option<usize> {
        let start = self.next.get().checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        (self.next.get() != 0 && end <= self.end.get()).then(|| {
            self.next.set(end);
            self.last.set(start);
            start
        })
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every pointer returned is either null or `layout.size()` bytes aligned to
// `layout.align()` that no other live allocation overlaps: carved in order from a chunk the
// system allocator gave us and never returned to it, or the system allocator's own.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if size > LARGE || align > LARGE {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        }
        if let Some(at) = self.carve(size, align) {
            return at as *mut u8;
        }
        let Ok(chunk) = Layout::from_size_align(CHUNK, 16) else {
            return null_mut();
        };
        // SAFETY: a non-zero size.
        let base = unsafe { System.alloc(chunk) };
        if base.is_null() {
            return null_mut();
        }
        self.next.set(base as usize);
        self.end.set(base as usize + CHUNK);
        self.carve(size, align)
            .map_or(null_mut(), |at| at as *mut u8)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // The latest allocation's bytes can be handed out again; anything else waits for the
        // instance to go.
        if ptr as usize == self.last.get() {
            self.next.set(ptr as usize);
            self.last.set(0);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let at = ptr as usize;
        if at == self.last.get()
            && let Some(end) = at.checked_add(new_size)
            && end <= self.end.get()
        {
            // The latest allocation grows or shrinks where it is.
            self.next.set(end);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        let Ok(grown) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        // SAFETY: a valid layout; `ptr` holds `layout.size()` bytes, fewer than `new_size`,
        // and the new block does not overlap it.
        unsafe {
            let moved = self.alloc(grown);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size());
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_keep_their_bytes_when_grown() {
        let bump = Bump::new();
        let mut blocks: Vec<(*mut u8, usize)> = Vec::new();
        for (i, (size, align)) in [(3, 1), (8, 8), (1, 16), (100, 4), (7, 2), (4096, 64)]
            .into_iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            // SAFETY: valid, non-zero layouts; written within their size.
            let p = unsafe { bump.alloc(layout(size, align)) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "aligned");
            unsafe { std::ptr::write_bytes(p, i as u8, size) };
            blocks.push((p, size));
        }
        for (i, (p, size)) in blocks.iter().enumerate() {
            // SAFETY: each block was written above and is still live.
            let bytes = unsafe { std::slice::from_raw_parts(*p, *size) };
            assert!(bytes.iter().all(|&b| b == i as u8), "block {i} intact");
        }
        // The latest allocation grows in place; an earlier one moves with its bytes.
        let Some(&(last, size)) = blocks.last() else {
            panic!("blocks")
        };
        // SAFETY: `last` is live with that layout.
        let grown = unsafe { bump.realloc(last, layout(size, 64), size + 100) };
        assert_eq!(grown, last, "the latest allocation grows in place");
        let (first, first_size) = blocks[0];
        // SAFETY: `first` is live with that layout.
        let moved = unsafe { bump.realloc(first, layout(first_size, 1), 5000) };
        assert_ne!(moved, first);
        // SAFETY: the first `first_size` bytes were copied.
        let copied = unsafe { std::slice::from_raw_parts(moved, first_size) };
        assert!(copied.iter().all(|&b| b == 0));
    }

    #[test]
    fn freeing_the_latest_allocation_lets_the_next_reuse_it_and_large_ones_go_to_the_system() {
        let bump = Bump::new();
        // SAFETY: valid layouts; blocks used only while live.
        unsafe {
            let a = bump.alloc(layout(64, 8));
            let b = bump.alloc(layout(64, 8));
            bump.dealloc(b, layout(64, 8));
            let c = bump.alloc(layout(32, 8));
            assert_eq!(c, b, "the freed latest block is handed out again");
            bump.dealloc(a, layout(64, 8));
            let d = bump.alloc(layout(8, 8));
            assert_ne!(d, a, "an earlier block is not reused");
            let large = bump.alloc(layout(LARGE + 1, 8));
            assert!(!large.is_null());
            std::ptr::write_bytes(large, 1, LARGE + 1);
            let after = bump.alloc(layout(8, 8));
            assert_eq!(
                after as usize,
                d as usize + 8,
                "a large block leaves the chunk alone"
            );
            System.dealloc(large, layout(LARGE + 1, 8));
        }
    }
}
