//! The reference dequantization of each ggml block: plain loops, no `unsafe`, in the order ggml's own
//! reference (`dequantize_row_*` in ggml-quants.c) performs the float operations, so results match it
//! bit for bit (each product and sum rounded to f32 in the same sequence).

use super::*;

/// IEEE half → f32, exact for every bit pattern (subnormals, ±inf, NaN payloads).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = if exponent == 0x1f {
        sign | 0x7f80_0000 | (mantissa << 13)
    } else if exponent != 0 {
        // Rebias the exponent from 15 to 127.
        sign | ((exponent + 112) << 23) | (mantissa << 13)
    } else {
        // Zero or subnormal: mantissa · 2⁻²⁴, exact in f32.
        let magnitude = mantissa as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -magnitude } else { magnitude };
    };
    f32::from_bits(bits)
}

fn half(bytes: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(bytes))
}

pub fn f32(b: &F32, y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(b.0);
}

pub fn f16(b: &F16, y: &mut [f32; 1]) {
    y[0] = half(b.0);
}

pub fn bf16(b: &BF16, y: &mut [f32; 1]) {
    y[0] = f32::from_bits((u16::from_le_bytes(b.0) as u32) << 16);
}

pub fn q4_0(b: &BlockQ4_0, y: &mut [f32; QK]) {
    let d = half(b.d);
    for j in 0..QK / 2 {
        let x0 = (b.qs[j] & 0x0f) as i32 - 8;
        let x1 = (b.qs[j] >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + QK / 2] = x1 as f32 * d;
    }
}

pub fn q4_1(b: &BlockQ4_1, y: &mut [f32; QK]) {
    let (d, m) = (half(b.d), half(b.m));
    for j in 0..QK / 2 {
        y[j] = (b.qs[j] & 0x0f) as f32 * d + m;
        y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
    }
}

/// The 5-bit values of a Q5 block: bit j of `qh` is the high bit of value j, bit j + 16 that of j + 16.
fn q5_values(qh: [u8; 4], qs: &[u8; QK / 2]) -> [u8; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        q[j] = (qs[j] & 0x0f) | h0 as u8;
        q[j + QK / 2] = (qs[j] >> 4) | h1 as u8;
    }
    q
}

pub fn q5_0(b: &BlockQ5_0, y: &mut [f32; QK]) {
    let d = half(b.d);
    for (y, q) in y.iter_mut().zip(q5_values(b.qh, &b.qs)) {
        *y = (q as i32 - 16) as f32 * d;
    }
}

pub fn q5_1(b: &BlockQ5_1, y: &mut [f32; QK]) {
    let (d, m) = (half(b.d), half(b.m));
    for (y, q) in y.iter_mut().zip(q5_values(b.qh, &b.qs)) {
        *y = q as f32 * d + m;
    }
}

pub fn q8_0(b: &BlockQ8_0, y: &mut [f32; QK]) {
    let d = half(b.d);
    for (y, &q) in y.iter_mut().zip(&b.qs) {
        *y = q as f32 * d;
    }
}

pub fn q2_k(b: &BlockQ2K, y: &mut [f32; QK_K]) {
    let (d, min) = (half(b.d), half(b.dmin));
    // Two halves of 128 values; each reads 32 bytes of `qs` four times, two bits further each time.
    // Every 16 values have their own 4-bit scale (low nibble) and 4-bit min (high nibble).
    let mut group = 0;
    for n in 0..2 {
        let q = &b.qs[32 * n..32 * n + 32];
        for j in 0..4 {
            let shift = 2 * j;
            for part in 0..2 {
                let sc = b.scales[group];
                group += 1;
                let dl = d * (sc & 0x0f) as f32;
                let ml = min * (sc >> 4) as f32;
                let base = 128 * n + 32 * j + 16 * part;
                for l in 0..16 {
                    let q = (q[16 * part + l] >> shift) & 3;
                    y[base + l] = dl * q as f32 - ml;
                }
            }
        }
    }
}

/// The sixteen 6-bit scales of a Q3_K block: low 4 bits in bytes 0..8 (two per byte, first all low
/// nibbles then all high nibbles), high 2 bits in bytes 8..12 (four per byte).
fn q3_k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut scales = [0i8; 16];
    for (i, scale) in scales.iter_mut().enumerate() {
        let low = if i < 8 { packed[i] & 0x0f } else { packed[i - 8] >> 4 };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *scale = (low | (high << 4)) as i8;
    }
    scales
}

