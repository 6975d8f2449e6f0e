//! Small vectorisable building blocks shared by the ops kernels. All are `#[inline(always)]` so they take
//! on the CPU path of the kernel body that calls them (see `exec::on_path`). Reductions keep `LANES`
//! independent partial sums and combine them in a fixed order, so the result never depends on the path.

/// Partial sums per reduction: two AVX2 registers (four SSE ones), enough to hide the add latency a bit.
pub const LANES: usize = 16;

/// e^x in f32 without a libm call, so loops over it vectorise. Error below 2 ulp for x in [-87, 88]
/// (tested against f64); x < -87 gives 0, x > 88 gives e^88, NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact (355/512 has 9 significant bits, |n| < 2^8).
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let xc = if x > 88.0 { 88.0 } else { x };
    let shifted = xc * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (xc - n * LN2_HI) - n * LN2_LO; // |r| <= ln2 / 2
                                            // Taylor series to r^7 / 7!: the truncation error is below 0.05 ulp for |r| <= ln2 / 2.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let n_int = shifted.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let two_n = f32::from_bits(((n_int + 127) << 23) as u32);
    let y = p * two_n;
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// x * sigmoid(x), written as x / (1 + e^-x) like PyTorch's fp32 SiLU.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Combines lane partials pairwise in a fixed order.
#[inline(always)]
fn combine(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Σ a[i] * b[i].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += xa[l] * xb[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    combine(acc)
}

/// Σ a[i].
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = a.chunks_exact(LANES);
    for xa in &mut chunks {
        for l in 0..LANES {
            acc[l] += xa[l];
        }
    }
    for (l, x) in chunks.remainder().iter().enumerate() {
        acc[l] += x;
    }
    combine(acc)
}

/// max a[i] (−inf for an empty slice). NaN inputs may be skipped; the caller's exp then shows them.
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = a.chunks_exact(LANES);
    for xa in &mut chunks {
        for l in 0..LANES {
            acc[l] = if xa[l] > acc[l] { xa[l] } else { acc[l] };
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] = if x > acc[l] { x } else { acc[l] };
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Σ a[i]² accumulated in f64 (for norms, where a long f32 sum would lose digits).
#[inline(always)]
pub fn sum_squares_f64(a: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = a.chunks_exact(8);
    for xa in &mut chunks {
        for l in 0..8 {
            acc[l] += xa[l] as f64 * xa[l] as f64;
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] += x as f64 * x as f64;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// y[i] += a * x[i].
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// y[i] *= a.
#[inline(always)]
pub fn scale(y: &mut [f32], a: f32) {
    for yi in y.iter_mut() {
        *yi *= a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(got: f32, want: f64) -> f64 {
        let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE);
        let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn exp_within_2_ulp_of_f64() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
            x += 0.000_731;
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn reductions_match_f64() {
        for n in [0usize, 1, 7, 16, 17, 100] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let s: f64 = a.iter().map(|x| *x as f64).sum();
            assert!((dot(&a, &b) as f64 - d).abs() < 1e-4);
            assert!((sum(&a) as f64 - s).abs() < 1e-4);
            let m = a.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&a), m);
        }
    }
}
