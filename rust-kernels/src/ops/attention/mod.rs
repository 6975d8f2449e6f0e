//! Causal grouped-query attention for one sequence per call (the TS graph loops over the batch).
//!
//! Shapes: q [T, H, hd]; k, v [S, Hkv, hd] with H a multiple of Hkv (query head h reads kv head
//! h / (H / Hkv), as transformers' repeat_kv); o [T, H, hd]; lse [H, T]. Query row t sits at absolute
//! position q_offset + t and attends to keys 0..=q_offset + t, so a KV cache works: pass the cache as k, v
//! with q_offset = tokens already in it. S may exceed q_offset + T (a preallocated cache); keys past
//! q_offset + T − 1 are never read. Scores are scaled by 1 / sqrt(hd). With a sliding `window` W > 0 the
//! row at position p sees only keys p − W + 1 ..= p: the tiles still run from key 0, and the shared code
//! (`tiles.rs`) masks the keys before the window (scores to −∞ before the softmax, probabilities and ds to
//! 0 in backward), so the micro-kernels are the same with and without a window.
//!
//! The G = H / Hkv query heads that share a kv head are processed together, so each key and value row is
//! loaded once for all of them: per kv head g the "group rows" are m = t·G + (h − g·G), i.e. token-major
//! with the group's heads side by side. Every product is a sequence of 6 × 16 register tiles
//! (`micro::Micro`, like the GEMM's micro-kernel), six group rows (or keys) by sixteen keys (or features);
//! six consecutive group rows span at most a few tokens, so the causal mask cuts few of them.
//!
//! Forward (tasks: blocks of tokens, all heads): per row tile, the scaled scores against every visible key
//! panel (one row of scores per query row stays in cache, so the softmax is exact: max, exp, sum, then
//! o = p v / sum). lse [H, T] is kept for backward, which recomputes the probabilities from it.
//!
//! Backward, two passes of independent tasks (no atomics, no thread-dependent sums):
//! 1. per (kv head, block of KEYS keys), over the rows that see them in order: scores and dp = dout vᵀ
//!    tiles, p = exp(s − lse), ds = p (dp − delta) with delta = rowsum(dout ∘ o); dv += pᵀ dout and
//!    dk += dsᵀ q accumulate in the task's own rows; ds is kept.
//! 2. per block of tokens: dq = ds k from the kept ds.
//!
//! The kept ds is bounded (DS_BUDGET floats): longer sequences run both passes over chunks of query tokens
//! in order, dk and dv accumulating across chunks in the same order as without chunks.
//!
//! The broadcast operand of a tile is read where it is (q and dout rows as given; probabilities and ds as
//! stored). The vector operands are first copied into panels of NR columns, so each step of a tile loads one
//! contiguous run of NR floats (measured in isolation: 83 against 65 GFLOP/s for the same rows read at the
//! stride of [S, Hkv, hd]): keys as [Hkv][key panel][hd][NR] for scores and dp, and "feature panels"
//! [head][feature panel][row][NR] of v (o = p v), k (dq = ds k), q and dout (dk, dv). Padding is zero, and
//! masked probabilities are zero, so neither changes a sum. The copies and the backward pass's sums live in a
//! per-thread workspace reused across calls.

mod micro;
#[cfg(test)]
mod tests;
mod tiles;

use super::exec::{Ctx, Path};
use crate::error::{ensure, KResult};
use micro::{MR, NR};
use rayon::prelude::*;

/// Keys per dk/dv task: whole tiles both ways (NR keys per score tile, MR keys per dk/dv tile).
const KEYS: usize = 48;
const _: () = assert!(KEYS.is_multiple_of(NR) && KEYS.is_multiple_of(MR));

/// Group rows per forward / dq task (rounded so a block is a whole number of tokens and of row tiles).
const BLOCK_ROWS: usize = 24;
const _: () = assert!(BLOCK_ROWS.is_multiple_of(MR));

/// Group rows per step of a dk/dv task (rounded like BLOCK_ROWS): their p stays in cache while dv and dk
/// read it.
const CHUNK_ROWS: usize = 192;

/// Floats of ds kept between the two backward passes (16 MiB); longer sequences go in chunks of tokens.
const DS_BUDGET: usize = 1 << 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Query rows T.
    pub tokens: usize,
    /// Key/value rows S (≥ q_offset + T).
    pub keys: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Absolute position of query row 0 (0 in training; the cache length in generation).
    pub q_offset: usize,
    /// Sliding window: a row sees the `window` keys ending at its own position (0: every earlier key).
    pub window: usize,
}

