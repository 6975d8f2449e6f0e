//! The work of one attention task, as plain loops (the `on_path!` twins add an AVX2 build of each).
//!
//! Notation per query head h: s_j = scale · q_t·k_j (scores), p_j = exp(s_j − lse_t) (probabilities),
//! dp_j = dout_t·v_j, ds_j = p_j (dp_j − delta_t) with delta_t = dout_t·o_t. Then dq_t = scale Σ_j ds_j k_j,
//! dk_j = scale Σ_t ds_j q_t and dv_j = Σ_t p_j dout_t, the sums over t running over every query head
//! of the group.

use super::{Packed, Shape};
use crate::ops::exec::on_path;
use crate::ops::math::{dot, exp, max, sum};

/// Outputs per register panel: their accumulators stay in eight AVX2 registers while a weighted sum of rows
/// streams through them, which gives eight independent add chains (fewer leave the adder waiting on its own
/// latency; measured: 32 wide runs at half the speed of 64).
pub(super) const W: usize = 64;

/// Features per slice of a key panel in `Inputs::block_scores` (a slice is PANEL_DEPTH × W floats, 8 KiB).
const PANEL_DEPTH: usize = 32;

/// Query rows per chunk in `dkdv_block`: probabilities are kept for this many rows at a time.
const ROW_CHUNK: usize = 32;

/// out[w] += Σ_i a[i] · rows[i][w] for w < W, rows being the contiguous W-wide rows of `rows`.
#[inline(always)]
fn panel(a: &[f32], rows: &[f32], out: &mut [f32]) {
    let mut acc = [0.0f32; W];
    acc.copy_from_slice(&out[..W]);
    for (&ai, row) in a.iter().zip(rows.chunks_exact(W)) {
        for w in 0..W {
            acc[w] += ai * row[w];
        }
    }
    out[..W].copy_from_slice(&acc);
}

/// Read-only inputs shared by all tasks of a call (unused ones are empty).
pub(super) struct Inputs<'a> {
    sh: Shape,
    q: &'a [f32],
    dout: &'a [f32],
    /// [H, T] (backward only).
    lse: &'a [f32],
    /// [H, T] (backward only).
    delta: &'a [f32],
    packed: &'a Packed,
}

impl<'a> Inputs<'a> {
    pub(super) fn new(
        sh: &Shape,
        q: &'a [f32],
        dout: &'a [f32],
        lse: &'a [f32],
        delta: &'a [f32],
        packed: &'a Packed,
    ) -> Self {
        Inputs { sh: *sh, q, dout, lse, delta, packed }
    }

