//! RMSNorm as in Llama: per row of x [T, D], y = w * (x * rstd) with rstd = 1 / sqrt(mean(x²) + eps).
//! The forward pass also returns rstd [T], which is all the backward pass needs besides x and w.
//!
//! Rows are split into fixed blocks of `ROWS` for the thread pool, so results never depend on the number
//! of threads (dw sums the blocks' partials in block order).

use super::exec::{on_path, Ctx};
use super::math::{axpy, sum_squares_f64};
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS: usize = 16;

/// y = w * (x * rstd) and rstd per row. x, y: [T, D]; w: [D]; rstd: [T].
pub fn forward(ctx: &Ctx, x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let d = w.len();
    if d == 0 || rstd.is_empty() {
        return;
    }
    let path = ctx.path;
    ctx.pool.install(|| {
        y.par_chunks_mut(ROWS * d)
            .zip(rstd.par_chunks_mut(ROWS))
            .zip(x.par_chunks(ROWS * d))
            .for_each(|((y, rstd), x)| forward_rows(path, x, w, eps, y, rstd));
    });
}

on_path!(fn forward_rows(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) = forward_rows_body);

#[inline(always)]
fn forward_rows_body(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let d = w.len();
    for ((y, r), x) in y.chunks_exact_mut(d).zip(rstd.iter_mut()).zip(x.chunks_exact(d)) {
        *r = row_rstd(x, eps);
        for ((yi, xi), wi) in y.iter_mut().zip(x).zip(w) {
            *yi = wi * (xi * *r);
        }
    }
}

/// 1 / sqrt(mean(x²) + eps), the mean taken in f64.
#[inline(always)]
fn row_rstd(x: &[f32], eps: f32) -> f32 {
    let var = sum_squares_f64(x) / x.len() as f64;
    (1.0 / (var + eps as f64).sqrt()) as f32
}

/// Gradients of RMSNorm. dx = rstd * (w * dy) - x * rstd³ * Σ(w * dy * x) / D, written to dx or added to it
/// (`accumulate`); dw += Σ_rows dy * x * rstd unless dw is empty (frozen weight).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &Ctx,
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dw: &mut [f32],
) {
    let d = w.len();
    if d == 0 || rstd.is_empty() {
        return;
    }
    let want_dw = !dw.is_empty();
    let path = ctx.path;
    let partials: Vec<Vec<f32>> = ctx.pool.install(|| {
        dx.par_chunks_mut(ROWS * d)
            .zip(dy.par_chunks(ROWS * d))
            .zip(x.par_chunks(ROWS * d))
            .zip(rstd.par_chunks(ROWS))
            .map(|(((dx, dy), x), rstd)| {
                let mut dw_part = if want_dw { vec![0.0f32; d] } else { Vec::new() };
                backward_rows(path, dy, x, w, rstd, dx, accumulate, &mut dw_part);
                dw_part
            })
            .collect()
    });
    if want_dw {
        for part in &partials {
            add_part(path, dw, part);
        }
    }
}

on_path!(fn backward_rows(dy: &[f32], x: &[f32], w: &[f32], rstd: &[f32], dx: &mut [f32], accumulate: bool, dw_part: &mut [f32]) = backward_rows_body);
on_path!(fn add_part(dw: &mut [f32], part: &[f32]) = add_part_body);

/// Rows of a block: dx, and their dw terms summed into `dw_part` (empty: frozen weight).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_rows_body(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dw_part: &mut [f32],
) {
    let d = w.len();
    for (((dx, dy), x), &r) in dx.chunks_exact_mut(d).zip(dy.chunks_exact(d)).zip(x.chunks_exact(d)).zip(rstd)
    {
        backward_row(dy, x, w, r, dx, accumulate);
        for ((p, dyi), xi) in dw_part.iter_mut().zip(dy).zip(x) {
            *p += dyi * (xi * r);
        }
    }
}

#[inline(always)]
fn add_part_body(dw: &mut [f32], part: &[f32]) {
    axpy(dw, 1.0, part);
}

