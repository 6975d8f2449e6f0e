//! f32 → IEEE half with round-to-nearest-even, as ggml's `GGML_FP32_TO_FP16` (F16C's `vcvtps2ph`) and
//! numpy's `astype(float16)` round: the inverse of `scalar::f16_to_f32` on every finite half.

pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs >= 0x7f80_0000 {
        // ±inf stays inf; NaN stays a (quiet) NaN.
        let nan = if abs > 0x7f80_0000 { 0x0200 | ((abs >> 13) & 0x03ff) as u16 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    let exponent = (abs >> 23) as i32 - 127;
    if exponent > 15 {
        return sign | 0x7c00; // ≥ 65536: beyond the largest half
    }
    if exponent >= -14 {
        // Normal: keep 10 mantissa bits, round on the 13 dropped; a carry may step into the exponent
        // (and past 65504 to inf), which is the correct rounding too.
        let mantissa = abs & 0x007f_ffff;
        let mut half = (((exponent + 15) as u32) << 10) | (mantissa >> 13);
        let rest = mantissa & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
            half += 1;
        }
        return sign | half as u16;
    }
    if exponent < -25 {
        return sign; // below half of the smallest subnormal (2⁻²⁵): rounds to zero
    }
    // Subnormal: the value in units of 2⁻²⁴ is the 24-bit significand shifted right by -(exponent + 1).
    let significand = (abs & 0x007f_ffff) | 0x0080_0000;
    let shift = (-(exponent + 1)) as u32;
    let mut half = significand >> shift;
    let rest = significand & ((1 << shift) - 1);
    let midpoint = 1 << (shift - 1);
    if rest > midpoint || (rest == midpoint && half & 1 == 1) {
        half += 1;
    }
    sign | half as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::scalar::f16_to_f32;

    #[test]
    fn every_finite_half_round_trips() {
        for h in 0..=u16::MAX {
            if h & 0x7c00 == 0x7c00 {
                continue;
            }
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
    }

    #[test]
    fn midpoints_round_to_even_and_overflow_to_inf() {
        // Between consecutive halves a and a+1, the midpoint goes to the even one; a hair above goes up.
        for h in [0x0000u16, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x3c01, 0x7bfe] {
            let (a, b) = (f16_to_f32(h) as f64, f16_to_f32(h + 1) as f64);
            let mid = ((a + b) / 2.0) as f32;
            let even = if h & 1 == 0 { h } else { h + 1 };
            assert_eq!(f32_to_f16(mid), even, "midpoint after {h:#06x}");
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() + 1)), h + 1, "above midpoint {h:#06x}");
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() - 1)), h, "below midpoint {h:#06x}");
            assert_eq!(f32_to_f16(-mid), 0x8000 | even);
        }
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65519.99), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // the midpoint to 65536 rounds to even: inf
        assert_eq!(f32_to_f16(1e9), 0x7c00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000); // tie between 0 and the smallest subnormal
        assert_eq!(f32_to_f16(f32::from_bits(2f32.powi(-25).to_bits() + 1)), 0x0001);
        assert_eq!(f32_to_f16(1e-30), 0);
    }
}
