//! Causal grouped-query attention for one sequence per call (the TS graph loops over the batch).
//!
//! Shapes: q [T, H, hd]; k, v [S, Hkv, hd] with H a multiple of Hkv (query head h reads kv head
//! h / (H / Hkv), as transformers' repeat_kv); o [T, H, hd]; lse [H, T]. Query row t sits at absolute
//! position q_offset + t and attends to keys 0..=q_offset + t, so a KV cache works: pass the cache as k, v
//! with q_offset = tokens already in it. S may exceed q_offset + T (a preallocated cache); keys past
//! q_offset + T − 1 are never read. Scores are scaled by 1 / sqrt(hd).
//!
//! The forward pass keeps, per query row, the log-sum-exp of its scores (lse); backward recomputes the
//! probabilities from it instead of storing [H, T, S]. Backward runs two passes, each a set of independent
//! tasks (so no atomics and no thread-dependent sums): one per (kv head, block of keys) for dk, dv, and one
//! per (query head, block of rows) for dq. Forward uses the (query head, block of rows) tasks.
//!
//! All inner products run through one register-panel kernel (`tiles::panel`): W outputs stay in registers
//! while a weighted sum of W-wide rows streams through them. For that the operands are first packed so that
//! those rows are contiguous: keys in panels of W keys ([Hkv][key panel][hd][W], for scores) and features
//! in panels of W features ([head][feature panel][row][W], for the weighted sums of value, key, query and
//! output-gradient rows). Panels are zero-padded, so the padding never changes a sum.

#[cfg(test)]
mod tests;
mod tiles;

use super::exec::Ctx;
use crate::error::{ensure, KResult};
use rayon::prelude::*;
use tiles::Inputs;

/// Query rows per task (forward and dq).
pub(super) const ROWS: usize = 16;
/// Keys per task (dk, dv); a whole number of key panels.
const KEYS: usize = 64;
const _: () = assert!(KEYS.is_multiple_of(tiles::W));

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
}

impl Shape {
    pub fn check(&self) -> KResult<()> {
        let Shape { tokens, keys, heads, kv_heads, head_dim, q_offset } = *self;
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
    /// Keys visible to the last query row: the only ones any row reads.
    fn visible(&self) -> usize {
        self.q_offset + self.tokens
    }
    /// Panels of W keys covering the visible keys.
    fn key_panels(&self) -> usize {
        self.visible().div_ceil(tiles::W)
    }
    /// Panels of W features covering a head.
    fn feature_panels(&self) -> usize {
        self.head_dim.div_ceil(tiles::W)
    }
    fn group(&self, head: usize) -> usize {
        head / (self.heads / self.kv_heads)
    }
    fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }
}

