//! Dequantization of a run of consecutive elements: the scalar reference and the SIMD paths (one generic
//! body; the scale is expanded once per block segment, never per element).

use super::codebook::NF4;
use super::weight::{dequant_run_scalar, Nf4Weight, BLOCK};
use crate::dispatch::Kernel;
use crate::simd::Simd;

/// Dequantizes elements `start .. start + dst.len()` with the given path.
pub fn dequant_run(kernel: Kernel, w: &Nf4Weight, start: usize, dst: &mut [f32], map: &[f32; 256]) {
    debug_assert!(start + dst.len() <= w.len());
    crate::report::note(crate::report::Family::Nf4Decode, crate::report::Route::of_kernel(kernel));
    match kernel {
        Kernel::Scalar => dequant_run_scalar(w, start, dst, map),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { dequant_run_avx2(w, start, dst, map) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { dequant_run_avx512(w, start, dst, map) },
        #[allow(unreachable_patterns)]
        _ => dequant_run_scalar(w, start, dst, map),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dequant_run_avx2(w: &Nf4Weight, start: usize, dst: &mut [f32], map: &[f32; 256]) {
    dequant_run_simd::<crate::simd::avx2::Avx2>(w, start, dst, map)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dequant_run_avx512(w: &Nf4Weight, start: usize, dst: &mut [f32], map: &[f32; 256]) {
    dequant_run_simd::<crate::simd::avx512::Avx512>(w, start, dst, map)
}

#[inline(always)]
unsafe fn dequant_run_simd<S: Simd>(w: &Nf4Weight, start: usize, dst: &mut [f32], map: &[f32; 256]) {
    let end = start + dst.len();
    let packed = w.packed.as_ptr();
    let out = dst.as_mut_ptr();
    let mut i = start;
    while i < end {
        let block = i / BLOCK;
        let block_end = ((block + 1) * BLOCK).min(end);
        let scale = w.block_scale(block, map);
        // An odd start has its code in a low nibble: take it alone so the vector loop starts on a byte.
        if i % 2 == 1 {
            *out.add(i - start) = NF4[(*packed.add(i / 2) & 0x0f) as usize] * scale;
            i += 1;
        }
        while i + 16 <= block_end {
            S::decode_nf4_16(packed.add(i / 2), &NF4, scale, out.add(i - start));
            i += 16;
        }
        while i < block_end {
            let byte = *packed.add(i / 2);
            let code = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            *out.add(i - start) = NF4[code as usize] * scale;
            i += 1;
        }
    }
}

/// Dequantizes elements `start .. start + len` in pieces of `width`: piece `i` goes to `dst[i * stride ..]`
/// (the rows of the GEMM's B panels, written where they belong instead of through a scratch row).
#[allow(clippy::too_many_arguments)]
pub fn dequant_pieces(
    kernel: Kernel,
    w: &Nf4Weight,
    start: usize,
    len: usize,
    width: usize,
    dst: &mut [f32],
    stride: usize,
    map: &[f32; 256],
) {
    if len == 0 {
        return;
    }
    assert!(width > 0 && start + len <= w.len(), "pieces: run out of the weight");
    let last = len - 1;
    assert!(dst.len() > last / width * stride + last % width, "pieces: destination too short");
    crate::report::note(crate::report::Family::Nf4Decode, crate::report::Route::of_kernel(kernel));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { dequant_pieces_avx2(w, start, len, width, dst, stride, map) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { dequant_pieces_avx512(w, start, len, width, dst, stride, map) },
        _ => {
            for (i, first) in (0..len).step_by(width).enumerate() {
                let n = width.min(len - first);
                dequant_run_scalar(w, start + first, &mut dst[i * stride..][..n], map);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dequant_pieces_avx2(
    w: &Nf4Weight,
    start: usize,
    len: usize,
    width: usize,
    dst: &mut [f32],
    stride: usize,
    map: &[f32; 256],
) {
    dequant_pieces_simd::<crate::simd::avx2::Avx2>(w, start, len, width, dst, stride, map)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dequant_pieces_avx512(
    w: &Nf4Weight,
    start: usize,
    len: usize,
    width: usize,
    dst: &mut [f32],
    stride: usize,
    map: &[f32; 256],
) {
    dequant_pieces_simd::<crate::simd::avx512::Avx512>(w, start, len, width, dst, stride, map)
}

/// Like `dequant_run_simd`, with the output position advanced piece by piece: 16 codes at a time where they
/// fall inside one block and one piece, one at a time elsewhere.
#[inline(always)]
unsafe fn dequant_pieces_simd<S: Simd>(
    w: &Nf4Weight,
    start: usize,
    len: usize,
    width: usize,
    dst: &mut [f32],
    stride: usize,
    map: &[f32; 256],
) {
    let end = start + len;
    let packed = w.packed.as_ptr();
    let mut piece = dst.as_mut_ptr();
    let mut within = 0;
    let mut i = start;
    while i < end {
        let block = i / BLOCK;
        let block_end = ((block + 1) * BLOCK).min(end);
        let scale = w.block_scale(block, map);
        while i < block_end {
            // Whole vectors that stay inside this block and this piece, else one code.
            let vectors = if i % 2 == 0 { (block_end - i).min(width - within) / 16 } else { 0 };
            for _ in 0..vectors {
                S::decode_nf4_16(packed.add(i / 2), &NF4, scale, piece.add(within));
                i += 16;
                within += 16;
            }
            if vectors == 0 {
                let byte = *packed.add(i / 2);
                let code = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                *piece.add(within) = NF4[code as usize] * scale;
                i += 1;
                within += 1;
            }
            if within == width {
                // Past the last piece this points beyond `dst`, but is never written through.
                piece = piece.wrapping_add(stride);
                within = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::available;
    use crate::nf4::codebook::dynamic_map;
    use crate::nf4::quantize::quantize;

    #[test]
    fn every_path_matches_scalar_on_ragged_runs() {
        let (rows, cols) = (7, 45 + 64 * 5);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let q = quantize(&w, rows, cols, true).unwrap();
        let map = dynamic_map();
        for kernel in available() {
            for (start, len) in
                [(0, q.len()), (1, 17), (3, 200), (63, 2), (64, 64), (q.len() - 5, 5), (100, 0)]
            {
                let mut want = vec![0.0; len];
                let mut got = vec![f32::NAN; len];
                dequant_run_scalar(&q, start, &mut want, map);
                dequant_run(kernel, &q, start, &mut got, map);
                assert_eq!(want, got, "{kernel:?} start {start} len {len}");
            }
        }
    }

    #[test]
    fn pieces_land_where_the_plain_run_would_put_them() {
        let (rows, cols) = (9, 45 + 64 * 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let q = quantize(&w, rows, cols, true).unwrap();
        let map = dynamic_map();
        for kernel in available() {
            for (start, len, width, stride) in
                [(0, 237, 32, 40), (1, 100, 16, 16), (64, 96, 48, 50), (5, 3, 7, 9)]
            {
                let mut run = vec![0.0; len];
                dequant_run_scalar(&q, start, &mut run, map);
                let mut got = vec![f32::NAN; len.div_ceil(width) * stride];
                dequant_pieces(kernel, &q, start, len, width, &mut got, stride, map);
                for (o, &v) in run.iter().enumerate() {
                    let at = o / width * stride + o % width;
                    assert_eq!(got[at].to_bits(), v.to_bits(), "{kernel:?} {start} {len} {width} at {o}");
                }
                // Nothing written between pieces.
                for (at, v) in got.iter().enumerate() {
                    let inside = at % stride < width && at / stride * width + at % stride < len;
                    assert_eq!(!inside, v.is_nan(), "{kernel:?} {start} {len} {width} at {at}");
                }
            }
        }
    }
}
