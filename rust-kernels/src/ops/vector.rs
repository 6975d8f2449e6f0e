//! Flat-vector helpers for the training step: y += a·x (gradient accumulation, residual adds), x *= c
//! (gradient clipping) and Σ x² in f64 (the global gradient norm).

use super::exec::{on_path, Ctx};
use super::math::{axpy, scale as math_scale, sum_squares_f64};
use rayon::prelude::*;

/// Elements per parallel task (also the granularity of the f64 partial sums, so it fixes their order).
const CHUNK: usize = 16384;

/// y += a * x.
pub fn add_scaled(ctx: &Ctx, y: &mut [f32], a: f32, x: &[f32]) {
    let path = ctx.path;
    // One chunk (a generation step's rows) runs here: the hand-off to the pool costs more than the work, and
    // the chunks, so the bits, are the same either way.
    if y.len() <= CHUNK {
        return axpy_chunk(path, y, a, x);
    }
    ctx.pool.install(|| {
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| axpy_chunk(path, y, a, x));
    });
}

/// x *= c.
pub fn scale(ctx: &Ctx, x: &mut [f32], c: f32) {
    let path = ctx.path;
    if x.len() <= CHUNK {
        return scale_chunk(path, x, c);
    }
    ctx.pool.install(|| x.par_chunks_mut(CHUNK).for_each(|x| scale_chunk(path, x, c)));
}

/// Σ x² in f64, summed chunk by chunk in a fixed order.
pub fn sum_squares(ctx: &Ctx, x: &[f32]) -> f64 {
    let path = ctx.path;
    let partials: Vec<f64> =
        ctx.pool.install(|| x.par_chunks(CHUNK).map(|x| sum_squares_chunk(path, x)).collect());
    partials.iter().sum()
}

on_path!(fn axpy_chunk(y: &mut [f32], a: f32, x: &[f32]) = axpy);
on_path!(fn scale_chunk(x: &mut [f32], c: f32) = math_scale);
on_path!(fn sum_squares_chunk(x: &[f32]) -> f64 = sum_squares_f64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::data;

    #[test]
    fn helpers_match_plain_loops() {
        let ctx = Ctx::with_threads(2, Path::Plain);
        for n in [0usize, 1, 5, CHUNK + 1, 3 * CHUNK] {
            let (x, y0) = (data(n, 1), data(n, 2));
            let mut y = y0.clone();
            add_scaled(&ctx, &mut y, -0.5, &x);
            assert!(y.iter().zip(&y0).zip(&x).all(|((y, y0), x)| *y == y0 + -0.5 * x));
            scale(&ctx, &mut y, 3.0);
            assert!(y.iter().zip(&y0).zip(&x).all(|((y, y0), x)| *y == (y0 + -0.5 * x) * 3.0));
            let want: f64 = x.iter().map(|v| *v as f64 * *v as f64).sum();
            assert!((sum_squares(&ctx, &x) - want).abs() <= 1e-12 * (1.0 + want));
        }
    }

    #[test]
    fn every_path_gives_the_plain_bits() {
        for n in [0usize, 1, 7, 33, CHUNK + 5] {
            let (x, y0) = (data(n, 4), data(n, 5));
            let run = |path| {
                let ctx = Ctx::with_threads(2, path);
                let mut y = y0.clone();
                add_scaled(&ctx, &mut y, 0.37, &x);
                scale(&ctx, &mut y, -1.5);
                (y, sum_squares(&ctx, &x).to_bits())
            };
            let reference = run(Path::Plain);
            for path in Path::available() {
                assert_eq!(run(path), reference, "{path:?} n = {n}");
            }
        }
    }

    #[test]
    fn sum_squares_is_independent_of_threads() {
        let x = data(5 * CHUNK + 77, 3);
        let one = sum_squares(&Ctx::with_threads(1, Path::Plain), &x);
        let two = sum_squares(&Ctx::with_threads(2, Path::Plain), &x);
        assert_eq!(one.to_bits(), two.to_bits());
    }
}