    /// Row t of head h in a [T, H, hd] tensor.
    #[inline(always)]
    fn row<'b>(&self, x: &'b [f32], t: usize, h: usize) -> &'b [f32] {
        let hd = self.sh.head_dim;
        &x[(t * self.sh.heads + h) * hd..][..hd]
    }

    /// Key panel p of kv head g in a key-panel packing: hd rows of W.
    #[inline(always)]
    fn key_panel<'b>(&self, packed: &'b [f32], g: usize, p: usize) -> &'b [f32] {
        let size = self.sh.head_dim * W;
        &packed[(g * self.sh.key_panels() + p) * size..][..size]
    }

    /// Feature panel f of head h in a feature-panel packing of `rows` rows, from row r0 on.
    #[inline(always)]
    fn feature_panel<'b>(&self, packed: &'b [f32], rows: usize, h: usize, f: usize, r0: usize) -> &'b [f32] {
        &packed[((h * self.sh.feature_panels() + f) * rows + r0) * W..]
    }

    /// Scores of query rows t0..t0 + rows of head h against key panels p0..p0 + panels (only the panels
    /// a row sees; the rest of its row of s is left alone): s[r * stride + p * W + w] = x_(t0+r) · k_j for
    /// key j = (p0 + p) W + w. Panels and slices of features are the outer loops so that the slice of a
    /// key panel in use stays in L1 while every row meets it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn block_scores(
        &self,
        x: &[f32],
        packed: &[f32],
        h: usize,
        (t0, rows): (usize, usize),
        (p0, panels): (usize, usize),
        s: &mut [f32],
        stride: usize,
    ) {
        let sh = self.sh;
        let g = sh.group(h);
        for p in 0..panels {
            let keys = self.key_panel(packed, g, p0 + p);
            // Row r sees key j when j <= q_offset + t0 + r.
            let first = ((p0 + p) * W).saturating_sub(sh.q_offset + t0);
            for r in first..rows {
                s[r * stride + p * W..][..W].fill(0.0);
            }
            for d0 in (0..sh.head_dim).step_by(PANEL_DEPTH) {
                let d1 = sh.head_dim.min(d0 + PANEL_DEPTH);
                for r in first..rows {
                    let a = &self.row(x, t0 + r, h)[d0..d1];
                    panel(a, &keys[d0 * W..], &mut s[r * stride + p * W..]);
                }
            }
        }
    }

    /// acc[r][..fw] = Σ_j a[r][j] x_j over the keys row r sees, x being the rows of kv head g in a feature
    /// packing. Keys go in chunks of W so that a chunk of x stays in L1 while every row meets it; the order
    /// of each sum is the same as without chunks.
    #[inline(always)]
    fn block_weighted(&self, a: &[f32], packed: &[f32], h: usize, t0: usize, rows: usize, acc: &mut [f32]) {
        let sh = self.sh;
        let (g, l, stride, fw) = (sh.group(h), sh.visible(), sh.key_panels() * W, sh.feature_panels() * W);
        acc[..rows * fw].fill(0.0);
        let last = sh.q_offset + t0 + rows;
        for c in (0..last).step_by(W) {
            for f in 0..sh.feature_panels() {
                let x = self.feature_panel(packed, l, g, f, c);
                for r in 0..rows {
                    let n = sh.q_offset + t0 + r + 1;
                    if c < n {
                        let a_r = &a[r * stride + c..r * stride + n.min(c + W)];
                        panel(a_r, x, &mut acc[r * fw + f * W..]);
                    }
                }
            }
        }
    }
}

/// Per-task scratch of `forward_rows` and `dq_rows`, for up to `rows` query rows.
pub(super) struct RowScratch {
    /// Scores (then probabilities or ds) per row: [rows][padded keys].
    s: Vec<f32>,
    /// dp per row, like s.
    dp: Vec<f32>,
    /// Output rows padded to whole feature panels: [rows][feature panels × W].
    acc: Vec<f32>,
}

impl RowScratch {
    pub(super) fn new(sh: &Shape, rows: usize) -> Self {
        let keys = sh.key_panels() * W;
        let fw = sh.feature_panels() * W;
        RowScratch { s: vec![0.0; rows * keys], dp: vec![0.0; rows * keys], acc: vec![0.0; rows * fw] }
    }
}

/// Per-task scratch of `dkdv_block`.
pub(super) struct BlockScratch {
    /// Scores, then p, of a chunk of rows: [row][block keys].
    s: Vec<f32>,
    /// dp, then ds, like s.
    dp: Vec<f32>,
    /// p, transposed: [key][row of the chunk], zero where masked.
    pt: Vec<f32>,
    /// ds, transposed like pt.
    dst: Vec<f32>,
    /// dk, dv of the block, rows padded to whole feature panels.
    dk: Vec<f32>,
    dv: Vec<f32>,
}

impl BlockScratch {
    pub(super) fn new(sh: &Shape, keys: usize) -> Self {
        let keys = keys.next_multiple_of(W);
        let fw = sh.feature_panels() * W;
        BlockScratch {
            s: vec![0.0; ROW_CHUNK * keys],
            dp: vec![0.0; ROW_CHUNK * keys],
            pt: vec![0.0; keys * ROW_CHUNK],
            dst: vec![0.0; keys * ROW_CHUNK],
            dk: vec![0.0; keys * fw],
            dv: vec![0.0; keys * fw],
        }
    }
}

