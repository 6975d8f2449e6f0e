//! GeGLU, the gate of Gemma's MLP: h = gelu(g) * u elementwise with the tanh form of GELU
//! (`gelu_pytorch_tanh`): gelu(x) = x/2 · (1 + tanh(y)), y = √(2/π) (x + 0.044715 x³).
//! Backward: du = dh * gelu(g), dg = dh * u * gelu'(g) with
//! gelu'(x) = (1 + t)/2 + x/2 · (1 − t²) · √(2/π) (1 + 3 · 0.044715 x²), t = tanh(y).

use super::exec::{on_path, Ctx};
use super::gated;
use super::math::exp;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CUBIC: f32 = 0.044_715;

/// tanh from `math::exp` (so loops over it vectorise): 1 − 2 / (1 + e^{2y}); saturates to ±1.
#[inline(always)]
fn tanh(y: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * y))
}

/// t = tanh(√(2/π)(x + 0.044715 x³)) of one gate value.
#[inline(always)]
fn gate_tanh(x: f32) -> f32 {
    tanh(SQRT_2_OVER_PI * (x + CUBIC * x * x * x))
}

/// h = gelu_tanh(g) * u; all three of the same length.
pub fn forward(ctx: &Ctx, g: &[f32], u: &[f32], h: &mut [f32]) {
    gated::forward(ctx, g, u, h, forward_chunk);
}

/// dg and du (overwritten) from dh, g, u.
pub fn backward(ctx: &Ctx, dh: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) {
    gated::backward(ctx, dh, g, u, dg, du, backward_chunk);
}

on_path!(fn forward_chunk(g: &[f32], u: &[f32], h: &mut [f32]) = forward_body);
on_path!(fn backward_chunk(dh: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) = backward_body);

#[inline(always)]
fn forward_body(g: &[f32], u: &[f32], h: &mut [f32]) {
    for ((h, &g), &u) in h.iter_mut().zip(g).zip(u) {
        *h = 0.5 * g * (1.0 + gate_tanh(g)) * u;
    }
}

#[inline(always)]
fn backward_body(dh: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) {
    for i in 0..dh.len().min(g.len()).min(u.len()).min(dg.len()).min(du.len()) {
        let x = g[i];
        let t = gate_tanh(x);
        let slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x);
        du[i] = dh[i] * (0.5 * x * (1.0 + t));
        dg[i] = dh[i] * u[i] * slope;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::{data, max_rel_err};

    /// The tanh form of GELU in f64, straight from its definition.
    fn gelu64(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
    }

    fn inputs(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        // g over [-8, 8]: both saturated tails and the curved middle.
        let g: Vec<f32> = data(n, 1).iter().map(|v| v * 8.0).collect();
        (g, data(n, 2), data(n, 3))
    }

    /// |got − want| ≤ budget · max|want| (relative to the largest value: GELU crosses 0 near x = 0).
    fn close(got: &[f32], want: &[f64], budget: f64) -> bool {
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        got.iter().zip(want).all(|(&g, &w)| (g as f64 - w).abs() <= budget * scale)
    }

    #[test]
    fn forward_and_backward_match_f64_on_every_path() {
        for path in Path::available() {
            let ctx = Ctx::with_threads(1, path);
            for n in [1usize, 7, 100, gated::CHUNK + 3] {
                let (g, u, dh) = inputs(n);
                let mut h = vec![0.0; n];
                forward(&ctx, &g, &u, &mut h);
                let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| gelu64(g as f64) * u as f64).collect();
                assert!(close(&h, &want, 1e-6), "{path:?} n={n}: {}", max_rel_err(&h, &want));

                let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
                backward(&ctx, &dh, &g, &u, &mut dg, &mut du);
                // Central differences of gelu(g) * u in f64.
                let eps = 1e-6;
                let num_dg: Vec<f64> = (0..n)
                    .map(|i| {
                        let (g, u) = (g[i] as f64, u[i] as f64);
                        dh[i] as f64 * u * (gelu64(g + eps) - gelu64(g - eps)) / (2.0 * eps)
                    })
                    .collect();
                let num_du: Vec<f64> = (0..n).map(|i| dh[i] as f64 * gelu64(g[i] as f64)).collect();
                assert!(close(&dg, &num_dg, 1e-5), "{path:?} n={n} dg");
                assert!(close(&du, &num_du, 1e-6), "{path:?} n={n} du");
            }
        }
    }

    #[test]
    fn saturates_without_nan() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let g = [-1e4f32, -60.0, 60.0, 1e4];
        let u = [1.0f32; 4];
        let mut h = [0.0f32; 4];
        forward(&ctx, &g, &u, &mut h);
        assert_eq!(h, [0.0, 0.0, 60.0, 1e4]);
        let (mut dg, mut du) = ([0.0f32; 4], [0.0f32; 4]);
        backward(&ctx, &u, &g, &u, &mut dg, &mut du);
        assert_eq!(dg, [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn paths_and_thread_counts_agree_bit_for_bit() {
        let n = 3 * gated::CHUNK + 17;
        let (g, u, dh) = inputs(n);
        let run = |ctx: &Ctx| {
            let mut h = vec![0.0; n];
            forward(ctx, &g, &u, &mut h);
            let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
            backward(ctx, &dh, &g, &u, &mut dg, &mut du);
            (h, dg, du)
        };
        let reference = run(&Ctx::with_threads(1, Path::Plain));
        for path in Path::available() {
            assert_eq!(run(&Ctx::with_threads(2, path)), reference, "{path:?}");
        }
    }
}
