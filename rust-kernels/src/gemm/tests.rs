//! Every path against the f64 dot-product oracle, on ragged shapes, with named error budgets.

use super::naive::{abs_dot, gemm_naive};
use super::*;
use crate::dispatch::available;
use crate::nf4::quantize::quantize;

/// f32 paths: error ≤ 1e-5 of Σ|a||b| (the scale of the dot product's rounding).
const F32_BUDGET: f64 = 1e-5;
/// bf16 paths round both operands to 8 significant bits (relative error ≤ 2^-8 each), so each product is off by
/// ≤ 2·2^-8 relative.
const BF16_BUDGET: f64 = 2.0 * (1.0 / 256.0) + 1e-5;

/// (m, n, k): M = 1, dims that are not multiples of any tile, K not a multiple of 64, empty products.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 63, 10),
    (63, 1, 10),
    (7, 17, 45),
    (13, 33, 130),
    (64, 48, 64),
    (6, 16, 256),
    (70, 100, 300),
    (5, 9, 0),
];

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn run_with(kernel: Kernel, compute: Compute, threads: usize) -> Run {
    Run { kernel, compute, unit: crate::dispatch::Bf16Unit::Fma, threads }
}

fn assert_close(got: &[f32], want: &[f32], scale: impl Fn(usize) -> f64, budget: f64, what: &str) {
    let mut worst = 0.0f64;
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i] as f64).abs() / scale(i).max(1e-30);
        worst = worst.max(err);
    }
    assert!(worst <= budget, "{what}: worst relative error {worst:.3e} > budget {budget:.1e}");
}

