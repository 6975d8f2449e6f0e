//! Rotary position embedding in the Hugging Face layout ("rotate_half"): in each head of size hd, feature i
//! pairs with feature i + hd/2 and the pair turns by the angle pos * inv_freq[i].
//!
//! The angles are a table built once per sequence (`cos_sin`) and shared by q, k, every layer and the
//! backward pass. The table follows transformers' fp32 recipe: freq = (pos as f32) * inv_freq[i], one f32
//! product (their `inv_freq @ position_ids` has an inner dimension of 1), then cos and sin of that f32 angle
//! times `attention_scaling` (1 except for YaRN-style scalings). We evaluate cos/sin in f64 and round to f32,
//! which is within 1 ulp of PyTorch's f32 cos/sin; the rounding of the angle itself matters far more at large
//! positions and is reproduced exactly. inv_freq comes from TS (it depends on the rope_scaling config).

use super::exec::{on_path, Ctx};
use rayon::prelude::*;

/// Tokens per parallel task.
const TOKENS: usize = 32;

/// Fills cos, sin [T, half] for positions [T] and inv_freq [half].
pub fn cos_sin(
    positions: &[u32],
    inv_freq: &[f32],
    attention_scaling: f32,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let half = inv_freq.len();
    if half == 0 {
        return;
    }
    for ((&pos, c), s) in positions.iter().zip(cos.chunks_exact_mut(half)).zip(sin.chunks_exact_mut(half)) {
        for i in 0..half {
            let angle = (pos as f32 * inv_freq[i]) as f64;
            c[i] = angle.cos() as f32 * attention_scaling;
            s[i] = angle.sin() as f32 * attention_scaling;
        }
    }
}

/// Rotates x [T, heads, 2 * half] in place by the table cos, sin [T, half] (forward), or by its transpose
/// (`inverse`: the backward pass; the rotation is orthogonal up to `attention_scaling`, which the
/// transpose keeps).
pub fn apply(ctx: &Ctx, x: &mut [f32], heads: usize, half: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    let row = heads * 2 * half;
    if row == 0 || x.is_empty() {
        return;
    }
    debug_assert_eq!(x.len() / row * half, cos.len());
    let path = ctx.path;
    ctx.pool.install(|| {
        x.par_chunks_mut(TOKENS * row)
            .zip(cos.par_chunks(TOKENS * half))
            .zip(sin.par_chunks(TOKENS * half))
            .for_each(|((x, cos), sin)| rotate_tokens(path, x, row, half, cos, sin, inverse));
    });
}

on_path!(fn rotate_tokens(x: &mut [f32], row: usize, half: usize, cos: &[f32], sin: &[f32], inverse: bool) = rotate_tokens_body);

/// Tokens of x (rows of `row` floats) by their rows of the table.
#[inline(always)]
fn rotate_tokens_body(x: &mut [f32], row: usize, half: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    for ((x, c), s) in x.chunks_exact_mut(row).zip(cos.chunks_exact(half)).zip(sin.chunks_exact(half)) {
        for head in x.chunks_exact_mut(2 * half) {
            rotate(head, c, s, inverse);
        }
    }
}

