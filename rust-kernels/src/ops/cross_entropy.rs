//! Cross-entropy over the vocabulary, per row of logits [T, V] with integer targets [T] (−100 = ignored,
//! as in PyTorch). `loss_and_grad` returns the loss summed over the counted rows and, in the same pass,
//! overwrites the logits with their gradient (softmax − onehot) * grad_scale; `logprobs` only reads.
//!
//! Each row subtracts its max before exponentiating, and the row sum of exponentials is kept in f64.

use super::exec::{on_path, Ctx};
use super::math::{exp, max};
use crate::error::{ensure, KResult};
use rayon::prelude::*;

/// Target value of rows that take no part in the loss.
pub const IGNORE_INDEX: i32 = -100;

/// Every target must be a vocabulary index or IGNORE_INDEX; checked before anything is written.
fn check_targets(targets: &[i32], v: usize) -> KResult<()> {
    for (t, &target) in targets.iter().enumerate() {
        ensure(target == IGNORE_INDEX || (target >= 0 && (target as usize) < v), || {
            format!(
                "targets: targets[{t}] = {target} is neither in [0, {v}) nor the ignore index {IGNORE_INDEX}"
            )
        })?;
    }
    Ok(())
}

/// Loss summed over rows whose target is not ignored, and their count. logits [T, V] become dlogits =
/// (softmax − onehot) * grad_scale (zeros on ignored rows). grad_scale is usually 1 / (counted rows of the
/// whole batch), which makes the gradient that of the mean loss.
pub fn loss_and_grad(
    ctx: &Ctx,
    logits: &mut [f32],
    v: usize,
    targets: &[i32],
    grad_scale: f32,
) -> KResult<(f64, u32)> {
    check_targets(targets, v)?;
    if v == 0 {
        return Ok((0.0, 0));
    }
    let path = ctx.path;
    let losses: Vec<f64> = ctx.pool.install(|| {
        logits
            .par_chunks_mut(v)
            .zip(targets.par_iter())
            .map(|(row, &target)| {
                if target == IGNORE_INDEX {
                    row.fill(0.0);
                    0.0
                } else {
                    loss_grad_row(path, row, target as usize, grad_scale)
                }
            })
            .collect()
    });
    let count = targets.iter().filter(|&&t| t != IGNORE_INDEX).count() as u32;
    Ok((losses.iter().sum(), count))
}

/// log softmax(logits)[target] per row into out [T] (0 on ignored rows). For evaluation and scoring.
pub fn logprobs(ctx: &Ctx, logits: &[f32], v: usize, targets: &[i32], out: &mut [f32]) -> KResult<()> {
    check_targets(targets, v)?;
    if v == 0 {
        return Ok(());
    }
    let path = ctx.path;
    ctx.pool.install(|| {
        out.par_iter_mut().zip(logits.par_chunks(v)).zip(targets.par_iter()).for_each(
            |((out, row), &target)| {
                *out = if target == IGNORE_INDEX {
                    0.0
                } else {
                    let (m, sum) = max_and_sum_exp(path, row);
                    (row[target as usize] as f64 - m as f64 - sum.ln()) as f32
                };
            },
        );
    });
    Ok(())
}

on_path!(fn loss_grad_row(row: &mut [f32], target: usize, grad_scale: f32) -> f64 = loss_grad_row_body);
on_path!(fn max_and_sum_exp(row: &[f32]) -> (f32, f64) = max_and_sum_exp_body);

/// Row loss logsumexp(x) − x[target]; the row becomes (softmax − onehot) * grad_scale.
#[inline(always)]
fn loss_grad_row_body(row: &mut [f32], target: usize, grad_scale: f32) -> f64 {
    let picked = row[target];
    let m = max(row);
    let mut acc = [0.0f64; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for l in 0..8 {
            let e = exp(c[l] - m);
            c[l] = e;
            acc[l] += e as f64;
        }
    }
    for (l, x) in chunks.into_remainder().iter_mut().enumerate() {
        let e = exp(*x - m);
        *x = e;
        acc[l] += e as f64;
    }
    let sum = lane_total(acc);
    let k = (grad_scale as f64 / sum) as f32;
    for x in row.iter_mut() {
        *x *= k;
    }
    row[target] -= grad_scale;
    m as f64 + sum.ln() - picked as f64
}

/// The row max and Σ exp(x − max), without writing.
#[inline(always)]
fn max_and_sum_exp_body(row: &[f32]) -> (f32, f64) {
    let m = max(row);
    let mut acc = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += exp(c[l] - m) as f64;
        }
    }
    for (l, x) in chunks.remainder().iter().enumerate() {
        acc[l] += exp(*x - m) as f64;
    }
    (m, lane_total(acc))
}