on_path!(pub(super) fn forward_rows(inp: &Inputs<'_>, h: usize, t0: usize, o: &mut [f32], lse: &mut [f32], scratch: &mut RowScratch) = forward_rows_body);
on_path!(pub(super) fn row_dots(sh: &Shape, h: usize, a: &[f32], b: &[f32], out: &mut [f32]) = row_dots_body);
on_path!(pub(super) fn dkdv_block(inp: &Inputs<'_>, g: usize, j0: usize, dk: &mut [f32], dv: &mut [f32], scratch: &mut BlockScratch) = dkdv_block_body);
on_path!(pub(super) fn dq_rows(inp: &Inputs<'_>, h: usize, t0: usize, dq: &mut [f32], scratch: &mut RowScratch) = dq_rows_body);

/// Rows t0.. of head h (as many as o holds): o rows [rows][hd] and their lse.
#[inline(always)]
fn forward_rows_body(
    inp: &Inputs<'_>,
    h: usize,
    t0: usize,
    o: &mut [f32],
    lse: &mut [f32],
    scratch: &mut RowScratch,
) {
    let sh = inp.sh;
    let (hd, sc) = (sh.head_dim, sh.scale());
    let (stride, fw, rows) = (sh.key_panels() * W, sh.feature_panels() * W, lse.len());
    let RowScratch { s, acc, .. } = scratch;
    let panels = (sh.q_offset + t0 + rows).div_ceil(W);
    inp.block_scores(inp.q, &inp.packed.k_keys, h, (t0, rows), (0, panels), s, stride);
    let mut totals = [0.0f32; super::ROWS];
    for (r, lse_t) in lse.iter_mut().enumerate() {
        let s = &mut s[r * stride..][..sh.q_offset + t0 + r + 1];
        for x in s.iter_mut() {
            *x *= sc;
        }
        let m = max(s);
        for x in s.iter_mut() {
            *x = exp(*x - m);
        }
        totals[r] = sum(s);
        *lse_t = m + totals[r].ln();
    }
    inp.block_weighted(s, &inp.packed.v_features, h, t0, rows, acc);
    for (r, o_t) in o.chunks_exact_mut(hd).enumerate() {
        let inv = 1.0 / totals[r];
        for (od, &ad) in o_t.iter_mut().zip(&acc[r * fw..]) {
            *od = ad * inv;
        }
    }
}

/// out[t] = a_t · b_t for the rows of head h in two [T, H, hd] tensors.
#[inline(always)]
fn row_dots_body(sh: &Shape, h: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    let hd = sh.head_dim;
    for (t, out_t) in out.iter_mut().enumerate() {
        let at = (t * sh.heads + h) * hd;
        *out_t = dot(&a[at..at + hd], &b[at..at + hd]);
    }
}

/// dk, dv rows for keys j0..j0 + n of kv head g (n = dk.len() / hd; j0 a multiple of W), summed over the
/// group's query heads and every row that sees those keys. Per chunk of rows, p and ds are stored
/// transposed ([key][row], zero where masked) so each dk, dv row is a weighted sum of q or dout rows.
#[inline(always)]
fn dkdv_block_body(
    inp: &Inputs<'_>,
    g: usize,
    j0: usize,
    dk: &mut [f32],
    dv: &mut [f32],
    scratch: &mut BlockScratch,
) {
    let sh = inp.sh;
    let (hd, t_all, sc) = (sh.head_dim, sh.tokens, sh.scale());
    let fw = sh.feature_panels() * W;
    let nb = dk.len() / hd;
    let (p0, panels) = (j0 / W, nb.div_ceil(W));
    let kstride = panels * W;
    let group = sh.heads / sh.kv_heads;
    let BlockScratch { s, dp, pt, dst, dk: dk_acc, dv: dv_acc } = scratch;
    dk_acc[..nb * fw].fill(0.0);
    dv_acc[..nb * fw].fill(0.0);
    let packed = inp.packed;
    for h in g * group..(g + 1) * group {
        // Row t sees key j when j <= q_offset + t.
        let first = j0.saturating_sub(sh.q_offset);
        for ta in (first..t_all).step_by(ROW_CHUNK) {
            let rows = ROW_CHUNK.min(t_all - ta);
            inp.block_scores(inp.q, &packed.k_keys, h, (ta, rows), (p0, panels), s, kstride);
            inp.block_scores(inp.dout, &packed.v_keys, h, (ta, rows), (p0, panels), dp, kstride);
            for r in 0..rows {
                let t = ta + r;
                let n = nb.min(sh.q_offset + t + 1 - j0);
                let (lse_t, delta_t) = (inp.lse[h * t_all + t], inp.delta[h * t_all + t]);
                let (s, dp) = (&mut s[r * kstride..][..nb], &mut dp[r * kstride..][..nb]);
                // p and ds in place of s and dp (a vectorised pass: masked keys select 0), then stored
                // transposed.
                for (jj, (sj, dpj)) in s.iter_mut().zip(dp.iter_mut()).enumerate() {
                    let p = if jj < n { exp(*sj * sc - lse_t) } else { 0.0 };
                    *sj = p;
                    *dpj = p * (*dpj - delta_t);
                }
                for jj in 0..nb {
                    pt[jj * ROW_CHUNK + r] = s[jj];
                    dst[jj * ROW_CHUNK + r] = dp[jj];
                }
            }
            // One panel of dout (then q) rows at a time, reused by every key of the block from L1.
            for f in 0..sh.feature_panels() {
                let dout_rows = inp.feature_panel(&packed.dout_features, t_all, h, f, ta);
                for jj in 0..nb {
                    panel(&pt[jj * ROW_CHUNK..][..rows], dout_rows, &mut dv_acc[jj * fw + f * W..]);
                }
                let q_rows = inp.feature_panel(&packed.q_features, t_all, h, f, ta);
                for jj in 0..nb {
                    panel(&dst[jj * ROW_CHUNK..][..rows], q_rows, &mut dk_acc[jj * fw + f * W..]);
                }
            }
        }
    }
    for jj in 0..nb {
        for d in 0..hd {
            dk[jj * hd + d] = dk_acc[jj * fw + d] * sc;
            dv[jj * hd + d] = dv_acc[jj * fw + d];
        }
    }
}

/// dq rows t0.. of head h (as many as dq holds, [rows][hd]).
#[inline(always)]
fn dq_rows_body(inp: &Inputs<'_>, h: usize, t0: usize, dq: &mut [f32], scratch: &mut RowScratch) {
    let sh = inp.sh;
    let (hd, sc) = (sh.head_dim, sh.scale());
    let (stride, fw, rows) = (sh.key_panels() * W, sh.feature_panels() * W, dq.len() / hd);
    let RowScratch { s, dp, acc } = scratch;
    let packed = inp.packed;
    let panels = (sh.q_offset + t0 + rows).div_ceil(W);
    inp.block_scores(inp.q, &packed.k_keys, h, (t0, rows), (0, panels), s, stride);
    inp.block_scores(inp.dout, &packed.v_keys, h, (t0, rows), (0, panels), dp, stride);
    for r in 0..rows {
        let t = t0 + r;
        let n = sh.q_offset + t + 1;
        let (lse_t, delta_t) = (inp.lse[h * sh.tokens + t], inp.delta[h * sh.tokens + t]);
        // s becomes ds in place.
        for (sj, &dpj) in s[r * stride..][..n].iter_mut().zip(&dp[r * stride..][..n]) {
            *sj = exp(*sj * sc - lse_t) * (dpj - delta_t);
        }
    }
    inp.block_weighted(s, &packed.k_features, h, t0, rows, acc);
    for (r, dq_t) in dq.chunks_exact_mut(hd).enumerate() {
        for (dqd, &ad) in dq_t.iter_mut().zip(&acc[r * fw..]) {
            *dqd = ad * sc;
        }
    }
}
