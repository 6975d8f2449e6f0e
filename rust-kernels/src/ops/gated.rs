//! The parallel split shared by the gated MLP activations (SwiGLU, GeGLU): fixed chunks of the three
//! (forward) or five (backward) equal-length vectors, each chunk run by the activation's per-path body.

use super::exec::{Ctx, Path};
use rayon::prelude::*;

/// Elements per parallel task.
pub const CHUNK: usize = 8192;

/// `chunk(path, g, u, h)` over matching chunks of g, u and h.
pub fn forward(ctx: &Ctx, g: &[f32], u: &[f32], h: &mut [f32], chunk: fn(Path, &[f32], &[f32], &mut [f32])) {
    let path = ctx.path;
    ctx.pool.install(|| {
        h.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(u.par_chunks(CHUNK))
            .for_each(|((h, g), u)| chunk(path, g, u, h));
    });
}

/// The body of an activation's backward: `(path, dh, g, u, dg, du)` over one chunk.
pub type BackwardChunk = fn(Path, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

/// `chunk(path, dh, g, u, dg, du)` over matching chunks; dg and du are overwritten.
pub fn backward(
    ctx: &Ctx,
    dh: &[f32],
    g: &[f32],
    u: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
    chunk: BackwardChunk,
) {
    let path = ctx.path;
    ctx.pool.install(|| {
        dg.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .zip(dh.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(((dg, du), dh), (g, u))| chunk(path, dh, g, u, dg, du));
    });
}
