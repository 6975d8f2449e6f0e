//! Narrow products summed over tokens: LoRA's factor gradients `dB = dYᵀ·xa` (`[out, r]`) and
//! `dA = dxaᵀ·x` (`[r, in]`). Both are `T[j][0..r] = Σ_p G[p][j] · S[p][0..r]` with a long operand G that is
//! row-major along j (`dY` or `x`, `[tokens, width]`) and a narrow S (`xa` or `dxa`, `[tokens, r]`): a sum
//! of rank-1 updates. A worker owns a range of j and takes G a few rows at a time, reading those rows
//! left to right (streams the prefetchers follow; going down a column instead lands every row of a block in
//! the same L1 set, 16–57 KiB apart) with their S rows held in registers: per j one load and one store of
//! `T[j]` (an L2-resident scratch) for 8 FMAs (4 × 2 on AVX2). T lands in C as rows (`dB`) or columns (`dA`).
//! The BLIS nest took these through padded 32-wide tiles and a full pack of G (2–5× slower).

use super::pack::Strided;
use super::thin::MAX_WIDTH;
use super::SharedOut;
use crate::dispatch::Kernel;
use crate::simd::Simd;

/// Below this long side the blocked GEMM splits as well.
const MIN_LONG: usize = 64;

/// How the sums `T[j][q]` land in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landing {
    /// C is `[long, narrow]`: `C[j][q]` (dB).
    Rows,
    /// C is `[narrow, long]`: `C[q][j]` (dA).
    Columns,
}

/// The product as sums over G's rows, if `C[m, n] = A·B` (depth k) is one of these on `kernel`.
pub fn plan<'a>(
    m: usize,
    n: usize,
    k: usize,
    a: &Strided<'a>,
    b: &Strided<'a>,
    kernel: Kernel,
) -> Option<(Landing, Strided<'a>, Strided<'a>)> {
    if kernel == Kernel::Scalar || k == 0 {
        return None;
    }
    if n <= MAX_WIDTH && m >= MIN_LONG && a.rs == 1 && a.cs != 1 {
        // dB: G[p][j] = A(j, p), S[p][q] = B(p, q).
        let g = Strided { data: a.data, rs: a.cs, cs: 1 };
        return Some((Landing::Rows, g, Strided { data: b.data, rs: b.rs, cs: b.cs }));
    }
    if m <= MAX_WIDTH && n >= MIN_LONG && b.cs == 1 && b.rs != 1 {
        // dA: G[p][j] = B(p, j), S[p][q] = A(q, p).
        let s = Strided { data: a.data, rs: a.cs, cs: a.rs };
        return Some((Landing::Columns, Strided { data: b.data, rs: b.rs, cs: 1 }, s));
    }
    None
}

/// `C = alpha · A · B + beta · C` for a product `plan` accepted: `long` × `narrow` with G `[k, long]`
/// (unit column stride) and S `[k, narrow]`.
///
/// # Safety
/// `c` holds the `m × n` view at row stride `ldc`, not aliased by A or B; the views were checked by the
/// caller; `kernel` is one this CPU runs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    landing: Landing,
    long: usize,
    narrow: usize,
    k: usize,
    g: Strided,
    s: Strided,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    kernel: Kernel,
    threads: usize,
) {
    crate::report::note(crate::report::Family::GemmF32, crate::report::Route::of_kernel(kernel));
    let packed = super::thin::pack_narrow(k, narrow, &s);
    let out = SharedOut(c);
    // Each worker's j range starts on a cache line of G's rows (16 floats).
    let lines = long.div_ceil(16);
    let parts = threads.max(1).min(lines);
    let body = |part: usize| {
        // The whole wrapper, not its raw pointer field, is what the closure must capture (Send).
        #[allow(clippy::redundant_locals)]
        let out = out;
        let (j0, j1) = (16 * (lines * part / parts), long.min(16 * (lines * (part + 1) / parts)));
        let mut sums = vec![0.0f32; (j1 - j0) * MAX_WIDTH];
        rows_into_sums(kernel, k, &g, j0, &packed, &mut sums);
        let land = |cell: *mut f32, sum: f32| super::thin::land(cell, sum, alpha, beta);
        match landing {
            Landing::Rows => {
                for (j, t) in (j0..j1).zip(sums.chunks_exact(MAX_WIDTH)) {
                    for (q, &sum) in t.iter().enumerate().take(narrow) {
                        land(out.0.add(j * ldc + q), sum);
                    }
                }
            }
            // Along C's rows (a column at a time would touch a line of each of C's rows per element).
            Landing::Columns => {
                for q in 0..narrow {
                    for (j, t) in (j0..j1).zip(sums.chunks_exact(MAX_WIDTH)) {
                        land(out.0.add(q * ldc + j), t[q]);
                    }
                }
            }
        }
    };
    crate::threads::run_parts(parts, body);
}

