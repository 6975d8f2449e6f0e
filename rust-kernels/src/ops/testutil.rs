//! Deterministic test data for the ops tests (no RNG crate needed).

/// n values in [-1, 1] from a multiplicative hash of (index, seed).
pub fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761);
            let h = (h ^ (h >> 15)).wrapping_mul(0x2C1B_3C6D);
            ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

pub fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Largest |a - b| / (1 + |b|) over two equally long slices.
pub fn max_rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max)
}
