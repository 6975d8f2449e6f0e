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