/// Rows of G per pass on each path (their S rows stay in registers: 8 vectors on AVX-512, 4 × 2 on AVX2).
fn rows_per_pass(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Avx512 => 8,
        _ => 4,
    }
}

/// `sums[j][0..16] = Σ_p G[p][j0 + j] · packed[p][0..16]` for every j of `sums` (`sums.len() / 16` columns).
fn rows_into_sums(kernel: Kernel, k: usize, g: &Strided, j0: usize, packed: &[f32], sums: &mut [f32]) {
    let cols = sums.len() / MAX_WIDTH;
    debug_assert!(packed.len() >= k * MAX_WIDTH && (k == 0 || (k - 1) * g.rs + j0 + cols <= g.data.len()));
    let step = rows_per_pass(kernel);
    let mut p = 0;
    while p + step <= k {
        match kernel {
            // Safety: the path was chosen for this CPU; rows p..p+step and columns j0..j0+cols are in G.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { rows_avx512(p, g, j0, packed, sums) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { rows_avx2(p, g, j0, packed, sums) },
            _ => rows_scalar(p..p + step, g, j0, packed, sums),
        }
        p += step;
    }
    rows_scalar(p..k, g, j0, packed, sums);
}

/// The plain twin: `sums[j] += Σ_{p ∈ rows} G[p][j0 + j] · packed[p]`.
pub fn rows_scalar(rows: std::ops::Range<usize>, g: &Strided, j0: usize, packed: &[f32], sums: &mut [f32]) {
    for p in rows {
        let s = &packed[p * MAX_WIDTH..(p + 1) * MAX_WIDTH];
        for (j, t) in sums.chunks_exact_mut(MAX_WIDTH).enumerate() {
            let gv = g.data[p * g.rs + j0 + j];
            for q in 0..MAX_WIDTH {
                t[q] += gv * s[q];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn rows_avx512(p0: usize, g: &Strided, j0: usize, packed: &[f32], sums: &mut [f32]) {
    rows_simd::<crate::simd::avx512::Avx512, 8, 1>(p0, g, j0, packed, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(p0: usize, g: &Strided, j0: usize, packed: &[f32], sums: &mut [f32]) {
    rows_simd::<crate::simd::avx2::Avx2, 4, 2>(p0, g, j0, packed, sums)
}

/// `sums[j] += Σ_{i < P} G[p0 + i][j0 + j] · packed[p0 + i]`: P rows of G walked left to right together.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // several arrays share the vector index
unsafe fn rows_simd<S: Simd, const P: usize, const V: usize>(
    p0: usize,
    g: &Strided,
    j0: usize,
    packed: &[f32],
    sums: &mut [f32],
) {
    let l = S::LANES;
    debug_assert!(V * l == MAX_WIDTH);
    let mut sv = [[S::zero(); V]; P];
    let mut row = [g.data.as_ptr(); P];
    for i in 0..P {
        for v in 0..V {
            sv[i][v] = S::load(packed.as_ptr().add((p0 + i) * MAX_WIDTH + v * l));
        }
        row[i] = g.data.as_ptr().add((p0 + i) * g.rs + j0);
    }
    let t = sums.as_mut_ptr();
    for j in 0..sums.len() / MAX_WIDTH {
        let mut acc = [S::zero(); V];
        for v in 0..V {
            acc[v] = S::load(t.add(j * MAX_WIDTH + v * l));
        }
        for i in 0..P {
            let gv = S::splat(*row[i].add(j));
            for v in 0..V {
                acc[v] = S::fma(gv, sv[i][v], acc[v]);
            }
        }
        for v in 0..V {
            S::store(t.add(j * MAX_WIDTH + v * l), acc[v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::naive::{abs_dot, assert_sgemm_matches_oracle, test_values as values};

    /// (long, narrow, tokens): LoRA's rank 16 and narrower, long sides that split unevenly, one
    /// token, and depths that leave a partial pass of rows.
    const SHAPES: [(usize, usize, usize); 6] =
        [(64, 16, 1), (100, 16, 37), (257, 13, 300), (70, 1, 5), (131, 9, 1031), (300, 8, 12)];

    #[test]
    fn factor_gradients_match_the_oracle_on_every_path_and_landing() {
        let mut ran = Vec::new();
        for kernel in crate::dispatch::available() {
            for &(long, narrow, k) in &SHAPES {
                for landing in [Landing::Rows, Landing::Columns] {
                    // dB: A = dYᵀ (column-major), B = xa row-major; dA: A = dxaᵀ, B = x row-major.
                    let (m, n) = if landing == Landing::Rows { (long, narrow) } else { (narrow, long) };
                    let (rsa, csa, rsb, csb) = (1, m, n, 1);
                    let (a, b) = (values(m * k, 1), values(k * n, 2));
                    let view_a = Strided { data: &a, rs: rsa, cs: csa };
                    let view_b = Strided { data: &b, rs: rsb, cs: csb };
                    let planned = plan(m, n, k, &view_a, &view_b, kernel).map(|p| p.0);
                    assert_eq!(planned, (kernel != Kernel::Scalar).then_some(landing), "{m}x{n}x{k}");
                    assert_sgemm_matches_oracle(kernel, (m, n, k), (rsa, csa), (rsb, csb));
                }
            }
            ran.push(format!("{kernel:?}"));
        }
        println!("narrow factor-gradient paths exercised: {}", ran.join(", "));
    }

    #[test]
    fn simd_passes_equal_the_plain_twin_up_to_fused_rounding() {
        for kernel in crate::dispatch::available().into_iter().filter(|&k| k != Kernel::Scalar) {
            // Depths that leave a tail for the plain loop; a column range that starts mid-row.
            let (width, j0, cols) = (53, 5, 41);
            for k in [rows_per_pass(kernel), 2 * rows_per_pass(kernel) + 3] {
                let g_data = values(k * width, 4);
                let g = Strided { data: &g_data, rs: width, cs: 1 };
                let packed = values(k * MAX_WIDTH, 5);
                let (mut got, mut want) = (vec![0.0f32; cols * MAX_WIDTH], vec![0.0f32; cols * MAX_WIDTH]);
                rows_into_sums(kernel, k, &g, j0, &packed, &mut got);
                rows_scalar(0..k, &g, j0, &packed, &mut want);
                for idx in 0..cols * MAX_WIDTH {
                    let (j, q) = (idx / MAX_WIDTH, idx % MAX_WIDTH);
                    let scale = abs_dot(k, |p| g_data[p * width + j0 + j], |p| packed[p * MAX_WIDTH + q]);
                    assert!(
                        ((got[idx] - want[idx]) as f64).abs() <= 1e-6 * scale,
                        "{kernel:?} k {k} [{idx}]"
                    );
                }
            }
        }
    }
}
