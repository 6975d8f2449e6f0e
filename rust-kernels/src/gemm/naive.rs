//! The oracle: one dot product per output element, accumulated in f64. Slow on purpose; tests only.

/// `C = alpha · A · B + beta · C` with A, B given by element functions.
#[allow(clippy::too_many_arguments)]
pub fn gemm_naive(
    m: usize,
    n: usize,
    k: usize,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
    c: &mut [f32],
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| a(i, p) as f64 * b(p, j) as f64).sum();
            let out = &mut c[i * ldc + j];
            let prior = if beta == 0.0 { 0.0 } else { beta as f64 * *out as f64 };
            *out = (alpha as f64 * dot + prior) as f32;
        }
    }
}

/// Σ_p |a(i,p)| · |b(p,j)|: the scale against which a rounding error of the dot product is judged.
pub fn abs_dot(k: usize, a: impl Fn(usize) -> f32, b: impl Fn(usize) -> f32) -> f64 {
    (0..k).map(|p| (a(p) as f64 * b(p) as f64).abs()).sum()
}