impl Shape {
    pub fn check(&self) -> KResult<()> {
        let Shape { tokens, keys, heads, kv_heads, head_dim, q_offset, .. } = *self;
        ensure(heads > 0 && kv_heads > 0 && head_dim > 0, || {
            format!(
                "shape: heads ({heads}), kv_heads ({kv_heads}) and head_dim ({head_dim}) must be positive"
            )
        })?;
        ensure(heads % kv_heads == 0, || {
            format!("heads: {heads} is not a multiple of kv_heads ({kv_heads})")
        })?;
        ensure(q_offset + tokens <= keys, || {
            format!("keys: {keys} key rows cannot cover q_offset + tokens = {q_offset} + {tokens}")
        })
    }

    pub fn q_len(&self) -> usize {
        self.tokens * self.heads * self.head_dim
    }
    pub fn kv_len(&self) -> usize {
        self.keys * self.kv_heads * self.head_dim
    }
    pub fn lse_len(&self) -> usize {
        self.heads * self.tokens
    }
    /// The first key the row at absolute position `pos` sees (0 without a window).
    fn first_key(&self, pos: usize) -> usize {
        if self.window == 0 {
            0
        } else {
            (pos + 1).saturating_sub(self.window)
        }
    }
    /// Keys visible to the last query row: the only ones any row reads.
    fn visible(&self) -> usize {
        self.q_offset + self.tokens
    }
    /// Query heads per kv head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
    /// Group rows per kv head (T · G).
    fn group_rows(&self) -> usize {
        self.tokens * self.group()
    }
    /// Panels of NR keys covering the visible keys.
    fn key_panels(&self) -> usize {
        self.visible().div_ceil(NR)
    }
    /// Blocks of KEYS keys covering the visible keys (backward tasks per kv head).
    fn key_blocks(&self) -> usize {
        self.visible().div_ceil(KEYS)
    }
    /// Panels of NR features covering a head.
    fn feature_panels(&self) -> usize {
        self.head_dim.div_ceil(NR)
    }
    /// Features of panel f (NR but for a ragged last one).
    fn panel_width(&self, f: usize) -> usize {
        NR.min(self.head_dim - f * NR)
    }
    /// Tokens per forward / dq task: the fewest whose group rows are a multiple of BLOCK_ROWS.
    fn block_tokens(&self) -> usize {
        BLOCK_ROWS / gcd(self.group(), BLOCK_ROWS)
    }
    /// Tokens per step of a dk/dv task: a multiple of `block_tokens`, about CHUNK_ROWS group rows.
    fn chunk_tokens(&self) -> usize {
        let block = self.block_tokens();
        block * (CHUNK_ROWS / (block * self.group())).max(1)
    }
    fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// o = softmax(q kᵀ / sqrt(hd) + causal mask) v, and lse [H, T] for the backward pass.
pub fn forward(ctx: &Ctx, sh: &Shape, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32]) {
    if sh.tokens == 0 {
        return;
    }
    let (t, h, l, hkv) = (sh.tokens, sh.heads, sh.visible(), sh.kv_heads);
    let (block, row) = (sh.block_tokens(), h * sh.head_dim);
    let path = ctx.path;
    let kt_len = hkv * sh.key_panels() * sh.head_dim * NR;
    let vf_len = hkv * sh.feature_panels() * l * NR;
    with_workspace(kt_len + vf_len + sh.lse_len(), |ws| {
        let (kt, rest) = ws.split_at_mut(kt_len);
        let (vf, lse_by_token) = rest.split_at_mut(vf_len);
        ctx.pool.install(|| {
            key_panels(path, sh, k, kt);
            feature_panels(sh, v, (l, hkv * sh.head_dim), hkv, vf);
            let inp = tiles::Forward { sh: *sh, q, kt, vf };
            // lse by token ([T, H]) so each task owns a contiguous piece; transposed below.
            o.par_chunks_mut(block * row)
                .zip(lse_by_token.par_chunks_mut(block * h))
                .enumerate()
                .for_each_init(
                    || vec![0.0f32; MR * sh.key_panels() * NR],
                    |scores, (b, (o_blk, lse_blk))| {
                        tiles::forward_block(path, &inp, b * block, o_blk, lse_blk, scores)
                    },
                );
            for (ti, by_head) in lse_by_token.chunks_exact(h).enumerate() {
                for (hi, &x) in by_head.iter().enumerate() {
                    lse[hi * t + ti] = x;
                }
            }
        });
    });
}

