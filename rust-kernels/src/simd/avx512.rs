//! AVX-512 (F + BW + VL): 16 lanes.

use super::Simd;
use std::arch::x86_64::*;

pub struct Avx512;

unsafe impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn decode_nf4_16(src: *const u8, table: &[f32; 16], scale: f32, dst: *mut f32) {
        let bytes = _mm_loadl_epi64(src as *const __m128i);
        let low_mask = _mm_set1_epi8(0x0f);
        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low_mask);
        let lo = _mm_and_si128(bytes, low_mask);
        let codes = _mm_unpacklo_epi8(hi, lo);
        // The whole 16-entry table fits one register: one permute gathers by code.
        let idx = _mm512_cvtepu8_epi32(codes);
        let v = _mm512_permutexvar_ps(idx, _mm512_loadu_ps(table.as_ptr()));
        _mm512_storeu_ps(dst, _mm512_mul_ps(v, _mm512_set1_ps(scale)));
    }
}
