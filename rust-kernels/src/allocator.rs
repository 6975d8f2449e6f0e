//! Tuning of the C allocator (glibc malloc) for training.
//!
//! A training step allocates and frees the same large activation buffers every step (V8's ArrayBuffers and
//! our own scratch come from malloc). By default glibc serves blocks above a moving threshold (128 KiB at
//! first) with fresh `mmap`s and returns freed heap tops to the OS, so every step faults the same ~70 MB of
//! pages back in and zeroes them: ~18 000 page faults per step on SmolLM2 at 256 tokens. Serving blocks up to
//! glibc's largest allowed threshold from the heap and never trimming it cuts that to ~1 500 at the same peak
//! RSS; the cost is that freed memory stays with the process until it exits.

/// glibc's `mallopt` parameters (malloc.h).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub const M_TRIM_THRESHOLD: i32 = -1;
    pub const M_MMAP_THRESHOLD: i32 = -3;
    /// The largest threshold glibc accepts on 64-bit targets (half its 64 MiB heap size).
    pub const MAX_MMAP_THRESHOLD: i32 = 32 << 20;
    extern "C" {
        pub fn mallopt(param: i32, value: i32) -> i32;
    }
}

/// Keeps freed memory in the process's heap (see the module comment). Returns whether the allocator took the
/// settings (false where the C library is not glibc: nothing is changed there).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use glibc::*;
        // Safety: mallopt only changes allocator parameters; it is thread-safe in glibc.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::keep_freed_memory());
        // Large blocks now come from the heap: freeing and allocating again works as before.
        let v = vec![1u8; 8 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 8 << 20);
    }
}
