//! The weight-natural nest on every path and every source of B, against the f64 oracle: several blocks in
//! each of its loops (rows, outputs, depth), none whole, a low-rank tail, both splits of the work, and the
//! same bits on 1 and 2 workers.

use super::driver::Tail;
use super::naive::{abs_dot, gemm_naive};
use super::pack::Strided;
use super::wxt::{run, Problem, Source};
use crate::dispatch::available;
use crate::nf4::quantize::quantize;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(7);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn every_source_matches_the_oracle_with_several_blocks_a_tail_and_any_worker_count() {
    const RANK: usize = 5;
    // Rows past one packed block (256), outputs past one scratch block (256), depth past one block (256)
    // and not a multiple of 16 or of the NF4 block; then a weight too narrow to share along its outputs.
    for &(m, n, k) in &[(300, 549, 301), (290, 9, 70)] {
        let a = random(m * k, 1);
        let w = random(n * k, 2); // W [n, k]
        let left = random(m * RANK, 3);
        let right = random(n * RANK, 4); // R [n, rank]: the tail is left · Rᵀ
        let q = quantize(&w, n, k, true).unwrap();
        let mut dense = vec![0.0; n * k];
        crate::nf4::weight::dequant_run_scalar(&q, 0, &mut dense, crate::nf4::codebook::dynamic_map());
        let wt = Strided { data: &w, rs: 1, cs: k };
        // The backward's layout: B row-major [k, n] (W in `dY · W`), the same values transposed.
        let mut w_rows = vec![0.0; k * n];
        for j in 0..n {
            for p in 0..k {
                w_rows[p * n + j] = w[j * k + p];
            }
        }
        let wr = Strided { data: &w_rows, rs: n, cs: 1 };
        let q_rows = quantize(&w_rows, k, n, true).unwrap();
        let mut dense_rows = vec![0.0; k * n];
        crate::nf4::weight::dequant_run_scalar(
            &q_rows,
            0,
            &mut dense_rows,
            crate::nf4::codebook::dynamic_map(),
        );
        let sources: [(&str, Source, &dyn Fn(usize, usize) -> f32); 4] = [
            ("in place Wᵀ", Source::InPlace(wt), &|p, j| w[j * k + p]),
            ("panels of W", Source::Panels(&wr), &|p, j| w_rows[p * n + j]),
            ("NF4 rows", Source::WeightRows(&q), &|p, j| dense[j * k + p]),
            ("NF4 panels", Source::WeightPanels(&q_rows), &|p, j| dense_rows[p * n + j]),
        ];
        for kernel in available() {
            for (name, source, b) in &sources {
                for (beta, with_tail) in [(0.0f32, false), (1.0, true)] {
                    let c0 = random(m * n, 5);
                    let mut want = c0.clone();
                    gemm_naive(m, n, k, |i, p| a[i * k + p], |p, j| b(p, j), &mut want, n, 1.0, beta);
                    let tail = with_tail.then_some(Tail {
                        k: RANK,
                        a: Strided { data: &left, rs: RANK, cs: 1 },
                        b: Strided { data: &right, rs: 1, cs: RANK },
                        alpha: 0.75,
                    });
                    if with_tail {
                        for i in 0..m {
                            for j in 0..n {
                                let t: f64 = (0..RANK)
                                    .map(|r| left[i * RANK + r] as f64 * right[j * RANK + r] as f64)
                                    .sum();
                                want[i * n + j] += (0.75 * t) as f32;
                            }
                        }
                    }
                    let p = Problem {
                        m,
                        n,
                        k,
                        a: Strided { data: &a, rs: k, cs: 1 },
                        b: *source,
                        alpha: 1.0,
                        beta,
                        ldc: n,
                        tail,
                    };
                    let mut outputs = Vec::new();
                    for threads in [1, 2] {
                        let mut got = c0.clone();
                        unsafe { run(&p, got.as_mut_ptr(), kernel, threads) };
                        outputs.push(got);
                    }
                    let what = format!("{kernel:?} {name} {m}x{n}x{k} β={beta} tail={with_tail}");
                    assert!(
                        outputs[0].iter().zip(&outputs[1]).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{what}: 1 and 2 workers differ"
                    );
                    let mut worst = 0.0f64;
                    for (idx, (&g, &w)) in outputs[0].iter().zip(&want).enumerate() {
                        let (i, j) = (idx / n, idx % n);
                        let scale = abs_dot(k, |p| a[i * k + p], |p| b(p, j))
                            + (beta * c0[idx]).abs() as f64
                            + if with_tail { RANK as f64 } else { 0.0 }
                            + 1e-6;
                        worst = worst.max((g as f64 - w as f64).abs() / scale);
                    }
                    assert!(worst <= 1e-5, "{what}: worst relative error {worst:.3e}");
                }
            }
        }
    }
}

