//! SwiGLU, the gate of Llama's MLP: h = silu(g) * u elementwise, for g = gate_proj(x), u = up_proj(x).
//! Backward: du = dh * silu(g), dg = dh * u * silu'(g) with silu'(x) = σ(x) (1 + x (1 − σ(x))).

use super::exec::{on_path, Ctx};
use super::gated;
use super::math::{sigmoid, silu};

/// h = silu(g) * u; all three of the same length.
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
        *h = silu(g) * u;
    }
}

#[inline(always)]
fn backward_body(dh: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) {
    for i in 0..dh.len().min(g.len()).min(u.len()).min(dg.len()).min(du.len()) {
        let s = sigmoid(g[i]);
        du[i] = dh[i] * (g[i] * s);
        dg[i] = dh[i] * u[i] * (s * (1.0 + g[i] * (1.0 - s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::{data, max_rel_err};

    fn silu64(x: f64) -> f64 {
        x / (1.0 + (-x).exp())
    }

    fn inputs(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        // Spread g over [-12, 12] so both tails of the sigmoid are covered.
        let g: Vec<f32> = data(n, 1).iter().map(|v| v * 12.0).collect();
        (g, data(n, 2), data(n, 3))
    }

    #[test]
    fn forward_and_backward_match_f64_on_every_path() {
        for path in Path::available() {
            let ctx = Ctx::with_threads(1, path);
            for n in [1usize, 7, 100, gated::CHUNK + 3] {
                let (g, u, dh) = inputs(n);
                let mut h = vec![0.0; n];
                forward(&ctx, &g, &u, &mut h);
                let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| silu64(g as f64) * u as f64).collect();
                assert!(max_rel_err(&h, &want) < 1e-6, "{path:?} n={n}");

                let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
                backward(&ctx, &dh, &g, &u, &mut dg, &mut du);
                // Central differences of silu(g) * u in f64.
                let eps = 1e-6;
                let num_dg: Vec<f64> = (0..n)
                    .map(|i| {
                        let (g, u) = (g[i] as f64, u[i] as f64);
                        dh[i] as f64 * u * (silu64(g + eps) - silu64(g - eps)) / (2.0 * eps)
                    })
                    .collect();
                let num_du: Vec<f64> = (0..n).map(|i| dh[i] as f64 * silu64(g[i] as f64)).collect();
                assert!(max_rel_err(&dg, &num_dg) < 1e-5, "{path:?} n={n} dg");
                assert!(max_rel_err(&du, &num_du) < 1e-6, "{path:?} n={n} du");
            }
        }
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
