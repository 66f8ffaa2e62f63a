//! Keeping berthd's resident memory close to what it uses.
//!
//! A pull streams hundreds of megabytes through decompressors and buffers
//! on blocking threads; glibc keeps what they freed in per-thread arenas,
//! so without help an idle daemon would stay at its peak size after its
//! first large pull. berthd caps the arenas at start and hands freed memory
//! back to the kernel after pulls and imports. No safe wrapper exists for
//! these two glibc calls, hence `libc`.

/// Caps glibc's malloc arenas (default 8 per core) at two.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called at start,
    // before other threads allocate, with a documented parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory of every arena to the kernel.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory glibc holds as free; it is
    // thread-safe and takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
