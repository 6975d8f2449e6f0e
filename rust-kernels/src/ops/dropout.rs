//! Inverted dropout with a counter-based mask: element i is kept when a hash of (seed, i) is at least
//! p·2³², and kept values are scaled by 1/(1−p). The mask is a pure function of the seed, so the backward
//! pass (and a recomputed checkpointed block) applies the same mask without storing it, and the result does
//! not depend on the thread count.

use super::exec::{on_path, Ctx};
use crate::error::{ensure, KResult};
use rayon::prelude::*;

const CHUNK: usize = 16384;

/// SplitMix64's finalizer over seed + i·golden ratio: 32 well-mixed bits per (seed, index).
#[inline(always)]
fn hash(seed: u64, i: u64) -> u32 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 32) as u32
}

/// Whether element `i` survives dropout with probability `p` under `seed`.
pub fn kept(seed: u64, i: u64, p: f32) -> bool {
    hash(seed, i) as u64 >= (p as f64 * 4294967296.0) as u64
}

/// out = x · mask(seed) / (1 − p).
pub fn dropout(ctx: &Ctx, x: &[f32], out: &mut [f32], p: f32, seed: u64) -> KResult<()> {
    ensure((0.0..1.0).contains(&p), || format!("p: must be in [0, 1), got {p}"))?;
    ensure(x.len() == out.len(), || format!("out: expected {} elements like x, got {}", x.len(), out.len()))?;
    let threshold = (p as f64 * 4294967296.0) as u64;
    let scale = 1.0 / (1.0 - p);
    let path = ctx.path;
    ctx.pool.install(|| {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (out, x))| {
            chunk(path, x, out, (c * CHUNK) as u64, seed, threshold, scale);
        });
    });
    Ok(())
}

// The hash is integer arithmetic, so every build gives the same mask; the vector builds only run it faster.
on_path!(fn chunk(x: &[f32], out: &mut [f32], base: u64, seed: u64, threshold: u64, scale: f32) = chunk_body);

#[inline(always)]
fn chunk_body(x: &[f32], out: &mut [f32], base: u64, seed: u64, threshold: u64, scale: f32) {
    for (j, (o, v)) in out.iter_mut().zip(x).enumerate() {
        *o = if hash(seed, base + j as u64) as u64 >= threshold { v * scale } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_one_minus_p_scaled_and_depends_only_on_the_seed() {
        let x = vec![1.0f32; 100_000];
        let mut a = vec![0.0; x.len()];
        let mut b = vec![0.0; x.len()];
        dropout(&Ctx::with_threads(1, super::super::exec::Path::active()), &x, &mut a, 0.25, 7).unwrap();
        dropout(&Ctx::with_threads(2, super::super::exec::Path::active()), &x, &mut b, 0.25, 7).unwrap();
        assert_eq!(a, b, "thread count does not change the mask");
        let kept_count = a.iter().filter(|&&v| v != 0.0).count();
        assert!((kept_count as f64 / 1e5 - 0.75).abs() < 0.01, "{kept_count}");
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
        assert!(a.iter().enumerate().all(|(i, &v)| (v != 0.0) == kept(7, i as u64, 0.25)));
        for path in super::super::exec::Path::available() {
            let mut c = vec![0.0; x.len()];
            dropout(&Ctx::with_threads(2, path), &x, &mut c, 0.25, 7).unwrap();
            assert_eq!(a, c, "{path:?} builds the same mask");
        }
        dropout(&Ctx::current(), &x, &mut b, 0.25, 8).unwrap();
        assert_ne!(a, b, "another seed, another mask");
        assert!(dropout(&Ctx::current(), &x, &mut b, 1.0, 1).is_err());
    }
}