#[test]
fn products_with_a_weight_big_enough_for_this_nest_match_the_oracle_through_the_entry_points() {
    use super::{nf4_backward, nf4_forward, sgemm, Compute, LowRank, Run};
    // A weight of 2^22 + elements (`wxt::pays`), ragged: out 2051, in 2049 (not a multiple of the NF4 block).
    let (m, out, inp, rank) = (19, 2051, 2049, 3);
    assert!(super::wxt::pays(out, inp));
    let w = random(out * inp, 11);
    let x = random(m * inp, 12);
    let dy = random(m * out, 13);
    let q = quantize(&w, out, inp, true).unwrap();
    let mut dense = vec![0.0; out * inp];
    crate::nf4::weight::dequant_run_scalar(&q, 0, &mut dense, crate::nf4::codebook::dynamic_map());
    let (left_f, right_f) = (random(m * rank, 14), random(out * rank, 15));
    let (left_b, right_b) = (random(m * rank, 16), random(rank * inp, 17));
    let close = |got: &[f32], want: &[f32], scale: &dyn Fn(usize) -> f64, what: &str| {
        let worst = got
            .iter()
            .zip(want)
            .enumerate()
            .map(|(i, (&g, &w))| (g as f64 - w as f64).abs() / scale(i))
            .fold(0.0, f64::max);
        assert!(worst <= 1e-5, "{what}: worst relative error {worst:.3e}");
    };
    for kernel in available() {
        let run = Run { kernel, compute: Compute::F32, unit: crate::dispatch::Bf16Unit::Fma, threads: 2 };
        // Dense forward X · Wᵀ and backward dY · W.
        let mut want = vec![0.0; m * out];
        gemm_naive(m, out, inp, |i, p| x[i * inp + p], |p, j| w[j * inp + p], &mut want, out, 1.0, 0.0);
        let mut got = vec![f32::NAN; m * out];
        sgemm(m, out, inp, (&x, inp, 1), (&w, 1, inp), &mut got, out, 1.0, 0.0, run).unwrap();
        let scale = |i: usize| abs_dot(inp, |p| x[i / out * inp + p], |p| w[i % out * inp + p]) + 1e-6;
        close(&got, &want, &scale, &format!("{kernel:?} dense fwd"));
        let mut want = vec![0.0; m * inp];
        gemm_naive(m, inp, out, |i, p| dy[i * out + p], |p, j| w[p * inp + j], &mut want, inp, 1.0, 0.0);
        let mut got = vec![f32::NAN; m * inp];
        sgemm(m, inp, out, (&dy, out, 1), (&w, inp, 1), &mut got, inp, 1.0, 0.0, run).unwrap();
        let scale = |i: usize| abs_dot(out, |p| dy[i / inp * out + p], |p| w[p * inp + i % inp]) + 1e-6;
        close(&got, &want, &scale, &format!("{kernel:?} dense bwd"));
        // NF4 forward and backward with a low-rank term, accumulated into a non-zero output.
        let y0 = random(m * out, 18);
        let mut want = y0.clone();
        gemm_naive(m, out, inp, |i, p| x[i * inp + p], |p, j| dense[j * inp + p], &mut want, out, 1.0, 1.0);
        for i in 0..m {
            for j in 0..out {
                let t: f64 =
                    (0..rank).map(|r| left_f[i * rank + r] as f64 * right_f[j * rank + r] as f64).sum();
                want[i * out + j] += (0.5 * t) as f32;
            }
        }
        let mut got = y0.clone();
        let low = LowRank { left: &left_f, right: &right_f, rank, scale: 0.5 };
        nf4_forward(&q, &x, m, &mut got, true, Some(low), run).unwrap();
        let scale = |i: usize| {
            abs_dot(inp, |p| x[i / out * inp + p], |p| dense[i % out * inp + p]) + y0[i].abs() as f64 + 1.0
        };
        close(&got, &want, &scale, &format!("{kernel:?} nf4 fwd + low rank"));
        let mut want = vec![0.0; m * inp];
        gemm_naive(m, inp, out, |i, p| dy[i * out + p], |p, j| dense[p * inp + j], &mut want, inp, 1.0, 0.0);
        for i in 0..m {
            for j in 0..inp {
                let t: f64 =
                    (0..rank).map(|r| left_b[i * rank + r] as f64 * right_b[r * inp + j] as f64).sum();
                want[i * inp + j] += (0.5 * t) as f32;
            }
        }
        let mut got = vec![f32::NAN; m * inp];
        let low = LowRank { left: &left_b, right: &right_b, rank, scale: 0.5 };
        nf4_backward(&q, &dy, m, &mut got, false, Some(low), run).unwrap();
        let scale = |i: usize| abs_dot(out, |p| dy[i / inp * out + p], |p| dense[p * inp + i % inp]) + 1.0;
        close(&got, &want, &scale, &format!("{kernel:?} nf4 bwd + low rank"));
    }
}