/// dq [T, H, hd], dk and dv [S, Hkv, hd] (all overwritten; rows of dk, dv past q_offset + T are zero) from
/// the forward inputs, its outputs o and lse, and dout = dL/do.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &Ctx,
    sh: &Shape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let per_token = sh.heads * sh.key_blocks() * KEYS;
    let chunk = (DS_BUDGET / per_token.max(1)).max(1).next_multiple_of(sh.chunk_tokens());
    backward_in_chunks(ctx, sh, (q, k, v), (o, lse, dout), (dq, dk, dv), chunk);
}

type Triple<'a> = (&'a [f32], &'a [f32], &'a [f32]);
type TripleMut<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

thread_local! {
    /// Packed operands, and backward's dk, dv sums and ds, reused across calls on each calling thread
    /// (grown as needed; backward needs about H · T² floats for T up to DS_BUDGET / (H · T) — 2.6 MiB for
    /// SmolLM2 at T = 256 — plus copies of q, k, v and dout). Stale contents are never read: every user
    /// writes its part first.
    static WORKSPACE: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's workspace (a fresh buffer if a call on this thread is
/// already using it).
fn with_workspace<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut ws = WORKSPACE.take();
    if ws.len() < len {
        ws = vec![0.0f32; len];
    }
    let result = f(&mut ws[..len]);
    WORKSPACE.set(ws);
    result
}

/// `backward` over chunks of `chunk` query tokens (a multiple of `Shape::chunk_tokens`); every chunk size
/// gives the same bits.
fn backward_in_chunks(
    ctx: &Ctx,
    sh: &Shape,
    (q, k, v): Triple<'_>,
    (o, lse, dout): Triple<'_>,
    (dq, dk, dv): TripleMut<'_>,
    chunk: usize,
) {
    let (t, hd, hkv, h) = (sh.tokens, sh.head_dim, sh.kv_heads, sh.heads);
    let (l, fp) = (sh.visible(), sh.feature_panels());
    dk[l * hkv * hd..].fill(0.0);
    dv[l * hkv * hd..].fill(0.0);
    if t == 0 {
        return;
    }
    assert!(chunk.is_multiple_of(sh.chunk_tokens()));
    let (blocks, row) = (sh.key_blocks(), h * hd);
    // dk, dv sums of each (kv head, key block) as tiles: [Hkv][block][key tile][feature panel][MR][NR].
    let acc_len = hkv * blocks * KEYS * fp * NR;
    // ds of one chunk: [Hkv][block][chunk group rows, padded to whole row tiles][KEYS].
    let ds_rows = (chunk.min(t) * sh.group()).next_multiple_of(MR);
    let ds_len = hkv * blocks * ds_rows * KEYS;
    let kt_len = hkv * sh.key_panels() * hd * NR;
    let (kf_len, qf_len) = (hkv * fp * l * NR, h * fp * t * NR);
    let lens = [acc_len, acc_len, ds_len, kt_len, kt_len, kf_len, qf_len, qf_len, sh.lse_len()];
    let path = ctx.path;
    with_workspace(lens.iter().sum(), |ws| {
        let [dk_acc, dv_acc, ds, kt, vt, kf, qf, doutf, delta] = split(ws, lens);
        ctx.pool.install(|| {
            // delta[t, h] = dout_t · o_t, the row term of the softmax gradient.
            let block = sh.block_tokens();
            delta.par_chunks_mut(block * h).enumerate().for_each(|(b, delta_blk)| {
                let rows = b * block * row..(b * block * row + delta_blk.len() * hd);
                tiles::row_dots(path, hd, &dout[rows.clone()], &o[rows], delta_blk)
            });
            key_panels(path, sh, k, kt);
            key_panels(path, sh, v, vt);
            feature_panels(sh, k, (l, hkv * hd), hkv, kf);
            feature_panels(sh, q, (t, row), h, qf);
            feature_panels(sh, dout, (t, row), h, doutf);
            let tile_block = KEYS * fp * NR;
            for t0 in (0..t).step_by(chunk) {
                let t1 = t.min(t0 + chunk);
                let inp = tiles::Backward {
                    sh: *sh,
                    q,
                    dout,
                    kt,
                    vt,
                    kf,
                    qf,
                    doutf,
                    lse,
                    delta,
                    ds_rows,
                    tokens: (t0, t1),
                };
                dk_acc
                    .par_chunks_mut(tile_block)
                    .zip(dv_acc.par_chunks_mut(tile_block))
                    .zip(ds.par_chunks_mut(ds_rows * KEYS))
                    .enumerate()
                    .for_each_init(
                        || vec![0.0f32; sh.chunk_tokens() * sh.group() * KEYS],
                        |p, (task, ((dk_blk, dv_blk), ds_blk))| {
                            tiles::dkdv_block(
                                path,
                                &inp,
                                task / blocks,
                                task % blocks,
                                dk_blk,
                                dv_blk,
                                ds_blk,
                                p,
                            )
                        },
                    );
                dq[t0 * row..t1 * row].par_chunks_mut(block * row).enumerate().for_each(|(b, dq_blk)| {
                    tiles::dq_block(path, &inp, ds, t0 + b * block, dq_blk);
                });
            }
            // Tiles of sums → [S, Hkv, hd] (dk takes the score scale here): row i of a tile is NR features
            // of one key.
            let sc = sh.scale();
            let rows = l * hkv * hd;
            dk[..rows]
                .par_chunks_mut(hkv * hd)
                .zip(dv[..rows].par_chunks_mut(hkv * hd))
                .enumerate()
                .for_each(|(j, (dk_j, dv_j))| {
                    for g in 0..hkv {
                        let (key_tile, i) = ((g * blocks * KEYS + j) / MR, j % MR);
                        for f in 0..fp {
                            let at = ((key_tile * fp + f) * MR + i) * NR;
                            let width = sh.panel_width(f);
                            let out = g * hd + f * NR..g * hd + f * NR + width;
                            for (x, &a) in dk_j[out.clone()].iter_mut().zip(&dk_acc[at..at + width]) {
                                *x = a * sc;
                            }
                            dv_j[out].copy_from_slice(&dv_acc[at..at + width]);
                        }
                    }
                });
        });
    });
}

