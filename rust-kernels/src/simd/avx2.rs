//! AVX2 + FMA: 8 lanes.

use super::Simd;
use std::arch::x86_64::*;

pub struct Avx2;

unsafe impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn decode_nf4_16(src: *const u8, table: &[f32; 16], scale: f32, dst: *mut f32) {
        let bytes = _mm_loadl_epi64(src as *const __m128i);
        let low_mask = _mm_set1_epi8(0x0f);
        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low_mask);
        let lo = _mm_and_si128(bytes, low_mask);
        // High nibble first: codes in element order.
        let codes = _mm_unpacklo_epi8(hi, lo);
        let t_low = _mm256_loadu_ps(table.as_ptr());
        let t_high = _mm256_loadu_ps(table.as_ptr().add(8));
        let s = _mm256_set1_ps(scale);
        let seven = _mm256_set1_epi32(7);
        for half in 0..2 {
            let part = if half == 0 { codes } else { _mm_srli_si128(codes, 8) };
            let idx = _mm256_cvtepu8_epi32(part);
            // Two 8-entry lookups (permutevar uses the low 3 bits), then pick by bit 3.
            let a = _mm256_permutevar8x32_ps(t_low, idx);
            let b = _mm256_permutevar8x32_ps(t_high, idx);
            let use_high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven));
            let v = _mm256_blendv_ps(a, b, use_high);
            _mm256_storeu_ps(dst.add(half * 8), _mm256_mul_ps(v, s));
        }
    }
}

/// Transposes an 8×8 block: row `r` of the input is `src[r][0..8]`; row `q` of the output goes to
/// `dst + q * dst_stride`. Used to turn column runs into the panel layout of the GEMM.
///
/// # Safety
/// AVX2 only (call it from an AVX2 function, where it inlines); every `src[r]` must have 8 readable floats
/// and each output row 8 writable floats.
#[inline(always)]
pub unsafe fn transpose8x8(src: [*const f32; 8], dst: *mut f32, dst_stride: usize) {
    let r: [__m256; 8] = src.map(|p| _mm256_loadu_ps(p));
    // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (q, v) in out.iter().enumerate() {
        _mm256_storeu_ps(dst.add(q * dst_stride), *v);
    }
}

/// Transposes `sources.len()` (= `nr`, a multiple of 8) column runs into a `kc × nr` panel for the first
/// `kc / 8 * 8` depth steps, in 8×8 register blocks; returns how many steps it did.
///
/// # Safety
/// AVX2 only; every source run has at least `kc` values and `panel` holds `kc * nr`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn transpose_panel(sources: &[&[f32]], panel: &mut [f32], nr: usize, kc: usize) -> usize {
    let done = kc / 8 * 8;
    debug_assert!(sources.len() == nr && nr % 8 == 0 && panel.len() >= kc * nr);
    debug_assert!(sources.iter().all(|s| s.len() >= kc));
    let dst = panel.as_mut_ptr();
    for c0 in (0..nr).step_by(8) {
        let cols: [*const f32; 8] = std::array::from_fn(|c| sources[c0 + c].as_ptr());
        for p in (0..done).step_by(8) {
            transpose8x8(cols.map(|col| col.add(p)), dst.add(p * nr + c0), nr);
        }
    }
    done
}

/// Widens bf16 bits to f32 (exact: bf16 is the top half of an f32), 8 values per step; returns how many
/// leading values it did (a multiple of 8), the caller finishes the tail.
///
/// # Safety
/// AVX2 only; `dst` holds at least `src.len()` values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn widen_bf16(src: &[u16], dst: &mut [f32]) -> usize {
    let done = src.len() / 8 * 8;
    debug_assert!(dst.len() >= src.len());
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for i in (0..done).step_by(8) {
        let halves = _mm_loadu_si128(s.add(i) as *const __m128i);
        let words = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(halves));
        _mm256_storeu_ps(d.add(i), _mm256_castsi256_ps(words));
    }
    done
}