#[test]
fn sgemm_all_paths_all_layouts_match_the_oracle() {
    for kernel in available() {
        for compute in [Compute::F32, Compute::Bf16] {
            let budget = if compute == Compute::F32 { F32_BUDGET } else { BF16_BUDGET };
            for &(m, n, k) in &SHAPES {
                // A row-major, B transposed (B = Wᵀ with W [n, k]): the X·Wᵀ layout; then both plain.
                for (rsb, csb) in [(1, k.max(1)), (n, 1)] {
                    let a = random(m * k, 1);
                    let b = random(k * n, 2);
                    let c0 = random(m * n, 3);
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (1.0, -2.0)] {
                        let mut want = c0.clone();
                        gemm_naive(
                            m,
                            n,
                            k,
                            |i, p| a[i * k + p],
                            |p, j| b[p * rsb + j * csb],
                            &mut want,
                            n,
                            alpha,
                            beta,
                        );
                        let mut got = c0.clone();
                        let run = run_with(kernel, compute, 2);
                        sgemm(m, n, k, (&a, k, 1), (&b, rsb, csb), &mut got, n, alpha, beta, run).unwrap();
                        let scale = |idx: usize| {
                            let (i, j) = (idx / n, idx % n);
                            alpha.abs() as f64 * abs_dot(k, |p| a[i * k + p], |p| b[p * rsb + j * csb])
                                + (beta as f64 * c0[idx] as f64).abs()
                                + 1e-6
                        };
                        assert_close(
                            &got,
                            &want,
                            scale,
                            budget,
                            &format!("{kernel:?} {compute:?} {m}x{n}x{k} b=({rsb},{csb}) β={beta}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    for kernel in available() {
        let (m, n, k) = (7, 19, 5);
        let (a, b) = (random(m * k, 4), random(k * n, 5));
        let mut c = vec![f32::NAN; m * n];
        sgemm(m, n, k, (&a, k, 1), (&b, n, 1), &mut c, n, 1.0, 0.0, run_with(kernel, Compute::F32, 1))
            .unwrap();
        assert!(c.iter().all(|v| v.is_finite()), "{kernel:?}");
    }
}

#[test]
fn nf4_forward_and_backward_match_the_oracle_on_dequantized_weights() {
    for kernel in available() {
        for compute in [Compute::F32, Compute::Bf16] {
            let budget = if compute == Compute::F32 { F32_BUDGET } else { BF16_BUDGET };
            for &(m, out, inp) in
                &[(1, 63, 10), (7, 17, 45), (33, 70, 130), (5, 64, 64), (20, 48, 200), (3, 130, 77)]
            {
                let w = quantize(&random(out * inp, 6), out, inp, true).unwrap();
                let mut dense = vec![0.0; out * inp];
                crate::nf4::weight::dequant_run_scalar(
                    &w,
                    0,
                    &mut dense,
                    crate::nf4::codebook::dynamic_map(),
                );
                let run = run_with(kernel, compute, 2);
                // Forward: Y = X · Wᵀ, also with accumulation into a non-zero Y.
                let x = random(m * inp, 7);
                for accumulate in [false, true] {
                    let y0 = random(m * out, 8);
                    let mut want = y0.clone();
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    gemm_naive(
                        m,
                        out,
                        inp,
                        |i, p| x[i * inp + p],
                        |p, j| dense[j * inp + p],
                        &mut want,
                        out,
                        1.0,
                        beta,
                    );
                    let mut got = y0.clone();
                    nf4_forward(&w, &x, m, &mut got, accumulate, None, run).unwrap();
                    let scale = |idx: usize| {
                        let (i, j) = (idx / out, idx % out);
                        abs_dot(inp, |p| x[i * inp + p], |p| dense[j * inp + p])
                            + beta as f64 * (y0[idx] as f64).abs()
                            + 1e-6
                    };
                    assert_close(
                        &got,
                        &want,
                        scale,
                        budget,
                        &format!("fwd {kernel:?} {compute:?} m{m} {out}x{inp} acc={accumulate}"),
                    );
                }
                // Backward: dX = dY · W.
                let dy = random(m * out, 9);
                let mut want = vec![0.0; m * inp];
                gemm_naive(
                    m,
                    inp,
                    out,
                    |i, p| dy[i * out + p],
                    |p, j| dense[p * inp + j],
                    &mut want,
                    inp,
                    1.0,
                    0.0,
                );
                let mut got = vec![f32::NAN; m * inp];
                nf4_backward(&w, &dy, m, &mut got, false, None, run).unwrap();
                let scale = |idx: usize| {
                    let (i, j) = (idx / inp, idx % inp);
                    abs_dot(out, |p| dy[i * out + p], |p| dense[p * inp + j]) + 1e-6
                };
                assert_close(
                    &got,
                    &want,
                    scale,
                    budget,
                    &format!("bwd {kernel:?} {compute:?} m{m} {out}x{inp}"),
                );
            }
        }
    }
}

#[test]
fn one_thread_and_many_threads_agree_bit_for_bit() {
    for kernel in available() {
        // m = 37 takes the blocked GEMM, m = 1 and 3 the few-row path.
        for m in [37, 1, 3] {
            let (out, inp) = (150, 333);
            let w = quantize(&random(out * inp, 10), out, inp, true).unwrap();
            let x = random(m * inp, 11);
            let mut results = Vec::new();
            for threads in [1, 2, 3] {
                let mut y = vec![0.0; m * out];
                nf4_forward(&w, &x, m, &mut y, false, None, run_with(kernel, Compute::F32, threads)).unwrap();
                results.push(y);
            }
            assert_eq!(results[0], results[1], "{kernel:?} m {m}: 1 vs 2 threads");
            assert_eq!(results[0], results[2], "{kernel:?} m {m}: 1 vs 3 threads");
        }
    }
}

#[test]
fn wrong_sizes_are_errors_not_crashes() {
    let w = quantize(&random(64 * 10, 12), 10, 64, true).unwrap();
    let run = Run::current(Compute::F32);
    let mut y = vec![0.0; 3 * 10];
    let err = nf4_forward(&w, &random(3 * 63, 1), 3, &mut y, false, None, run).unwrap_err();
    assert!(err.message.starts_with("x: expected 3×64"), "{}", err.message);
    let mut c = vec![0.0; 4];
    let err = sgemm(2, 3, 4, (&[0.0; 8], 4, 1), (&[0.0; 12], 3, 1), &mut c, 3, 1.0, 0.0, run).unwrap_err();
    assert!(err.message.starts_with("c:"), "{}", err.message);
}

#[test]
fn bf16_weights_forward_backward_and_gather_match_the_oracle() {
    for kernel in available() {
        for &(m, out, inp) in &[(1, 63, 10), (7, 17, 45), (33, 70, 130)] {
            let bits: Vec<u16> = random(out * inp, 20).iter().map(|v| (v.to_bits() >> 16) as u16).collect();
            let dense: Vec<f32> = bits.iter().map(|&b| pack::bf16_to_f32(b)).collect();
            let w = pack::Bf16Matrix { bits: &bits, rows: out, cols: inp };
            let run = run_with(kernel, Compute::F32, 2);
            let x = random(m * inp, 21);
            let mut want = vec![0.0; m * out];
            gemm_naive(
                m,
                out,
                inp,
                |i, p| x[i * inp + p],
                |p, j| dense[j * inp + p],
                &mut want,
                out,
                1.0,
                0.0,
            );
            let mut got = vec![0.0; m * out];
            bf16_forward(w, &x, m, &mut got, false, run).unwrap();
            let scale =
                |idx: usize| abs_dot(inp, |p| x[idx / out * inp + p], |p| dense[idx % out * inp + p]) + 1e-6;
            assert_close(&got, &want, scale, F32_BUDGET, &format!("bf16 fwd {kernel:?} {m}x{out}x{inp}"));
            let dy = random(m * out, 22);
            let mut want = vec![0.0; m * inp];
            gemm_naive(
                m,
                inp,
                out,
                |i, p| dy[i * out + p],
                |p, j| dense[p * inp + j],
                &mut want,
                inp,
                1.0,
                0.0,
            );
            let mut got = vec![0.0; m * inp];
            bf16_backward(w, &dy, m, &mut got, false, run).unwrap();
            let scale =
                |idx: usize| abs_dot(out, |p| dy[idx / inp * out + p], |p| dense[p * inp + idx % inp]) + 1e-6;
            assert_close(&got, &want, scale, F32_BUDGET, &format!("bf16 bwd {kernel:?} {m}x{out}x{inp}"));
        }
    }
    let bits: Vec<u16> = (0..12u16).map(|i| 0x3f80 + i).collect();
    let w = pack::Bf16Matrix { bits: &bits, rows: 4, cols: 3 };
    let mut out = vec![0.0; 6];
    bf16_gather_rows(w, &[2, 0], &mut out).unwrap();
    assert_eq!(out, [6u16, 7, 8, 0, 1, 2].map(|i| pack::bf16_to_f32(0x3f80 + i)));
    assert!(bf16_gather_rows(w, &[4, 0], &mut out)
        .unwrap_err()
        .message
        .contains("ids[0]: 4 is out of range"));
}

/// `pack_a`'s fast layouts (row-major, column-major, the unrolled 6-row panel, the transposed 8-row panel of
/// the SIMD paths) against element-by-element indexing, on ragged blocks that start inside the matrix and
/// leave partial panels, with depths that are not multiples of 8.
#[test]
fn pack_a_matches_plain_indexing_in_every_layout() {
    let (m, k) = (29, 37);
    let data = random(m * k * 2, 11);
    for (rs, cs) in [(k, 1), (1, m), (2 * k, 2)] {
        let a = pack::Strided { data: &data, rs, cs };
        for (kernel, mr) in available().into_iter().flat_map(|k| [4usize, 6, 8].map(|mr| (k, mr))) {
            for (i0, mc, p0, kc) in
                [(0usize, 29usize, 0, 37), (3, 13, 5, 17), (5, 6, 1, 1), (0, 1, 36, 1), (2, 16, 3, 32)]
            {
                let panels = mc.div_ceil(mr);
                let mut got = vec![f32::NAN; panels * mr * kc];
                pack::pack_a(kernel, &a, i0, mc, p0, kc, mr, &mut got);
                for (idx, &g) in got.iter().enumerate() {
                    let (panel, p, r) = (idx / (mr * kc), idx % (mr * kc) / mr, idx % mr);
                    let i = panel * mr + r;
                    let want = if i < mc { data[(i0 + i) * rs + (p0 + p) * cs] } else { 0.0 };
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{kernel:?} rs {rs} cs {cs} mr {mr} block {i0},{mc},{p0},{kc}"
                    );
                }
            }
        }
    }
}

#[test]
fn bf16_widening_matches_the_plain_loop_on_every_path() {
    // Every 16-bit pattern (NaNs, infinities, subnormals, both zeros), at lengths that are not multiples of 8
    // and at an odd offset.
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    for kernel in available() {
        for (start, len) in [(0, 0), (0, 7), (1, 8), (3, 29), (0, 65536), (5, 65531)] {
            let src = &bits[start..start + len];
            let mut got = vec![0.0f32; len];
            pack::widen_bf16(kernel, src, &mut got);
            for (i, (&g, &b)) in got.iter().zip(src).enumerate() {
                assert_eq!(g.to_bits(), (b as u32) << 16, "{kernel:?} {start}+{len} at {i}");
            }
        }
    }
}

#[test]
fn dense_panels_of_every_width_pack_whole_and_edge_columns() {
    // Row-major B with n covering full 16-wide panels, a ragged edge, and a single column: the panel-row
    // copies (fixed-width and plain) must give the same product as the oracle.
    for kernel in available() {
        for (m, n, k) in [(7, 16, 9), (6, 33, 20), (13, 48, 31), (3, 1, 5)] {
            let a = random(m * k, 11);
            let b = random(k * n, 12);
            let mut got = vec![0.0f32; m * n];
            sgemm(m, n, k, (&a, k, 1), (&b, n, 1), &mut got, n, 1.0, 0.0, run_with(kernel, Compute::F32, 2))
                .unwrap();
            let mut want = vec![0.0f32; m * n];
            gemm_naive(m, n, k, |i, p| a[i * k + p], |p, j| b[p * n + j], &mut want, n, 1.0, 0.0);
            for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let (i, j) = (idx / n, idx % n);
                let scale = abs_dot(k, |p| a[i * k + p], |p| b[p * n + j]);
                assert!(
                    (g - w).abs() as f64 <= F32_BUDGET * scale.max(1e-30),
                    "{kernel:?} {m}x{n}x{k} at {idx}"
                );
            }
        }
    }
}

/// The oracle of `C = beta·C0 + A·B + s·L·R` (A `m×k`, L `m×r`; B and R as element functions) and each
/// element's error scale.
#[allow(clippy::too_many_arguments)]
fn low_rank_oracle(
    (m, n, k, r): (usize, usize, usize, usize),
    a: &[f32],
    b: impl Fn(usize, usize) -> f32,
    left: &[f32],
    right: impl Fn(usize, usize) -> f32,
    s: f32,
    c0: &[f32],
    beta: f32,
) -> (Vec<f32>, Vec<f64>) {
    let mut want = c0.to_vec();
    gemm_naive(m, n, k, |i, p| a[i * k + p], &b, &mut want, n, 1.0, beta);
    gemm_naive(m, n, r, |i, p| left[i * r + p], &right, &mut want, n, s, 1.0);
    let scale = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            abs_dot(k, |p| a[i * k + p], |p| b(p, j))
                + s as f64 * abs_dot(r, |p| left[i * r + p], |p| right(p, j))
                + beta as f64 * (c0[idx] as f64).abs()
                + 1e-6
        })
        .collect();
    (want, scale)
}

#[test]
fn nf4_products_with_a_low_rank_term_match_the_oracle() {
    // Y (+)= X·Wᵀ + s·L·Rᵀ and dX (+)= dY·W + s·L·R, the term computed tile by tile after the last depth block
    // (and separately on the few-row path): edge tiles, ranks not multiples of anything, several depth blocks
    // (in = 600 > KC), both thread counts, accumulation.
    for kernel in available() {
        for threads in [1, 3] {
            for &(m, out, inp, rank) in &[(2, 40, 30, 3), (7, 17, 45, 1), (33, 70, 600, 16), (20, 48, 64, 5)]
            {
                let w = quantize(&random(out * inp, 21), out, inp, true).unwrap();
                let mut dense = vec![0.0; out * inp];
                crate::nf4::weight::dequant_run_scalar(
                    &w,
                    0,
                    &mut dense,
                    crate::nf4::codebook::dynamic_map(),
                );
                let run = run_with(kernel, Compute::F32, threads);
                let s = 0.75f32;
                for accumulate in [false, true] {
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    let what = format!("{kernel:?} t{threads} m{m} {out}x{inp} r{rank} acc={accumulate}");
                    // Forward: left [m, rank], right [out, rank] (read transposed).
                    let (x, left, right, y0) = (
                        random(m * inp, 22),
                        random(m * rank, 23),
                        random(out * rank, 24),
                        random(m * out, 25),
                    );
                    let b = |p: usize, j: usize| dense[j * inp + p];
                    let r = |p: usize, j: usize| right[j * rank + p];
                    let (want, scale) = low_rank_oracle((m, out, inp, rank), &x, b, &left, r, s, &y0, beta);
                    let mut got = y0.clone();
                    let low = LowRank { left: &left, right: &right, rank, scale: s };
                    nf4_forward(&w, &x, m, &mut got, accumulate, Some(low), run).unwrap();
                    assert_close(&got, &want, |i| scale[i], F32_BUDGET, &format!("fwd {what}"));

                    // Backward: left [m, rank], right [rank, in].
                    let (dy, left, right, dx0) = (
                        random(m * out, 26),
                        random(m * rank, 27),
                        random(rank * inp, 28),
                        random(m * inp, 29),
                    );
                    let b = |p: usize, j: usize| dense[p * inp + j];
                    let r = |p: usize, j: usize| right[p * inp + j];
                    let (want, scale) = low_rank_oracle((m, inp, out, rank), &dy, b, &left, r, s, &dx0, beta);
                    let mut got = dx0.clone();
                    let low = LowRank { left: &left, right: &right, rank, scale: s };
                    nf4_backward(&w, &dy, m, &mut got, accumulate, Some(low), run).unwrap();
                    assert_close(&got, &want, |i| scale[i], F32_BUDGET, &format!("bwd {what}"));
                }
            }
        }
    }
}

#[test]
fn a_low_rank_term_of_the_wrong_shape_is_refused_before_writing() {
    let w = quantize(&random(16 * 64, 1), 16, 64, true).unwrap();
    let (x, left, right) = (random(8 * 64, 2), random(8 * 4, 3), random(15 * 4, 4));
    let mut y = vec![7.0f32; 8 * 16];
    let low = LowRank { left: &left, right: &right, rank: 4, scale: 1.0 };
    let err = nf4_forward(&w, &x, 8, &mut y, false, Some(low), Run::current(Compute::F32)).unwrap_err();
    assert!(err.to_string().contains("low-rank right"), "{err}");
    assert!(y.iter().all(|&v| v == 7.0));
}

#[test]
fn several_blocks_in_every_loop_of_the_nest_match_the_oracle() {
    // Two or more blocks of rows (MC), depth (KC) and columns (NC) on one worker, none of them whole: packed
    // A kept across column blocks, the next block's prefetch and the edge tiles all take part.
    for kernel in available() {
        let bl = super::blocking::blocking(kernel);
        let (m, n, k) = (bl.mc + 5, 2 * bl.nc + 37, bl.kc + 45);
        let run = run_with(kernel, Compute::F32, 1);
        let a = random(m * k, 21);
        let b = random(k * n, 22);
        // A row-major (X) or column-major (dYᵀ); B transposed (Wᵀ) or row-major (W).
        for (rsa, csa) in [(k, 1), (1, m)] {
            for (rsb, csb) in [(1, k), (n, 1)] {
                for beta in [0.0, 1.0] {
                    let c0 = random(m * n, 23);
                    let mut want = c0.clone();
                    let (at, bt) = (|i, p| a[i * rsa + p * csa], |p, j| b[p * rsb + j * csb]);
                    gemm_naive(m, n, k, at, bt, &mut want, n, 1.0, beta);
                    let mut got = c0.clone();
                    sgemm(m, n, k, (&a, rsa, csa), (&b, rsb, csb), &mut got, n, 1.0, beta, run).unwrap();
                    let scale = |idx: usize| {
                        abs_dot(k, |p| at(idx / n, p), |p| bt(p, idx % n))
                            + (beta * c0[idx]).abs() as f64
                            + 1e-6
                    };
                    let what = format!("{kernel:?} {m}x{n}x{k} a=({rsa},{csa}) b=({rsb},{csb}) β={beta}");
                    assert_close(&got, &want, scale, F32_BUDGET, &what);
                }
            }
        }
        // NF4 weight [n, k]: forward X·Wᵀ (B transposed) and backward dY·W with dY [m, n] (B = W row-major).
        let w = quantize(&b, n, k, true).unwrap();
        let mut dense = vec![0.0; n * k];
        crate::nf4::weight::dequant_run_scalar(&w, 0, &mut dense, crate::nf4::codebook::dynamic_map());
        let mut want = vec![0.0; m * n];
        gemm_naive(m, n, k, |i, p| a[i * k + p], |p, j| dense[j * k + p], &mut want, n, 1.0, 0.0);
        let mut got = vec![f32::NAN; m * n];
        nf4_forward(&w, &a, m, &mut got, false, None, run).unwrap();
        let scale = |idx: usize| abs_dot(k, |p| a[idx / n * k + p], |p| dense[idx % n * k + p]) + 1e-6;
        assert_close(&got, &want, scale, F32_BUDGET, &format!("nf4 fwd {kernel:?} {m}x{n}x{k}"));
        let dy = random(m * n, 24);
        let mut want = vec![0.0; m * k];
        gemm_naive(m, k, n, |i, p| dy[i * n + p], |p, j| dense[p * k + j], &mut want, k, 1.0, 0.0);
        let mut got = vec![f32::NAN; m * k];
        nf4_backward(&w, &dy, m, &mut got, false, None, run).unwrap();
        let scale = |idx: usize| abs_dot(n, |p| dy[idx / k * n + p], |p| dense[p * k + idx % k]) + 1e-6;
        assert_close(&got, &want, scale, F32_BUDGET, &format!("nf4 bwd {kernel:?} {m}x{k}x{n}"));
    }
}
