//! The 4-bit codes of one full 64-element block: `count(midpoints < clamp(x · inv, -1, 1))` per element,
//! packed two per byte (first element in the high nibble). The scalar version is the reference; the AVX2
//! one compares 8 values against all 15 midpoints at once and gives identical bytes (same f32 operations).

use super::quantize::nf4_code;
use super::weight::BLOCK;
use crate::dispatch::Kernel;

/// Encodes a full block scaled by `inv` (the f32 reciprocal of its absmax) into 32 bytes.
pub fn encode_block(kernel: Kernel, block: &[f32], inv: f32, mids: &[f32; 15], out: &mut [u8]) {
    debug_assert!(block.len() == BLOCK && out.len() == BLOCK / 2);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 => unsafe { encode_block_avx2(block, inv, mids, out) },
        _ => encode_block_scalar(block, inv, mids, out),
    }
}

pub fn encode_block_scalar(block: &[f32], inv: f32, mids: &[f32; 15], out: &mut [u8]) {
    for (pair, byte) in block.chunks_exact(2).zip(out.iter_mut()) {
        let hi = nf4_code((pair[0] * inv).clamp(-1.0, 1.0), mids);
        let lo = nf4_code((pair[1] * inv).clamp(-1.0, 1.0), mids);
        *byte = (hi << 4) | lo;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn encode_block_avx2(block: &[f32], inv: f32, mids: &[f32; 15], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let scale = _mm256_set1_ps(inv);
    let (lo, hi) = (_mm256_set1_ps(-1.0), _mm256_set1_ps(1.0));
    let thresholds: [__m256; 15] = mids.map(|m| _mm256_set1_ps(m));
    let mut codes = [0i32; BLOCK];
    for (chunk, dst) in block.chunks_exact(8).zip(codes.chunks_exact_mut(8)) {
        let v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(chunk.as_ptr()), scale), lo), hi);
        // Each true comparison is all ones (-1): subtracting counts the midpoints strictly below v.
        let mut count = _mm256_setzero_si256();
        for t in &thresholds {
            count = _mm256_sub_epi32(count, _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(v, *t)));
        }
        _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, count);
    }
    for (pair, byte) in codes.chunks_exact(2).zip(out.iter_mut()) {
        *byte = ((pair[0] as u8) << 4) | pair[1] as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::available;
    use crate::nf4::codebook::nf4_midpoints;

    #[test]
    fn every_path_encodes_like_the_scalar_reference() {
        let mids = nf4_midpoints();
        // Random values, values on and next to every midpoint, and values beyond ±1 after scaling.
        let mut values: Vec<f32> =
            (0..64 * 40).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 997.0).collect();
        for &m in &mids {
            values.extend([
                m,
                f32::from_bits(m.to_bits() + 1),
                f32::from_bits(m.to_bits() - 1),
                -m,
                1.5,
                -2.0,
            ]);
        }
        values.resize(values.len().div_ceil(64) * 64, 0.25);
        for kernel in available() {
            for block in values.chunks_exact(64) {
                for inv in [1.0f32, 0.75, 3.0] {
                    let (mut want, mut got) = ([0u8; 32], [0u8; 32]);
                    encode_block_scalar(block, inv, &mids, &mut want);
                    encode_block(kernel, block, inv, &mids, &mut got);
                    assert_eq!(want, got, "{kernel:?} inv {inv}");
                }
            }
        }
    }
}
