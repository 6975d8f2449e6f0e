//! The reference quantizers of ggml's 32-value formats (ggml-quants.c `quantize_row_q*_0_ref`): one scale
//! per block, taken from the block's largest magnitude, with ggml's exact rounding steps so the bytes equal
//! what llama.cpp (and gguf-py's `gguf.quants.quantize`) write.

use super::half::f32_to_f16;
use crate::ggml::{BlockQ4_0, BlockQ5_0, BlockQ8_0, QK};

/// The value of largest magnitude (the first one on ties), keeping its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// `q = round(x / d)` with `d = max|x| / 127`, halves rounded away from zero (C's `roundf`).
pub fn q8_0(x: &[f32; QK], y: &mut BlockQ8_0) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    y.d = f32_to_f16(d).to_le_bytes();
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
}

/// `d = max / -8` with `max` the signed value of largest magnitude, so that value maps to code 0 exactly
/// and the codes 0..15 cover [-8d, 7d]; each code is `x/d + 8.5` truncated.
pub fn q4_0(x: &[f32; QK], y: &mut BlockQ4_0) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    y.d = f32_to_f16(d).to_le_bytes();
    for j in 0..QK / 2 {
        let lo = truncated_code(x[j] * id, 8.5, 15);
        let hi = truncated_code(x[j + QK / 2] * id, 8.5, 15);
        y.qs[j] = lo | (hi << 4);
    }
}

/// As Q4_0 with 5-bit codes: `d = max / -16`; bit 4 of value j goes to bit j of `qh`.
pub fn q5_0(x: &[f32; QK], y: &mut BlockQ5_0) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    y.d = f32_to_f16(d).to_le_bytes();
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let lo = truncated_code(x[j] * id, 16.5, 31);
        let hi = truncated_code(x[j + QK / 2] * id, 16.5, 31);
        y.qs[j] = (lo & 0x0f) | ((hi & 0x0f) << 4);
        qh |= ((lo as u32 >> 4) << j) | ((hi as u32 >> 4) << (j + QK / 2));
    }
    y.qh = qh.to_le_bytes();
}

/// ggml's `MIN(top, (int8_t)(scaled + offset))`: truncation toward zero, then a cap. `scaled` lies in
/// [-offset + 0.5, offset - 0.5] for finite input, so the sum is never negative.
fn truncated_code(scaled: f32, offset: f32, top: u8) -> u8 {
    ((scaled + offset) as i8).clamp(0, top as i8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::scalar;

    fn ramp(scale: f32, shift: f32) -> [f32; QK] {
        std::array::from_fn(|i| (i as f32 - shift) * scale)
    }

    #[test]
    fn q8_0_maps_the_extreme_to_127_and_rounds_half_away() {
        let mut x = ramp(0.25, 16.0);
        x[3] = 127.0 * 0.25 / 2.0; // exactly half of the scale's range: 63.5 → 64
        x[31] = 127.0 * 0.25;
        let mut y = BlockQ8_0 { d: [0; 2], qs: [0; QK] };
        q8_0(&x, &mut y);
        assert_eq!(scalar::f16_to_f32(u16::from_le_bytes(y.d)), 0.25);
        assert_eq!((y.qs[31], y.qs[3], y.qs[0], y.qs[17]), (127, 64, -16, 1));
    }

    #[test]
    fn q4_0_uses_the_signed_extreme_and_caps_at_15() {
        // Largest magnitude is negative → d > 0 and it maps to code 0; +max maps to 16 → capped 15.
        let mut x = [0f32; QK];
        x[0] = -4.0;
        x[1] = 4.0;
        x[2] = 0.26; // 0.26 / 0.5 + 8.5 = 9.02 → 9
        x[20] = -0.24; // -0.48 + 8.5 = 8.02 → 8
        let mut y = BlockQ4_0 { d: [0; 2], qs: [0; 16] };
        q4_0(&x, &mut y);
        assert_eq!(scalar::f16_to_f32(u16::from_le_bytes(y.d)), 0.5);
        assert_eq!((y.qs[0] & 15, y.qs[1] & 15, y.qs[2] & 15, y.qs[4] >> 4), (0, 15, 9, 8));
        assert_eq!(y.qs[5], 8 | (8 << 4), "zeros map to code 8");
    }

    #[test]
    fn q5_0_splits_the_fifth_bit_into_qh() {
        let x = ramp(1.0, 16.0); // -16 ..= 15, d = 1 → code = value + 16 (truncation of v + 16.5)
        let mut y = BlockQ5_0 { d: [0; 2], qh: [0; 4], qs: [0; 16] };
        q5_0(&x, &mut y);
        let mut back = [0f32; QK];
        scalar::q5_0(&y, &mut back);
        assert_eq!(back, x);
        assert_eq!(u32::from_le_bytes(y.qh), 0xffff_0000, "values 16.. have code ≥ 16");
    }

    #[test]
    fn an_all_zero_block_has_scale_zero() {
        let x = [0f32; QK];
        let mut y8 = BlockQ8_0 { d: [1; 2], qs: [1; QK] };
        q8_0(&x, &mut y8);
        assert_eq!((y8.d, y8.qs), ([0; 2], [0; QK]));
        let mut y4 = BlockQ4_0 { d: [1; 2], qs: [1; 16] };
        q4_0(&x, &mut y4);
        // d = 0 / -8 is -0.0, stored as the half 0x8000, as ggml and gguf-py store it.
        assert_eq!((y4.d, y4.qs), ([0x00, 0x80], [0x88; 16]));
    }
}
