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

/// Test data: smooth, signed, different per seed.
pub fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (i as f32 * 0.618 + seed as f32 * 1.7).sin() * 1.5).collect()
}

/// Runs `sgemm` on `kernel` for A `m × k` at strides `sa` and B `k × n` at `sb` with a few alpha/beta
/// pairs, and asserts each element within f32 rounding of the oracle (relative to Σ|a·b| and |beta·C|) and
/// C's padding columns untouched (beta 0 never reads C: it starts as NaN).
pub fn assert_sgemm_matches_oracle(
    kernel: crate::dispatch::Kernel,
    (m, n, k): (usize, usize, usize),
    (rsa, csa): (usize, usize),
    (rsb, csb): (usize, usize),
) {
    let (a, b) = (test_values(m * k, 1), test_values(k * n, 2));
    let (ae, be) = (|i: usize, p: usize| a[i * rsa + p * csa], |p: usize, j: usize| b[p * rsb + j * csb]);
    let run =
        super::Run { kernel, compute: super::Compute::F32, unit: crate::dispatch::Bf16Unit::Fma, threads: 2 };
    for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0), (2.0, -0.25)] {
        let ldc = n + 3;
        let mut c = test_values(m * ldc, 3);
        if beta == 0.0 {
            c.iter_mut().for_each(|v| *v = f32::NAN);
        }
        let before = c.clone();
        let mut want = c.clone();
        gemm_naive(m, n, k, ae, be, &mut want, ldc, alpha, beta);
        super::sgemm(m, n, k, (&a, rsa, csa), (&b, rsb, csb), &mut c, ldc, alpha, beta, run).unwrap();
        let case = format!("{kernel:?} {m}x{n}x{k} a({rsa},{csa}) b({rsb},{csb}) alpha {alpha} beta {beta}");
        for i in 0..m {
            for j in 0..n {
                let prior = if beta == 0.0 { 0.0 } else { (beta as f64 * before[i * ldc + j] as f64).abs() };
                let scale = alpha.abs() as f64 * abs_dot(k, |p| ae(i, p), |p| be(p, j)) + prior;
                let (got, expected) = (c[i * ldc + j], want[i * ldc + j]);
                let err = (got as f64 - expected as f64).abs();
                assert!(err <= 1e-5 * scale.max(1e-30), "{case} at ({i},{j}): {got} vs {expected}");
            }
            for j in n..ldc {
                assert_eq!(
                    c[i * ldc + j].to_bits(),
                    before[i * ldc + j].to_bits(),
                    "{case}: C[{i}][{j}] was written"
                );
            }
        }
    }
}