#[inline(always)]
fn backward_row(dy: &[f32], x: &[f32], w: &[f32], r: f32, dx: &mut [f32], accumulate: bool) {
    let mut acc = [0.0f64; 4];
    for (i, ((dyi, xi), wi)) in dy.iter().zip(x).zip(w).enumerate() {
        acc[i % 4] += (wi * dyi) as f64 * *xi as f64;
    }
    let dot = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    let r64 = r as f64;
    let c = (r64 * r64 * r64 * dot / x.len() as f64) as f32;
    for (((dxi, dyi), xi), wi) in dx.iter_mut().zip(dy).zip(x).zip(w) {
        let g = r * (wi * dyi) - xi * c;
        *dxi = if accumulate { *dxi + g } else { g };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::{data, to64};

    fn forward_f64(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
        let d = w.len();
        let mut y = vec![0.0; x.len()];
        for (yr, xr) in y.chunks_mut(d).zip(x.chunks(d)) {
            let ms = xr.iter().map(|v| v * v).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + eps).sqrt();
            for i in 0..d {
                yr[i] = w[i] * xr[i] * r;
            }
        }
        y
    }

    /// L = Σ y * g for a fixed g, so dL/dy = g.
    fn loss_f64(x: &[f64], w: &[f64], eps: f64, g: &[f64]) -> f64 {
        forward_f64(x, w, eps).iter().zip(g).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn forward_matches_f64() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        for (t, d) in [(1, 1), (3, 5), (17, 33), (40, 8)] {
            let (x, w) = (data(t * d, 1), data(d, 2));
            let (mut y, mut rstd) = (vec![0.0; t * d], vec![0.0; t]);
            forward(&ctx, &x, &w, 1e-5, &mut y, &mut rstd);
            let want = forward_f64(&to64(&x), &to64(&w), 1e-5);
            for (a, b) in y.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()), "T={t} D={d}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let eps = 1e-5;
        for (t, d) in [(1, 3), (3, 7), (19, 5)] {
            let (x, w, g) = (data(t * d, 3), data(d, 4), data(t * d, 5));
            let (mut y, mut rstd) = (vec![0.0; t * d], vec![0.0; t]);
            forward(&ctx, &x, &w, eps, &mut y, &mut rstd);
            let mut dx = vec![0.5; t * d];
            let mut dw = vec![0.25; d];
            backward(&ctx, &g, &x, &w, &rstd, &mut dx, true, &mut dw);
            let (x64, w64, g64) = (to64(&x), to64(&w), to64(&g));
            let h = 1e-6;
            for i in 0..t * d {
                let (mut xp, mut xm) = (x64.clone(), x64.clone());
                xp[i] += h;
                xm[i] -= h;
                let num = (loss_f64(&xp, &w64, eps as f64, &g64) - loss_f64(&xm, &w64, eps as f64, &g64))
                    / (2.0 * h);
                assert!(
                    (dx[i] as f64 - 0.5 - num).abs() < 1e-4 * (1.0 + num.abs()),
                    "dx[{i}] {} vs {num}",
                    dx[i]
                );
            }
            for i in 0..d {
                let (mut wp, mut wm) = (w64.clone(), w64.clone());
                wp[i] += h;
                wm[i] -= h;
                let num = (loss_f64(&x64, &wp, eps as f64, &g64) - loss_f64(&x64, &wm, eps as f64, &g64))
                    / (2.0 * h);
                assert!(
                    (dw[i] as f64 - 0.25 - num).abs() < 1e-4 * (1.0 + num.abs()),
                    "dw[{i}] {} vs {num}",
                    dw[i]
                );
            }
        }
    }

    #[test]
    fn overwrite_mode_and_frozen_weight() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (t, d) = (5, 6);
        let (x, w, g) = (data(t * d, 6), data(d, 7), data(t * d, 8));
        let (mut y, mut rstd) = (vec![0.0; t * d], vec![0.0; t]);
        forward(&ctx, &x, &w, 1e-6, &mut y, &mut rstd);
        let mut acc = vec![0.0; t * d];
        backward(&ctx, &g, &x, &w, &rstd, &mut acc, true, &mut []);
        let mut over = vec![123.0; t * d];
        backward(&ctx, &g, &x, &w, &rstd, &mut over, false, &mut []);
        assert_eq!(acc, over);
    }

    #[test]
    fn one_thread_equals_two() {
        let (t, d) = (70, 24);
        let (x, w, g) = (data(t * d, 9), data(d, 10), data(t * d, 11));
        let run = |ctx: &Ctx| {
            let (mut y, mut rstd) = (vec![0.0; t * d], vec![0.0; t]);
            forward(ctx, &x, &w, 1e-5, &mut y, &mut rstd);
            let (mut dx, mut dw) = (vec![0.0; t * d], vec![0.0; d]);
            backward(ctx, &g, &x, &w, &rstd, &mut dx, false, &mut dw);
            (y, rstd, dx, dw)
        };
        assert_eq!(run(&Ctx::with_threads(1, Path::Plain)), run(&Ctx::with_threads(2, Path::Plain)));
    }

    #[test]
    fn every_path_gives_the_plain_bits() {
        // Widths that are not multiples of 8 or 16, row counts past a block, frozen and trained weights.
        for (t, d) in [(1, 1), (3, 7), (ROWS + 5, 33), (40, 576)] {
            let (x, w, g) = (data(t * d, 12), data(d, 13), data(t * d, 14));
            for train_w in [false, true] {
                let run = |path| {
                    let ctx = Ctx::with_threads(2, path);
                    let (mut y, mut rstd) = (vec![0.0; t * d], vec![0.0; t]);
                    forward(&ctx, &x, &w, 1e-5, &mut y, &mut rstd);
                    let mut dx = data(t * d, 15);
                    let mut dw = if train_w { data(d, 16) } else { Vec::new() };
                    backward(&ctx, &g, &x, &w, &rstd, &mut dx, true, &mut dw);
                    (y, rstd, dx, dw)
                };
                let reference = run(Path::Plain);
                for path in Path::available() {
                    assert_eq!(run(path), reference, "{path:?} T={t} D={d} dw={train_w}");
                }
            }
        }
    }
}
