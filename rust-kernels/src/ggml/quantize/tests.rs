//! Quantize → our dequantizer (`scalar.rs`, itself checked against ggml's files) with named error
//! budgets on ragged, seeded data; parallel equals block by block; and the formats rank by precision as
//! their bit counts say. Byte equality with gguf-py's quantizers (Q8_0, Q4_0, Q5_0) is checked from TS
//! against committed fixtures (tests/ffi/ggml_quantize_test.ts).

use super::*;
use crate::ggml::dequantize;

/// Seeded values, roughly normal (sum of uniforms), with a few outliers as real weights have.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|i| {
            let v = (uniform() + uniform() + uniform() + uniform()) * 0.05;
            if i % 997 == 13 {
                v * 20.0
            } else {
                v
            }
        })
        .collect()
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut bytes = vec![0u8; x.len() / ty.block_elems() * ty.block_bytes()];
    quantize(ty, x, &mut bytes).unwrap();
    let mut back = vec![0f32; x.len()];
    dequantize(ty, &bytes, &mut back).unwrap();
    back
}

fn rms(v: impl Iterator<Item = f32>) -> f64 {
    let (mut sum, mut n) = (0f64, 0usize);
    for x in v {
        sum += (x as f64) * (x as f64);
        n += 1;
    }
    (sum / n as f64).sqrt()
}

/// Relative RMS error of a round trip on `x`.
fn relative_error(ty: GgmlType, x: &[f32]) -> f64 {
    let back = round_trip(ty, x);
    rms(x.iter().zip(&back).map(|(a, b)| a - b)) / rms(x.iter().copied())
}

#[test]
fn f16_is_exact_rounding() {
    let x = weights(1000, 1);
    let back = round_trip(GgmlType::F16, &x);
    for (a, b) in x.iter().zip(&back) {
        // Half has 11 significant bits: relative error ≤ 2⁻¹¹ (normal range).
        assert!((a - b).abs() <= a.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{a} → {b}");
    }
}

/// Per-value budgets of the 32-value formats, from how each codes a block with scale d:
/// Q8_0 rounds to the nearest code (½·d), Q5_0/Q4_0 truncate x/d + offset + ½ (also nearest, ½·d) except
/// the value opposite the extreme, which the top code caps one step short (1·d). The f16 rounding of d
/// adds up to |q|·d·2⁻¹¹ ≤ 127·d·2⁻¹¹ < 0.07·d.
#[test]
fn legacy_formats_stay_within_their_step() {
    for (ty, levels, budget) in
        [(GgmlType::Q8_0, 127.0, 0.57), (GgmlType::Q5_0, 16.0, 1.07), (GgmlType::Q4_0, 8.0, 1.07)]
    {
        let x = weights(QK * 77, ty as u64);
        let back = round_trip(ty, &x);
        for (b, (xs, ys)) in x.chunks(QK).zip(back.chunks(QK)).enumerate() {
            let d = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / levels;
            for (i, (a, y)) in xs.iter().zip(ys).enumerate() {
                assert!((a - y).abs() <= budget * d, "{} block {b} value {i}: {a} → {y} (d {d})", ty.name());
            }
        }
    }
}

/// The formats rank by bits per weight: Q8_0 (8.5) < Q6_K (6.56) < Q5_0 (5.5) < Q4_K (4.5) < Q4_0 (4.5)
/// in relative RMS error on weight-like data; Q4_K beats Q4_0 at the same size thanks to its per-group
/// mins and fitted scales. Measured here: Q8_0 0.0087, Q6_K 0.024, Q5_0 0.065, Q4_K 0.081, Q4_0 0.108
/// (the outliers every 997th value widen their blocks' steps).
#[test]
fn error_levels_rank_by_precision() {
    let x = weights(QK_K * 64, 5);
    let order = [GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q4_0];
    let errors: Vec<f64> = order.iter().map(|&ty| relative_error(ty, &x)).collect();
    eprintln!("relative RMS error: {:?}", order.iter().map(|t| t.name()).zip(&errors).collect::<Vec<_>>());
    for w in errors.windows(2) {
        assert!(w[0] < w[1], "{errors:?}");
    }
    // Absolute ceilings (≈ 1.5× measured) so a regression within the order is caught too.
    let ceilings = [0.013, 0.037, 0.098, 0.12, 0.16];
    for ((ty, e), c) in order.iter().zip(&errors).zip(ceilings) {
        assert!(*e < c, "{}: {e} ≥ {c}", ty.name());
    }
}

#[test]
fn k_quants_handle_constant_zero_and_one_sided_blocks() {
    let cases: [(&str, Vec<f32>); 4] = [
        ("zeros", vec![0.0; QK_K]),
        ("constant", vec![0.3; QK_K]),
        ("positive", (0..QK_K).map(|i| 0.01 + (i % 17) as f32 * 0.002).collect()),
        ("negative", (0..QK_K).map(|i| -0.01 - (i % 11) as f32 * 0.003).collect()),
    ];
    for (name, x) in cases {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (ty, budget) in [(GgmlType::Q4_K, 0.1), (GgmlType::Q6_K, 0.03)] {
            let back = round_trip(ty, &x);
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= budget * amax + 1e-12, "{name} {}: {a} → {b}", ty.name());
            }
        }
    }
}

#[test]
fn parallel_result_equals_block_by_block() {
    for ty in QUANTIZABLE {
        let n = (3 * TASK_ELEMS / QK_K + 3) * QK_K;
        let x = weights(n, ty as u64 + 11);
        let mut whole = vec![0u8; n / ty.block_elems() * ty.block_bytes()];
        quantize(ty, &x, &mut whole).unwrap();
        let mut one = vec![0u8; ty.block_bytes()];
        for (b, xs) in x.chunks(ty.block_elems()).enumerate() {
            quantize(ty, xs, &mut one).unwrap();
            assert_eq!(&whole[b * one.len()..(b + 1) * one.len()], &one[..], "{} block {b}", ty.name());
        }
    }
}

#[test]
fn refuses_bad_lengths_types_and_values() {
    let mut dst = vec![0u8; 34];
    let err = quantize(GgmlType::Q8_0, &[0.0; 31], &mut dst).unwrap_err();
    assert!(err.message.contains("src: 31 values is not a whole number of Q8_0 blocks"), "{err}");
    let err = quantize(GgmlType::Q8_0, &[0.0; 64], &mut dst).unwrap_err();
    assert!(err.message.contains("dst: expected 68 bytes"), "{err}");
    let err = quantize(GgmlType::Q4_1, &[0.0; 32], &mut [0u8; 20]).unwrap_err();
    assert_eq!(err.status, crate::error::Status::Unsupported);
    assert!(err.message.contains("cannot quantize to Q4_1"), "{err}");
    let mut x = [0.0f32; 32];
    x[5] = f32::NAN;
    let err = quantize(GgmlType::Q8_0, &x, &mut dst).unwrap_err();
    assert!(err.message.contains("value 5 is NaN"), "{err}");
    let err = quantize(GgmlType::F16, &[1.0, 70000.0], &mut [0u8; 4]).unwrap_err();
    assert!(err.message.contains("value 1 (70000) is beyond the f16 range"), "{err}");
    assert!(quantize_id(99, &[], &mut []).is_err());
    quantize(GgmlType::Q6_K, &[], &mut []).unwrap();
}
