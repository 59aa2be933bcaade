//! The process's heap, counted: Redis's `used_memory` (zmalloc's running total), which the
//! maxmemory limit is checked against and INFO reports.
//!
//! Why an allocator-level counter: eviction needs a figure that falls as soon as a key is freed.
//! The resident set does not (the allocator keeps freed pages for reuse), and a per-key estimate
//! would have to follow every in-place change of every collection. The `cap` crate wraps the
//! system allocator and keeps the bytes currently allocated in one atomic, with no unsafe code of
//! ours; the cost is one relaxed atomic add per allocation and per free. It counts the sizes
//! asked for, not the allocator's rounding, so it reads a little below what the heap really
//! holds (as Redis's does without malloc_usable_size).
//!
//! Declared in the library so every binary built on it (the node, and the tests that run nodes
//! in-process) counts the same way. A binary wanting another allocator wraps that one in `Cap`
//! here instead of declaring a second global allocator.
//!
//! The allocator under the count is mimalloc, not glibc's malloc: freeing many keys at once
//! (a slot's keys deleted once moved, FLUSHALL, eviction) made glibc consolidate its free
//! chunks across the whole heap, over half of a moving source's time; mimalloc frees into
//! per-page lists in a few instructions, as jemalloc does for Redis.

use cap::Cap;
use mimalloc::MiMalloc;

#[global_allocator]
static ALLOCATOR: Cap<MiMalloc> = Cap::new(MiMalloc, usize::MAX);

/// Bytes allocated on the heap now, by the whole process.
pub fn used_bytes() -> u64 {
    ALLOCATOR.allocated() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_an_allocation_and_its_release() {
        // Other tests allocate concurrently: look for a 64 MiB step, far above their noise.
        const SIZE: usize = 64 << 20;
        let before = super::used_bytes();
        // black_box: an allocation nothing reads may be optimised away (it was, in release).
        let block = std::hint::black_box(vec![1u8; SIZE]);
        let during = super::used_bytes();
        assert!(during >= before + SIZE as u64 / 2, "{before} -> {during}");
        drop(std::hint::black_box(block));
        let after = super::used_bytes();
        assert!(after < during - SIZE as u64 / 2, "{during} -> {after}");
    }
}