pub fn q3_k(b: &BlockQ3K, y: &mut [f32; QK_K]) {
    let d = half(b.d);
    let scales = q3_k_scales(&b.scales);
    // Layout as Q2_K for the low two bits; the third bit of value l (mod 32) sits in hmask[l], at bit
    // (4n + j) for pass j of half n. A clear high bit means "subtract 4".
    let mut group = 0;
    for n in 0..2 {
        let q = &b.qs[32 * n..32 * n + 32];
        for j in 0..4 {
            let shift = 2 * j;
            let mask = 1u8 << (4 * n + j);
            for part in 0..2 {
                let dl = d * (scales[group] as i32 - 32) as f32;
                group += 1;
                let base = 128 * n + 32 * j + 16 * part;
                for l in 0..16 {
                    let i = 16 * part + l;
                    let low = ((q[i] >> shift) & 3) as i32;
                    let q = low - if b.hmask[i] & mask != 0 { 0 } else { 4 };
                    y[base + l] = dl * q as f32;
                }
            }
        }
    }
}

/// Scale and min of group `j` (0..8) of a Q4_K/Q5_K block, 6 bits each: groups 0..4 keep them in the
/// low 6 bits of bytes j and j + 4; groups 4..8 in the nibbles of bytes j + 4, with their top 2 bits in
/// the spare top bits of bytes j - 4 (scale) and j (min).
pub fn k4_scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub fn q4_k(b: &BlockQ4K, y: &mut [f32; QK_K]) {
    let (d, min) = (half(b.d), half(b.dmin));
    // Four chunks of 64 values from 32 bytes: low nibbles are group 2c, high nibbles group 2c + 1.
    for c in 0..4 {
        let q = &b.qs[32 * c..32 * c + 32];
        let (sc1, m1) = k4_scale_min(2 * c, &b.scales);
        let (sc2, m2) = k4_scale_min(2 * c + 1, &b.scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            y[64 * c + l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

pub fn q5_k(b: &BlockQ5K, y: &mut [f32; QK_K]) {
    let (d, min) = (half(b.d), half(b.dmin));
    // As Q4_K; the fifth bit of value l (mod 32) of group g is bit g of qh[l].
    for c in 0..4 {
        let ql = &b.qs[32 * c..32 * c + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (sc1, m1) = k4_scale_min(2 * c, &b.scales);
        let (sc2, m2) = k4_scale_min(2 * c + 1, &b.scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
            y[64 * c + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

pub fn q6_k(b: &BlockQ6K, y: &mut [f32; QK_K]) {
    let d = half(b.d);
    // Two halves of 128 values. In half n, for l in 0..32, byte ql[l] holds values l (low nibble) and
    // l + 64 (high), ql[l + 32] values l + 32 and l + 96; qh[l] holds the top two bits of all four.
    for n in 0..2 {
        let ql = &b.ql[64 * n..64 * n + 64];
        let qh = &b.qh[32 * n..32 * n + 32];
        let sc = &b.scales[8 * n..8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
        }
    }
}

pub fn q8_k(b: &BlockQ8K, y: &mut [f32; QK_K]) {
    let d = f32::from_le_bytes(b.d);
    for (y, &q) in y.iter_mut().zip(&b.qs) {
        *y = d * q as f32;
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the format descriptions
mod tests {
    //! Hand-made blocks: each test packs known values by the format's description (written here
    //! independently of the decoder above) and checks the decoded values.
    use super::*;

    const HALF: [u8; 2] = 0x3800u16.to_le_bytes();
    const QUARTER: [u8; 2] = 0x3400u16.to_le_bytes();
    const MINUS_ONE: [u8; 2] = 0xbc00u16.to_le_bytes();

    /// A small deterministic sequence in 0..modulus.
    fn values(n: usize, modulus: u32, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| ((i * 7 + seed).wrapping_mul(2_654_435_761) >> 13) % modulus)
            .map(|v| v as u8)
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "value {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn halves_convert_exactly() {
        let cases: [(u16, f32); 9] = [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8), // smallest subnormal, 2^-24
            (0x03ff, 1023.0 / 16_777_216.0),
            (0x0400, 6.103_515_6e-5), // smallest normal, 2^-14
            (0x3555, 0.333_251_95),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (h, want) in cases {
            assert_eq!(f16_to_f32(h), want, "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn scalar_types() {
        let mut y = [0f32; 1];
        f32(&F32(1.5f32.to_le_bytes()), &mut y);
        assert_eq!(y[0], 1.5);
        f16(&F16(MINUS_ONE), &mut y);
        assert_eq!(y[0], -1.0);
        bf16(&BF16(0x4049u16.to_le_bytes()), &mut y); // 3.140625
        assert_eq!(y[0], 3.140625);
    }

    #[test]
    fn q4_0_low_nibbles_first_then_high() {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let mut y = [0f32; 32];
        q4_0(&BlockQ4_0 { d: HALF, qs }, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    #[test]
    fn q4_1_adds_the_min() {
        let qs = [0x4Fu8; 16]; // low nibble 15, high nibble 4
        let mut y = [0f32; 32];
        q4_1(&BlockQ4_1 { d: QUARTER, m: MINUS_ONE, qs }, &mut y);
        assert!(y[..16].iter().all(|&v| v == 15.0 * 0.25 - 1.0));
        assert!(y[16..].iter().all(|&v| v == 4.0 * 0.25 - 1.0));
    }

    /// Packs 32 five-bit values the Q5 way.
    fn pack_q5(v: &[u8]) -> ([u8; 4], [u8; 16]) {
        let mut qh = 0u32;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            qs[j] = (v[j] & 15) | ((v[j + 16] & 15) << 4);
            qh |= ((v[j] as u32 >> 4) << j) | ((v[j + 16] as u32 >> 4) << (j + 16));
        }
        (qh.to_le_bytes(), qs)
    }

    #[test]
    fn q5_0_and_q5_1_take_bit_j_of_qh_as_bit_4() {
        let v = values(32, 32, 3);
        let (qh, qs) = pack_q5(&v);
        let mut y = [0f32; 32];
        q5_0(&BlockQ5_0 { d: HALF, qh, qs }, &mut y);
        let want: Vec<f32> = v.iter().map(|&q| (q as f32 - 16.0) * 0.5).collect();
        assert_eq!(y.to_vec(), want);
        q5_1(&BlockQ5_1 { d: QUARTER, m: MINUS_ONE, qh, qs }, &mut y);
        let want: Vec<f32> = v.iter().map(|&q| q as f32 * 0.25 - 1.0).collect();
        assert_eq!(y.to_vec(), want);
    }

    #[test]
    fn q8_0_signed_bytes() {
        let mut qs = [0i8; 32];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = (j as i8 - 16) * 8; // -128 ..= 120
        }
        let mut y = [0f32; 32];
        q8_0(&BlockQ8_0 { d: HALF, qs }, &mut y);
        for j in 0..32 {
            assert_eq!(y[j], qs[j] as f32 * 0.5);
        }
    }

    #[test]
    fn q8_k_f32_scale() {
        let mut b = BlockQ8K { d: 0.125f32.to_le_bytes(), qs: [0; 256], bsums: [0; 32] };
        for (j, q) in b.qs.iter_mut().enumerate() {
            *q = (j as i32 - 128) as i8;
        }
        let mut y = [0f32; 256];
        q8_k(&b, &mut y);
        for j in 0..256 {
            assert_eq!(y[j], (j as f32 - 128.0) * 0.125);
        }
    }

    #[test]
    fn q2_k_groups_of_16() {
        // Value i: half n = i/128, pass j = (i%128)/32 (bit shift 2j), part = (i%32)/16,
        // byte qs[32n + 16 part + i%16]; group i/16 has scale (low nibble) and min (high nibble).
        let q = values(256, 4, 1);
        let scales = values(16, 16, 2);
        let mins = values(16, 16, 5);
        let mut b = BlockQ2K { scales: [0; 16], qs: [0; 64], d: HALF, dmin: QUARTER };
        for g in 0..16 {
            b.scales[g] = scales[g] | (mins[g] << 4);
        }
        for i in 0..256 {
            let (n, j, part, l) = (i / 128, (i % 128) / 32, (i % 32) / 16, i % 16);
            b.qs[32 * n + 16 * part + l] |= q[i] << (2 * j);
        }
        let mut y = [0f32; 256];
        q2_k(&b, &mut y);
        let want: Vec<f32> = (0..256)
            .map(|i| 0.5 * scales[i / 16] as f32 * q[i] as f32 - 0.25 * mins[i / 16] as f32)
            .collect();
        assert_close(&y, &want);
    }

    #[test]
    fn q3_k_high_bit_and_6_bit_scales() {
        // Values -4..4 stored as 2 low bits in qs (Q2_K layout) plus a high bit in hmask[i % 32], at bit
        // (i / 32); a set bit means "no offset". Scales are 6-bit, offset by 32.
        let q = values(256, 8, 4); // q + 4 in 0..8
        let scales = values(16, 64, 9);
        let mut b = BlockQ3K { hmask: [0; 32], qs: [0; 64], scales: [0; 12], d: QUARTER };
        for i in 0..256 {
            let (n, j, part, l) = (i / 128, (i % 128) / 32, (i % 32) / 16, i % 16);
            b.qs[32 * n + 16 * part + l] |= (q[i] & 3) << (2 * j);
            b.hmask[i % 32] |= (q[i] >> 2) << (i / 32);
        }
        for (i, &s) in scales.iter().enumerate() {
            let low = s & 15;
            if i < 8 {
                b.scales[i] |= low;
            } else {
                b.scales[i - 8] |= low << 4;
            }
            b.scales[8 + i % 4] |= (s >> 4) << (2 * (i / 4));
        }
        let mut y = [0f32; 256];
        q3_k(&b, &mut y);
        let want: Vec<f32> =
            (0..256).map(|i| 0.25 * (scales[i / 16] as f32 - 32.0) * (q[i] as f32 - 4.0)).collect();
        assert_close(&y, &want);
    }

    /// Packs 8 six-bit scales and mins the Q4_K/Q5_K way.
    fn pack_k4_scales(sc: &[u8], m: &[u8]) -> [u8; 12] {
        let mut p = [0u8; 12];
        for j in 0..4 {
            p[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
            p[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
            p[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
        }
        p
    }

    #[test]
    fn k4_scales_round_trip() {
        let sc = values(8, 64, 11);
        let m = values(8, 64, 12);
        let packed = pack_k4_scales(&sc, &m);
        for j in 0..8 {
            assert_eq!(k4_scale_min(j, &packed), (sc[j], m[j]), "group {j}");
        }
    }

    #[test]
    fn q4_k_and_q5_k_groups_of_32() {
        // Value i is in group g = i / 32; chunk c = i / 64 uses bytes qs[32c..32c+32], low nibbles for
        // even groups, high nibbles for odd; Q5_K's fifth bit is bit g of qh[i % 32].
        let q = values(256, 32, 6);
        let sc = values(8, 64, 7);
        let m = values(8, 64, 8);
        let scales = pack_k4_scales(&sc, &m);
        let mut b4 = BlockQ4K { d: HALF, dmin: QUARTER, scales, qs: [0; 128] };
        let mut b5 = BlockQ5K { d: HALF, dmin: QUARTER, scales, qh: [0; 32], qs: [0; 128] };
        for i in 0..256 {
            let (g, l) = (i / 32, i % 32);
            let shift = if g % 2 == 0 { 0 } else { 4 };
            b4.qs[32 * (g / 2) + l] |= (q[i] & 15) << shift;
            b5.qs[32 * (g / 2) + l] |= (q[i] & 15) << shift;
            b5.qh[l] |= (q[i] >> 4) << g;
        }
        let want = |i: usize, q: u8| 0.5 * sc[i / 32] as f32 * q as f32 - 0.25 * m[i / 32] as f32;
        let mut y = [0f32; 256];
        q4_k(&b4, &mut y);
        assert_close(&y, &(0..256).map(|i| want(i, q[i] & 15)).collect::<Vec<_>>());
        q5_k(&b5, &mut y);
        assert_close(&y, &(0..256).map(|i| want(i, q[i])).collect::<Vec<_>>());
    }

    #[test]
    fn q6_k_groups_of_16() {
        // Value i: half n = i / 128, r = i % 128, quarter = r / 32, l = r % 32. Low 4 bits in
        // ql[64n + l + 32 (quarter & 1)] (low nibble for quarters 0–1, high for 2–3), top 2 bits in
        // qh[32n + l] at bit 2·quarter; signed 8-bit scale per 16 values; q offset by 32.
        let q = values(256, 64, 13);
        let scales: Vec<i8> = values(16, 256, 14).into_iter().map(|v| v as i8).collect();
        let mut b = BlockQ6K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: QUARTER };
        for (s, &v) in b.scales.iter_mut().zip(&scales) {
            *s = v;
        }
        for i in 0..256 {
            let (n, r) = (i / 128, i % 128);
            let (quarter, l) = (r / 32, r % 32);
            let shift = if quarter < 2 { 0 } else { 4 };
            b.ql[64 * n + l + 32 * (quarter & 1)] |= (q[i] & 15) << shift;
            b.qh[32 * n + l] |= (q[i] >> 4) << (2 * quarter);
        }
        let mut y = [0f32; 256];
        q6_k(&b, &mut y);
        let want: Vec<f32> = (0..256).map(|i| 0.25 * scales[i / 16] as f32 * (q[i] as f32 - 32.0)).collect();
        assert_close(&y, &want);
    }
}
