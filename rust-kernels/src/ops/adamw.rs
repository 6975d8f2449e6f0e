//! AdamW with decoupled weight decay, as torch.optim.AdamW (amsgrad off, single-tensor path):
//!   p ← p (1 − lr·wd);  m ← m + (1 − β1)(g − m);  v ← β2 v + (1 − β2) g²;
//!   p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + eps).
//! The scalars are formed in f64 and rounded to f32 once per call, and the per-element arithmetic follows
//! PyTorch's order (a lerp for m, addcmul for v, addcdiv for p) so the two agree to the last bit or two.

use super::exec::{on_path, Ctx};
use crate::error::{ensure, KResult};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 16384;

#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    fn check(&self) -> KResult<()> {
        let AdamW { lr, beta1, beta2, eps, weight_decay } = *self;
        ensure(lr.is_finite() && lr >= 0.0, || format!("lr: must be finite and >= 0, got {lr}"))?;
        ensure((0.0..1.0).contains(&beta1), || format!("beta1: must be in [0, 1), got {beta1}"))?;
        ensure((0.0..1.0).contains(&beta2), || format!("beta2: must be in [0, 1), got {beta2}"))?;
        ensure(eps.is_finite() && eps >= 0.0, || format!("eps: must be finite and >= 0, got {eps}"))?;
        ensure(weight_decay.is_finite() && weight_decay >= 0.0, || {
            format!("weight_decay: must be finite and >= 0, got {weight_decay}")
        })
    }
}

/// The per-call constants, rounded to f32.
#[derive(Clone, Copy)]
struct Scalars {
    decay: f32,
    m_weight: f32,
    beta2: f32,
    one_minus_beta2: f32,
    neg_step_size: f32,
    bias2_sqrt: f32,
    eps: f32,
}

/// One optimiser step `t` (1 for the first) over flat p, g, m, v of equal length; m and v start at zero.
pub fn step(
    ctx: &Ctx,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    t: u32,
    hp: &AdamW,
) -> KResult<()> {
    hp.check()?;
    ensure(t >= 1, || "step: must be >= 1 (the first step is 1)".into())?;
    let s = Scalars {
        decay: (1.0 - hp.lr * hp.weight_decay) as f32,
        m_weight: (1.0 - hp.beta1) as f32,
        beta2: hp.beta2 as f32,
        one_minus_beta2: (1.0 - hp.beta2) as f32,
        neg_step_size: (-hp.lr / (1.0 - hp.beta1.powf(t as f64))) as f32,
        bias2_sqrt: (1.0 - hp.beta2.powf(t as f64)).sqrt() as f32,
        eps: hp.eps as f32,
    };
    let path = ctx.path;
    ctx.pool.install(|| {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(path, p, g, m, v, s));
    });
    Ok(())
}

on_path!(fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: Scalars) = update_body);

#[inline(always)]
fn update_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: Scalars) {
    // torch.lerp switches formula at weight 0.5 for accuracy; the branch is loop-invariant.
    let small_weight = s.m_weight < 0.5;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *p *= s.decay;
        *m = if small_weight { *m + s.m_weight * (g - *m) } else { g - (g - *m) * (1.0 - s.m_weight) };
        *v = *v * s.beta2 + s.one_minus_beta2 * g * g;
        let denom = v.sqrt() / s.bias2_sqrt + s.eps;
        *p += s.neg_step_size * *m / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::data;

    const HP: AdamW = AdamW { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };

    #[test]
    fn two_steps_by_hand() {
        // p = 1, g = 0.5 then −0.25.
        // Step 1: p = 0.999; m = 0.05; v = 0.00025; m̂ = 0.5; v̂ = 0.25;
        //         p = 0.999 − 0.1 · 0.5 / (0.5 + 1e-8) = 0.899000002.
        // Step 2: p = 0.899 · 0.999 = 0.898101; m = 0.045 − 0.025 = 0.02; v = 0.00024975 + 0.0000625 =
        //         0.00031225; m̂ = 0.02 / 0.19; v̂ = 0.00031225 / 0.001999;
        //         p = 0.898101 − 0.1 · m̂ / (sqrt(v̂) + 1e-8) = 0.8714672987.
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (mut p, mut m, mut v) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
        step(&ctx, &mut p, &[0.5], &mut m, &mut v, 1, &HP).unwrap();
        assert!((p[0] as f64 - 0.899000002).abs() < 1e-7, "{}", p[0]);
        assert!((m[0] as f64 - 0.05).abs() < 1e-8 && (v[0] as f64 - 0.00025).abs() < 1e-10);
        step(&ctx, &mut p, &[-0.25], &mut m, &mut v, 2, &HP).unwrap();
        assert!((p[0] as f64 - 0.8714672987).abs() < 1e-6, "{}", p[0]);
        assert!((m[0] as f64 - 0.02).abs() < 1e-8 && (v[0] as f64 - 0.00031225).abs() < 1e-10);
    }

    #[test]
    fn rejects_bad_hyperparameters() {
        let ctx = Ctx::with_threads(1, Path::Plain);
        let (mut p, mut m, mut v) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
        let err = step(&ctx, &mut p, &[0.5], &mut m, &mut v, 0, &HP).unwrap_err();
        assert!(err.message.starts_with("step:"));
        let bad = AdamW { beta2: 1.0, ..HP };
        assert!(step(&ctx, &mut p, &[0.5], &mut m, &mut v, 1, &bad)
            .unwrap_err()
            .message
            .starts_with("beta2:"));
        assert_eq!(p, vec![1.0]);
    }

    #[test]
    fn one_thread_equals_two() {
        let n = 3 * CHUNK + 5;
        let g = data(n, 1);
        let run = |threads| {
            let ctx = Ctx::with_threads(threads, Path::Plain);
            let (mut p, mut m, mut v) = (data(n, 2), vec![0.0; n], vec![0.0; n]);
            for t in 1..=3 {
                step(&ctx, &mut p, &g, &mut m, &mut v, t, &HP).unwrap();
            }
            (p, m, v)
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn every_path_gives_the_plain_bits() {
        // Ragged lengths (not multiples of 8 or 16, one past a chunk) and both lerp branches.
        for n in [1usize, 7, 33, CHUNK + 1] {
            for hp in [HP, AdamW { beta1: 0.3, ..HP }] {
                let g = data(n, 5);
                let run = |path| {
                    let ctx = Ctx::with_threads(2, path);
                    let (mut p, mut m, mut v) = (data(n, 6), data(n, 7), data(n, 8).map_abs());
                    for t in 1..=2 {
                        step(&ctx, &mut p, &g, &mut m, &mut v, t, &hp).unwrap();
                    }
                    (p, m, v)
                };
                let reference = run(Path::Plain);
                for path in Path::available() {
                    assert_eq!(run(path), reference, "{path:?} n = {n}");
                }
            }
        }
    }

    trait MapAbs {
        fn map_abs(self) -> Self;
    }
    impl MapAbs for Vec<f32> {
        fn map_abs(self) -> Self {
            self.into_iter().map(f32::abs).collect()
        }
    }
}
