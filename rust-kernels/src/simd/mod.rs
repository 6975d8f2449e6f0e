//! One vector vocabulary for every SIMD kernel. Kernels are written once as `#[inline(always)]` generic
//! bodies over [`Simd`]; each ISA gets a thin `#[target_feature]` wrapper that instantiates the body, so
//! the intrinsics inline into code compiled for that ISA (never `target-cpu=native`).

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;

/// A vector of `LANES` f32 values and the few operations our kernels need.
///
/// # Safety
/// Every method may only run on a CPU with the ISA of the implementor, inside a function compiled with
/// that ISA's target features.
pub unsafe trait Simd {
    const LANES: usize;
    type V: Copy;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// a * b + c, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// Decodes 8 packed NF4 bytes (16 codes, high nibble first) through `table` (the 16 code values)
    /// and writes `code * scale` to `dst[0..16]`.
    unsafe fn decode_nf4_16(src: *const u8, table: &[f32; 16], scale: f32, dst: *mut f32);
}

/// As [`prefetch_run`], into L2 only: for data needed a while later, that should not push out what L1 holds.
#[inline(always)]
pub fn prefetch_run_l2(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // Safety: prefetch is a hint and does not fault; SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                p.wrapping_add(offset) as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Asks the cache to fetch the `len` bytes at `p` (one hint per 64-byte line); a no-op where there is no
/// prefetch instruction. Only a hint: it never faults, whatever the address.
#[inline(always)]
pub fn prefetch_run(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // Safety: prefetch is a hint and does not fault; SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(offset) as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}