/// Splits `ws` into consecutive pieces of the given lengths.
fn split<const N: usize>(mut ws: &mut [f32], lens: [usize; N]) -> [&mut [f32]; N] {
    lens.map(|len| {
        let (piece, rest) = std::mem::take(&mut ws).split_at_mut(len);
        ws = rest;
        piece
    })
}

/// x [S, Hkv, hd] → out [Hkv][key panel][hd][NR] over the visible keys (zero past them): the b operand of
/// score and dp tiles, NR keys side by side for each feature.
fn key_panels(path: Path, sh: &Shape, x: &[f32], out: &mut [f32]) {
    let (hd, l, hkv) = (sh.head_dim, sh.visible(), sh.kv_heads);
    out.par_chunks_mut(hd * NR).enumerate().for_each(|(gp, panel)| {
        let (g, p) = (gp / sh.key_panels(), gp % sh.key_panels());
        let rows = std::array::from_fn(|jj| (p * NR + jj < l).then(|| ((p * NR + jj) * hkv + g) * hd));
        tiles::key_panel(path, x, rows, panel.as_chunks_mut::<NR>().0);
    });
}

/// The first `rows` rows of the `heads` heads of x (row i of head h at i · stride + h · hd) → out
/// [head][feature panel][row][NR], features past hd zero: the b operand of o = p v, dq = ds k and dk, dv.
fn feature_panels(sh: &Shape, x: &[f32], (rows, stride): (usize, usize), heads: usize, out: &mut [f32]) {
    let (hd, fp) = (sh.head_dim, sh.feature_panels());
    debug_assert_eq!(out.len(), heads * fp * rows * NR);
    out.par_chunks_mut(rows * NR).enumerate().for_each(|(hf, out_hf)| {
        let (head, f) = (hf / fp, hf % fp);
        let width = sh.panel_width(f);
        let (dst_rows, _) = out_hf.as_chunks_mut::<NR>();
        for (i, dst) in dst_rows.iter_mut().enumerate() {
            let src = &x[i * stride + head * hd + f * NR..];
            if width == NR {
                *dst = src[..NR].try_into().expect("NR floats"); // a fixed-size copy, inlined
            } else {
                dst[..width].copy_from_slice(&src[..width]);
                dst[width..].fill(0.0);
            }
        }
    });
}