/// o = softmax(q kᵀ / sqrt(hd) + causal mask) v, and lse [H, T] for the backward pass.
pub fn forward(ctx: &Ctx, sh: &Shape, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32]) {
    if sh.tokens == 0 {
        return;
    }
    let (t, hd, l) = (sh.tokens, sh.head_dim, sh.visible());
    let path = ctx.path;
    ctx.pool.install(|| {
        let packed = Packed {
            k_keys: key_panels(sh, k),
            v_features: feature_panels(v, l, sh.kv_heads, hd),
            ..Packed::default()
        };
        let inp = Inputs::new(sh, q, &[], &[], &[], &packed);
        let mut o_by_head = vec![0.0f32; sh.q_len()];
        o_by_head.par_chunks_mut(t * hd).zip(lse.par_chunks_mut(t)).enumerate().for_each(
            |(h, (o_h, lse_h))| {
                o_h.par_chunks_mut(ROWS * hd).zip(lse_h.par_chunks_mut(ROWS)).enumerate().for_each_init(
                    || tiles::RowScratch::new(sh, ROWS),
                    |scratch, (block, (o_rows, lse_rows))| {
                        tiles::forward_rows(path, &inp, h, block * ROWS, o_rows, lse_rows, scratch)
                    },
                );
            },
        );
        from_head_major(sh, &o_by_head, o);
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
    dk.fill(0.0);
    dv.fill(0.0);
    if sh.tokens == 0 {
        return;
    }
    let (t, hd, l, hkv) = (sh.tokens, sh.head_dim, sh.visible(), sh.kv_heads);
    let path = ctx.path;
    ctx.pool.install(|| {
        // delta[h, t] = dout_t · o_t, the row term of the softmax gradient.
        let mut delta = vec![0.0f32; sh.lse_len()];
        delta
            .par_chunks_mut(t)
            .enumerate()
            .for_each(|(h, delta_h)| tiles::row_dots(path, sh, h, dout, o, delta_h));
        let packed = Packed {
            k_keys: key_panels(sh, k),
            v_keys: key_panels(sh, v),
            k_features: feature_panels(k, l, hkv, hd),
            q_features: feature_panels(q, t, sh.heads, hd),
            dout_features: feature_panels(dout, t, sh.heads, hd),
            ..Packed::default()
        };
        let inp = Inputs::new(sh, q, dout, lse, &delta, &packed);

        // dk, dv: one task per (kv head, block of keys), each owning its rows of the result.
        let blocks = l.div_ceil(KEYS);
        let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..hkv * blocks)
            .into_par_iter()
            .map_init(
                || tiles::BlockScratch::new(sh, KEYS),
                |scratch, task| {
                    let (g, j0) = (task / blocks, (task % blocks) * KEYS);
                    let n = KEYS.min(l - j0);
                    let (mut dk_blk, mut dv_blk) = (vec![0.0f32; n * hd], vec![0.0f32; n * hd]);
                    tiles::dkdv_block(path, &inp, g, j0, &mut dk_blk, &mut dv_blk, scratch);
                    (dk_blk, dv_blk)
                },
            )
            .collect();
        for (task, (dk_blk, dv_blk)) in parts.iter().enumerate() {
            let (g, j0) = (task / blocks, (task % blocks) * KEYS);
            for (jj, (dk_row, dv_row)) in dk_blk.chunks_exact(hd).zip(dv_blk.chunks_exact(hd)).enumerate() {
                let at = ((j0 + jj) * hkv + g) * hd;
                dk[at..at + hd].copy_from_slice(dk_row);
                dv[at..at + hd].copy_from_slice(dv_row);
            }
        }

        // dq: one task per (query head, block of rows).
        let mut dq_by_head = vec![0.0f32; sh.q_len()];
        dq_by_head.par_chunks_mut(t * hd).enumerate().for_each(|(h, dq_h)| {
            dq_h.par_chunks_mut(ROWS * hd).enumerate().for_each_init(
                || tiles::RowScratch::new(sh, ROWS),
                |scratch, (block, dq_rows)| tiles::dq_rows(path, &inp, h, block * ROWS, dq_rows, scratch),
            );
        });
        from_head_major(sh, &dq_by_head, dq);
    });
}

/// Packed copies of the operands (see the module doc); each call fills the ones it uses.
#[derive(Default)]
struct Packed {
    /// k as [Hkv][key panel][hd][W].
    k_keys: Vec<f32>,
    /// v as [Hkv][key panel][hd][W] (backward).
    v_keys: Vec<f32>,
    /// k as [Hkv][feature panel][visible keys][W] (backward).
    k_features: Vec<f32>,
    /// v as [Hkv][feature panel][visible keys][W] (forward).
    v_features: Vec<f32>,
    /// q as [H][feature panel][T][W] (backward).
    q_features: Vec<f32>,
    /// dout as [H][feature panel][T][W] (backward).
    dout_features: Vec<f32>,
}

/// x [S, Hkv, hd] → [Hkv][key panel][hd][W] over the visible keys (zero past them): the scores of a query
/// row against one panel of keys are then a weighted sum of hd contiguous W-wide rows.
fn key_panels(sh: &Shape, x: &[f32]) -> Vec<f32> {
    let (hd, l, hkv, w) = (sh.head_dim, sh.visible(), sh.kv_heads, tiles::W);
    let mut out = vec![0.0f32; hkv * sh.key_panels() * hd * w];
    out.par_chunks_mut(sh.key_panels() * hd * w).enumerate().for_each(|(g, out_g)| {
        for (p, panel) in out_g.chunks_exact_mut(hd * w).enumerate() {
            for j in p * w..l.min((p + 1) * w) {
                let row = &x[(j * hkv + g) * hd..][..hd];
                for (d, &value) in row.iter().enumerate() {
                    panel[d * w + j - p * w] = value;
                }
            }
        }
    });
    out
}

/// x [rows, heads, hd] (only its first `rows` rows) → [heads][feature panel][rows][W], features past hd
/// zero: a weighted sum of rows of one head is then, per panel, a sum of contiguous W-wide rows.
fn feature_panels(x: &[f32], rows: usize, heads: usize, hd: usize) -> Vec<f32> {
    let (w, fp) = (tiles::W, hd.div_ceil(tiles::W));
    let mut out = vec![0.0f32; heads * fp * rows * w];
    out.par_chunks_mut(rows * w).enumerate().for_each(|(hf, out_hf)| {
        let (h, f) = (hf / fp, hf % fp);
        let width = w.min(hd - f * w);
        for (r, dst) in out_hf.chunks_exact_mut(w).enumerate() {
            dst[..width].copy_from_slice(&x[(r * heads + h) * hd + f * w..][..width]);
        }
    });
    out
}

/// [H][T][hd] → [T, H, hd].
fn from_head_major(sh: &Shape, by_head: &[f32], out: &mut [f32]) {
    let (t, h, hd) = (sh.tokens, sh.heads, sh.head_dim);
    out.par_chunks_mut(h * hd).enumerate().for_each(|(row, out_row)| {
        for (head, dst) in out_row.chunks_exact_mut(hd).enumerate() {
            dst.copy_from_slice(&by_head[(head * t + row) * hd..][..hd]);
        }
    });
}
