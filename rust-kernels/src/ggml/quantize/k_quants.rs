//! The reference quantizers of the two K-quants that llama.cpp's Q4_K_M mix uses (ggml-quants.c
//! `quantize_row_q4_K_ref` / `quantize_row_q6_K_ref`, without an importance matrix), followed step by step:
//! the same searches over candidate scales, the same weights, the same rounding (`nearest_int` is round
//! half to even), so our files quantize like llama.cpp's.
//!
//! Both formats are two-level: every small group gets its own scale (and Q4_K a min), found by a search
//! that minimises a weighted squared error; those scales are then themselves quantized to 6 (Q4_K) or 8
//! (Q6_K) bits against one f16 super-scale per 256 values, and the values are re-coded against the
//! rounded scales.

use super::half::f32_to_f16;
use crate::ggml::scalar::{f16_to_f32, k4_scale_min};
use crate::ggml::{BlockQ4K, BlockQ6K, QK_K};

/// Scales this small count as "all zero" (ggml's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even (it adds 1.5·2²³ and reads the mantissa).
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Asymmetric codes `L ∈ 0..=nmax` with `x ≈ scale·L - the_min` (the_min ≥ 0): ggml's `make_qkx2_quants`.
/// Starts from the min/max grid, then tries `nstep + 1` stretched grids (`iscale = (nmax + rmin + rdelta·k)
/// / (max - min)`) and for each solves the weighted least squares for (scale, min); keeps the best.
/// Returns (scale, the_min).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for step in 0..=nstep {
        iscale = (rmin + rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                l.copy_from_slice(laux);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric codes `L ∈ 0..2·nmax` (value `L - nmax`) with `x ≈ scale·(L - nmax)`, weighted by x²:
/// ggml's `make_qx_quants` with rmse_type 1. The grid is anchored at the signed value of largest magnitude
/// (it maps to -nmax), then 18 nearby grids are tried; the one with the best least-squares fit wins.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
        for &v in x {
            let q = code(iscale, v) as f32;
            let w = v * v;
            sum_lx += w * v * q;
            sum_l2 += w * q * q;
        }
        (sum_lx, sum_l2)
    };
    let iscale = -(nmax as f32) / max;
    for (l, &v) in l.iter_mut().zip(x) {
        *l = (code(iscale, v) + nmax) as u8;
    }
    let (sum_lx, sum_l2) = sums(iscale);
    let mut scale = if sum_l2 != 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for k in -9..=9 {
        if k == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * k as f32) / max;
        let (sum_lx, sum_l2) = sums(iscale);
        if sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2 {
            for (l, &v) in l.iter_mut().zip(x) {
                *l = (code(iscale, v) + nmax) as u8;
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    scale
}

/// 256 values in 8 groups of 32: `x ≈ d·sc·q - dmin·m`, q 4 bits, sc and m 6 bits.
pub fn q4_k(x: &[f32; QK_K], y: &mut BlockQ4K) {
    let mut codes = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let group = &x[32 * j..32 * j + 32];
        // Weight each value by its magnitude plus the group's RMS: large values matter more, but no
        // value is ignored.
        let sum_x2: f32 = group.iter().fold(0.0, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(group) {
            *w = av_x + v.abs();
        }
        let (scale, min) =
            make_qkx2_quants(15, group, &weights, &mut codes[32 * j..32 * j + 32], &mut laux, -1.0, 0.1, 20);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    y.scales = [0; 12];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).min(63) as u8;
        let lm = nearest_int(inv_min * mins[j]).min(63) as u8;
        // Groups 0..4: low 6 bits of bytes j (scale) and j + 4 (min). Groups 4..8: nibbles of byte j + 4,
        // top two bits in the spare top bits of bytes j - 4 and j (the layout `k4_scale_min` reads).
        if j < 4 {
            y.scales[j] = ls;
            y.scales[j + 4] = lm;
        } else {
            y.scales[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            y.scales[j - 4] |= (ls >> 4) << 6;
            y.scales[j] |= (lm >> 4) << 6;
        }
    }
    y.d = f32_to_f16(max_scale / 63.0).to_le_bytes();
    y.dmin = f32_to_f16(max_min / 63.0).to_le_bytes();
    let (d_all, dmin_all) = (f16_to_f32(u16::from_le_bytes(y.d)), f16_to_f32(u16::from_le_bytes(y.dmin)));
    for j in 0..8 {
        // Re-code against the scales as stored (rounded to 6 bits and f16).
        let (sc, m) = k4_scale_min(j, &y.scales);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for i in 32 * j..32 * j + 32 {
            codes[i] = nearest_int((x[i] + dm) / d).clamp(0, 15) as u8;
        }
    }
    // Each 64 values share 32 bytes: the first 32 in the low nibbles, the next 32 in the high ones.
    for c in 0..4 {
        for l in 0..32 {
            y.qs[32 * c + l] = codes[64 * c + l] | (codes[64 * c + 32 + l] << 4);
        }
    }
}

/// 256 values in 16 groups of 16: `x ≈ d·sc·(q - 32)`, q 6 bits, sc a signed byte.
pub fn q6_k(x: &[f32; QK_K], y: &mut BlockQ6K) {
    let mut codes = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (g, scale) in scales.iter_mut().enumerate() {
        *scale = make_qx_quants(32, &x[16 * g..16 * g + 16], &mut codes[16 * g..16 * g + 16]);
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = *scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = BlockQ6K { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; QK_K / 16], d: [0; 2] };
        return;
    }
    // The group scale of largest magnitude becomes -128 (its sign folded into d).
    let iscale = -128.0 / max_scale;
    y.d = f32_to_f16(1.0 / iscale).to_le_bytes();
    for (s, &scale) in y.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    let d_all = f16_to_f32(u16::from_le_bytes(y.d));
    for g in 0..16 {
        let d = d_all * y.scales[g] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * g..16 * g + 16 {
            codes[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    // Per half of 128: ql[l] holds values l (low nibble) and l + 64 (high), ql[l + 32] values l + 32 and
    // l + 96; qh[l] the top two bits of all four.
    for n in 0..2 {
        let c = &codes[128 * n..128 * n + 128];
        for l in 0..32 {
            y.ql[64 * n + l] = (c[l] & 0x0f) | ((c[l + 64] & 0x0f) << 4);
            y.ql[64 * n + l + 32] = (c[l + 32] & 0x0f) | ((c[l + 96] & 0x0f) << 4);
            y.qh[32 * n + l] =
                (c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) | ((c[l + 96] >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::scalar;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let got: Vec<i32> = [0.5f32, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001].map(nearest_int).to_vec();
        assert_eq!(got, vec![0, 2, 2, 0, -2, 2, 3]);
    }

    #[test]
    fn q4_k_represents_a_grid_exactly() {
        // Values already on a 4-bit grid per group (group j: step 0.01·(j+1), offset -0.05·j) come back
        // within the f16 and 6-bit rounding of the scales.
        let x: [f32; QK_K] = std::array::from_fn(|i| {
            let j = i / 32;
            ((i * 7) % 16) as f32 * 0.01 * (j + 1) as f32 - 0.05 * j as f32
        });
        let mut y = BlockQ4K { d: [0; 2], dmin: [0; 2], scales: [0; 12], qs: [0; QK_K / 2] };
        q4_k(&x, &mut y);
        let mut back = [0f32; QK_K];
        scalar::q4_k(&y, &mut back);
        let worst = x.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 0.02, "worst {worst}");
    }

    #[test]
    fn q6_k_zero_block_and_sign_of_the_scale() {
        let mut y = BlockQ6K { ql: [1; 128], qh: [1; 64], scales: [1; 16], d: [1; 2] };
        q6_k(&[0f32; QK_K], &mut y);
        assert!(y.ql.iter().chain(&y.qh).all(|&b| b == 0) && y.d == [0; 2]);
        // One large negative value: the largest |scale| maps to -128, so that group's stored scale is -128.
        let mut x: [f32; QK_K] = std::array::from_fn(|i| ((i % 13) as f32 - 6.0) * 0.01);
        x[40] = -3.0;
        q6_k(&x, &mut y);
        assert_eq!(y.scales[2], -128);
        let mut back = [0f32; QK_K];
        scalar::q6_k(&y, &mut back);
        assert!((back[40] + 3.0).abs() < 3.0 / 31.0);
    }
}