/// One head: (a, b) → (a c − b s, b c + a s), or its transpose (a c + b s, b c − a s).
#[inline(always)]
fn rotate(head: &mut [f32], c: &[f32], s: &[f32], inverse: bool) {
    let (lo, hi) = head.split_at_mut(c.len());
    if inverse {
        for i in 0..c.len() {
            let (a, b) = (lo[i], hi[i]);
            lo[i] = a * c[i] + b * s[i];
            hi[i] = b * c[i] - a * s[i];
        }
    } else {
        for i in 0..c.len() {
            let (a, b) = (lo[i], hi[i]);
            lo[i] = a * c[i] - b * s[i];
            hi[i] = b * c[i] + a * s[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::{data, max_rel_err};

    fn inv_freq(half: usize, theta: f64) -> Vec<f32> {
        (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / (2 * half) as f64)) as f32).collect()
    }

    /// Straight from the formula: x·cos + rotate_half(x)·sin, with angles from the same f32 product.
    fn rope_f64(x: &[f32], positions: &[u32], heads: usize, inv: &[f32], scaling: f64) -> Vec<f64> {
        let half = inv.len();
        let hd = 2 * half;
        let mut out = vec![0.0; x.len()];
        for (t, &pos) in positions.iter().enumerate() {
            for h in 0..heads {
                let base = (t * heads + h) * hd;
                for i in 0..hd {
                    let angle = (pos as f32 * inv[i % half]) as f64;
                    let rot = if i < half { -(x[base + i + half] as f64) } else { x[base + i - half] as f64 };
                    out[base + i] = (x[base + i] as f64 * angle.cos() + rot * angle.sin()) * scaling;
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_formula() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        for (t, heads, half) in [(1, 1, 1), (3, 2, 4), (37, 3, 8)] {
            let positions: Vec<u32> = (0..t as u32).map(|p| p * 97 + 5).collect();
            let inv = inv_freq(half, 10000.0);
            for scaling in [1.0f32, 1.25] {
                let (mut cos, mut sin) = (vec![0.0; t * half], vec![0.0; t * half]);
                cos_sin(&positions, &inv, scaling, &mut cos, &mut sin);
                let x = data(t * heads * 2 * half, 1);
                let mut y = x.clone();
                apply(&ctx, &mut y, heads, half, &cos, &sin, false);
                let err = max_rel_err(&y, &rope_f64(&x, &positions, heads, &inv, scaling as f64));
                assert!(err < 1e-6, "T={t} heads={heads} half={half}: {err}");
            }
        }
    }

    #[test]
    fn backward_is_the_transpose() {
        // <R x, g> must equal <x, Rᵀ g> for the gradient of L = <rope(x), g>; this is exactly the
        // finite-difference gradient since rope is linear in x.
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (t, heads, half) = (5, 2, 3);
        let positions: Vec<u32> = vec![0, 1, 2, 1000, 40000];
        let inv = inv_freq(half, 500000.0);
        let (mut cos, mut sin) = (vec![0.0; t * half], vec![0.0; t * half]);
        cos_sin(&positions, &inv, 1.1, &mut cos, &mut sin);
        let n = t * heads * 2 * half;
        let (x, g) = (data(n, 2), data(n, 3));
        let mut rx = x.clone();
        apply(&ctx, &mut rx, heads, half, &cos, &sin, false);
        let mut rtg = g.clone();
        apply(&ctx, &mut rtg, heads, half, &cos, &sin, true);
        let lhs: f64 = rx.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&rtg).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
        // And a finite difference on one coordinate, to pin the sign convention.
        let h = 1e-3f32;
        for i in [0, 4, n - 1] {
            let mut xp = x.clone();
            xp[i] += h;
            apply(&ctx, &mut xp, heads, half, &cos, &sin, false);
            let lp: f64 = xp.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();
            let num = (lp - lhs) / h as f64;
            assert!((num - rtg[i] as f64).abs() < 2e-3, "d[{i}]: {num} vs {}", rtg[i]);
        }
    }

    #[test]
    fn one_thread_equals_two() {
        let (t, heads, half) = (100, 3, 4);
        let positions: Vec<u32> = (0..t as u32).collect();
        let inv = inv_freq(half, 10000.0);
        let (mut cos, mut sin) = (vec![0.0; t * half], vec![0.0; t * half]);
        cos_sin(&positions, &inv, 1.0, &mut cos, &mut sin);
        let x = data(t * heads * 2 * half, 4);
        let run = |n| {
            let mut y = x.clone();
            apply(&Ctx::with_threads(n, Path::Plain), &mut y, heads, half, &cos, &sin, false);
            y
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn every_path_gives_the_plain_bits() {
        // Head halves that are not multiples of 8 or 16, token counts past a task.
        for (t, heads, half) in [(1, 1, 1), (5, 3, 7), (TOKENS + 3, 2, 20), (9, 9, 32)] {
            let positions: Vec<u32> = (0..t as u32).map(|p| p * 13 + 1).collect();
            let inv = inv_freq(half, 10000.0);
            let (mut cos, mut sin) = (vec![0.0; t * half], vec![0.0; t * half]);
            cos_sin(&positions, &inv, 1.0, &mut cos, &mut sin);
            let x = data(t * heads * 2 * half, 5);
            let run = |path, inverse| {
                let mut y = x.clone();
                apply(&Ctx::with_threads(2, path), &mut y, heads, half, &cos, &sin, inverse);
                y
            };
            for inverse in [false, true] {
                let reference = run(Path::Plain, inverse);
                for path in Path::available() {
                    assert_eq!(
                        run(path, inverse),
                        reference,
                        "{path:?} {t}x{heads}x{half} inverse {inverse}"
                    );
                }
            }
        }
    }
}