#[inline(always)]
fn lane_total(acc: [f64; 8]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::{data, max_rel_err, to64};

    fn logsumexp(row: &[f64]) -> f64 {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    }

    fn targets_for(t: usize, v: usize) -> Vec<i32> {
        (0..t).map(|i| if i % 3 == 1 { IGNORE_INDEX } else { ((i * 7 + 3) % v) as i32 }).collect()
    }

    #[test]
    fn loss_and_grad_match_f64_on_every_path() {
        for path in Path::available() {
            let ctx = Ctx::with_threads(1, path);
            for (t, v) in [(1, 1), (2, 5), (7, 33), (4, 1000)] {
                // Scale to ±20 so the max subtraction matters.
                let logits: Vec<f32> = data(t * v, 1).iter().map(|x| x * 20.0).collect();
                let targets = targets_for(t, v);
                let scale = 0.37f32;
                let mut grad = logits.clone();
                let (sum, count) = loss_and_grad(&ctx, &mut grad, v, &targets, scale).unwrap();
                let (mut want_sum, mut want_count) = (0.0, 0);
                let mut want_grad = vec![0.0f64; t * v];
                for r in 0..t {
                    if targets[r] == IGNORE_INDEX {
                        continue;
                    }
                    let row = to64(&logits[r * v..(r + 1) * v]);
                    let lse = logsumexp(&row);
                    want_sum += lse - row[targets[r] as usize];
                    want_count += 1;
                    for j in 0..v {
                        let onehot = if j == targets[r] as usize { 1.0 } else { 0.0 };
                        want_grad[r * v + j] = ((row[j] - lse).exp() - onehot) * scale as f64;
                    }
                }
                assert_eq!(count, want_count);
                assert!(
                    (sum - want_sum).abs() < 1e-5 * (1.0 + want_sum.abs()),
                    "{path:?} {t}x{v}: {sum} vs {want_sum}"
                );
                assert!(max_rel_err(&grad, &want_grad) < 1e-6, "{path:?} {t}x{v}");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (t, v) = (3, 6);
        let logits = data(t * v, 2);
        let targets = vec![2, IGNORE_INDEX, 5];
        let loss = |x: &[f64]| -> f64 {
            (0..t)
                .filter(|&r| targets[r] != IGNORE_INDEX)
                .map(|r| logsumexp(&x[r * v..(r + 1) * v]) - x[r * v + targets[r] as usize])
                .sum::<f64>()
                / 2.0
        };
        let mut grad = logits.clone();
        loss_and_grad(&ctx, &mut grad, v, &targets, 0.5).unwrap();
        let x = to64(&logits);
        for i in 0..t * v {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += 1e-6;
            xm[i] -= 1e-6;
            let num = (loss(&xp) - loss(&xm)) / 2e-6;
            assert!((grad[i] as f64 - num).abs() < 1e-6, "d[{i}]: {} vs {num}", grad[i]);
        }
    }

    #[test]
    fn logprobs_match_f64() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (t, v) = (5, 77);
        let logits: Vec<f32> = data(t * v, 3).iter().map(|x| x * 30.0).collect();
        let targets = targets_for(t, v);
        let mut out = vec![9.0; t];
        logprobs(&ctx, &logits, v, &targets, &mut out).unwrap();
        for r in 0..t {
            let want = if targets[r] == IGNORE_INDEX {
                0.0
            } else {
                let row = to64(&logits[r * v..(r + 1) * v]);
                row[targets[r] as usize] - logsumexp(&row)
            };
            assert!(
                (out[r] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                "row {r}: {} vs {want}",
                out[r]
            );
        }
    }

    #[test]
    fn bad_target_fails_before_writing() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let mut logits = vec![1.0; 8];
        let err = loss_and_grad(&ctx, &mut logits, 4, &[0, 4], 1.0).unwrap_err();
        assert!(err.message.contains("targets[1] = 4"), "{}", err.message);
        assert_eq!(logits, vec![1.0; 8]);
        assert!(loss_and_grad(&ctx, &mut logits, 4, &[-1, 0], 1.0).is_err());
    }

    #[test]
    fn paths_and_thread_counts_agree_bit_for_bit() {
        let (t, v) = (37, 513);
        let logits: Vec<f32> = data(t * v, 4).iter().map(|x| x * 10.0).collect();
        let targets = targets_for(t, v);
        let run = |ctx: &Ctx| {
            let mut grad = logits.clone();
            let (sum, count) = loss_and_grad(ctx, &mut grad, v, &targets, 1.0 / 30.0).unwrap();
            let mut lp = vec![0.0; t];
            logprobs(ctx, &logits, v, &targets, &mut lp).unwrap();
            (sum.to_bits(), count, grad, lp)
        };
        let reference = run(&Ctx::with_threads(1, Path::Plain));
        for path in Path::available() {
            assert!(run(&Ctx::with_threads(2, path)) == reference, "{path:?}");
        }
    }
}
