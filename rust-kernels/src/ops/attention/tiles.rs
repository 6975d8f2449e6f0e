//! The work of one attention task, written once over the micro-kernel (`on_micro!` builds it with the plain
//! tile and with the AVX2 one).
//!
//! Notation per query row t of head h: s_j = scale · q_t·k_j (scores), p_j = exp(s_j − lse_t)
//! (probabilities), dp_j = dout_t·v_j, ds_j = p_j (dp_j − delta_t) with delta_t = dout_t·o_t. Then
//! dq_t = scale Σ_j ds_j k_j, dk_j = scale Σ_t ds_j q_t and dv_j = Σ_t p_j dout_t, the sums over t running
//! over every query head of the group.

use super::micro::{on_micro, Acc, Micro, Out, Panel, Panels, Rows, MR, NR, ZERO};
use super::{Shape, KEYS};

/// Read-only operands of a forward call.
pub(super) struct Forward<'a> {
    pub sh: Shape,
    /// [T, H, hd] as given.
    pub q: &'a [f32],
    /// k as [Hkv][key panel][hd][NR].
    pub kt: &'a [f32],
    /// v as [Hkv][feature panel][visible key][NR].
    pub vf: &'a [f32],
}

/// Read-only operands of one chunk of a backward call.
pub(super) struct Backward<'a> {
    pub sh: Shape,
    /// [T, H, hd] as given.
    pub q: &'a [f32],
    pub dout: &'a [f32],
    /// k, v as [Hkv][key panel][hd][NR].
    pub kt: &'a [f32],
    pub vt: &'a [f32],
    /// k as [Hkv][feature panel][visible key][NR].
    pub kf: &'a [f32],
    /// q, dout as [H][feature panel][T][NR].
    pub qf: &'a [f32],
    pub doutf: &'a [f32],
    /// [H, T].
    pub lse: &'a [f32],
    /// [T, H].
    pub delta: &'a [f32],
    /// Group rows per (kv head, key block) in the ds buffer.
    pub ds_rows: usize,
    /// The chunk: query tokens t0..t1.
    pub tokens: (usize, usize),
}

/// Six group rows of kv head g from m0 on. Rows past the last group row repeat it (computed, never stored).
struct RowTile {
    /// Group row, token and query head of each row.
    m: [usize; MR],
    t: [usize; MR],
    h: [usize; MR],
    /// Rows before `end`: the ones that are stored.
    valid: usize,
}

impl RowTile {
    #[inline(always)]
    fn new(sh: &Shape, g: usize, m0: usize, end: usize) -> Self {
        let group = sh.group();
        let m: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(sh.group_rows() - 1));
        RowTile {
            m,
            t: m.map(|m| m / group),
            h: m.map(|m| g * group + m % group),
            valid: end.min(m0 + MR) - m0,
        }
    }

    /// Where each row starts in a [T, H, hd] tensor.
    #[inline(always)]
    fn at(&self, sh: &Shape) -> [usize; MR] {
        std::array::from_fn(|r| (self.t[r] * sh.heads + self.h[r]) * sh.head_dim)
    }

    /// Keys the last row sees (rows are in token order, so no row sees more).
    #[inline(always)]
    fn keys(&self, sh: &Shape) -> usize {
        sh.q_offset + self.t[MR - 1] + 1
    }
}

/// Σ lanes, halves added pairwise (the order of `micro::Micro::dot`).
#[inline(always)]
fn lane_sum(lanes: [f32; NR]) -> f32 {
    let half: [f32; 8] = std::array::from_fn(|l| lanes[l] + lanes[l + 8]);
    let quarter: [f32; 4] = std::array::from_fn(|l| half[l] + half[l + 4]);
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

/// Tile n of a buffer of MR × NR tiles.
#[inline(always)]
fn tile_mut(buf: &mut [f32], n: usize) -> &mut Acc {
    let (tiles, _) = buf.as_chunks_mut::<NR>();
    (&mut tiles[n * MR..][..MR]).try_into().expect("whole tile")
}

on_micro!(pub(super) fn forward_block(inp: &Forward<'_>, t0: usize, o: &mut [f32], lse: &mut [f32], scores: &mut [f32]) = forward_block_body);
on_micro!(pub(super) fn dkdv_block(inp: &Backward<'_>, g: usize, block: usize, dk: &mut [f32], dv: &mut [f32], ds: &mut [f32], p: &mut [f32]) = dkdv_block_body);
on_micro!(pub(super) fn dq_block(inp: &Backward<'_>, ds: &[f32], t0: usize, dq: &mut [f32]) = dq_block_body);
on_micro!(pub(super) fn row_dots(hd: usize, a: &[f32], b: &[f32], out: &mut [f32]) = row_dots_body);
on_micro!(pub(super) fn key_panel(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]) = key_panel_body);

#[inline(always)]
unsafe fn key_panel_body<M: Micro>(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]) {
    M::key_panel(src, rows, out)
}

/// Tokens t0.. (as many as o holds, [tokens, H, hd]) of every head: o and lse by token ([tokens, H]).
/// `scores` holds MR rows of scores over the visible keys.
#[inline(always)]
unsafe fn forward_block_body<M: Micro>(
    inp: &Forward<'_>,
    t0: usize,
    o: &mut [f32],
    lse: &mut [f32],
    scores: &mut [f32],
) {
    let sh = inp.sh;
    let (hd, sc, group) = (sh.head_dim, sh.scale(), sh.group());
    let (stride, row_len) = (sh.key_panels() * NR, sh.heads * hd);
    let tokens = o.len() / row_len;
    for g in 0..sh.kv_heads {
        let end = (t0 + tokens) * group;
        for m0 in (t0 * group..end).step_by(MR) {
            let tile = RowTile::new(&sh, g, m0, end);
            let n = tile.keys(&sh);
            // Scaled scores against every panel the last row sees, one strip of tiles.
            let panels = n.div_ceil(NR);
            let keys = Panels {
                data: inp.kt,
                at: g * sh.key_panels() * hd * NR,
                step: NR,
                panel_step: hd * NR,
                count: panels,
                last_width: NR,
            };
            let rows: [usize; MR] = std::array::from_fn(|r| r * stride);
            let out = Out { data: &mut *scores, rows, count: MR, scale: [sc; MR] };
            M::strip(hd, Rows { data: inp.q, rows: tile.at(&sh), step: 1 }, keys, out);
            // Keys before a row's window: −∞ into the softmax (its maximum comes from the window), and 0
            // after it (the clamped exp leaves ~1e-38, which a sum of at least 1 absorbs but p·v would not).
            let before = tile.t.map(|t| sh.first_key(sh.q_offset + t));
            for r in 0..MR {
                scores[rows[r]..][..before[r]].fill(f32::NEG_INFINITY);
            }
            // Softmax numerators in place; keys a row does not see become 0.
            let seen = tile.t.map(|t| sh.q_offset + t + 1);
            let (maxima, lanes) = M::softmax_rows(scores, rows, panels, seen);
            for r in 0..MR {
                scores[rows[r]..][..before[r]].fill(0.0);
            }
            let (mut inv, mut lse_r) = ([0.0f32; MR], [0.0f32; MR]);
            for r in 0..MR {
                let total = lane_sum(lanes[r]);
                inv[r] = 1.0 / total;
                lse_r[r] = maxima[r] + total.ln();
            }
            // o = p v / total, one strip of feature panels.
            let (fp, l) = (sh.feature_panels(), sh.visible());
            let values = Panels {
                data: inp.vf,
                at: g * fp * l * NR,
                step: NR,
                panel_step: l * NR,
                count: fp,
                last_width: sh.panel_width(fp - 1),
            };
            let rows: [usize; MR] = std::array::from_fn(|r| (tile.t[r] - t0) * row_len + tile.h[r] * hd);
            let out = Out { data: o, rows, count: tile.valid, scale: inv };
            M::strip(
                n,
                Rows { data: scores, rows: std::array::from_fn(|r| r * stride), step: 1 },
                values,
                out,
            );
            for r in 0..tile.valid {
                lse[(tile.t[r] - t0) * sh.heads + tile.h[r]] = lse_r[r];
            }
        }
    }
}

/// out[i] = a_i · b_i for consecutive rows of hd floats.
#[inline(always)]
unsafe fn row_dots_body<M: Micro>(hd: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((out_i, a_i), b_i) in out.iter_mut().zip(a.chunks_exact(hd)).zip(b.chunks_exact(hd)) {
        *out_i = M::dot(a_i, b_i);
    }
}

/// Keys block·KEYS.. of kv head g against the chunk's rows that see them: adds to the block's dk, dv sums
/// (MR × NR tiles [key tile][feature panel], unscaled; zeroed by the first chunk) and writes its ds
/// ([ds_rows][KEYS], group rows from the chunk's first). `p` is scratch for the probabilities of one step.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dkdv_block_body<M: Micro>(
    inp: &Backward<'_>,
    g: usize,
    block: usize,
    dk: &mut [f32],
    dv: &mut [f32],
    ds: &mut [f32],
    p: &mut [f32],
) {
    let sh = inp.sh;
    let (hd, sc, group, fp) = (sh.head_dim, sh.scale(), sh.group(), sh.feature_panels());
    let (t0, t1) = inp.tokens;
    if t0 == 0 {
        dk.fill(0.0);
        dv.fill(0.0);
    }
    let j0 = block * KEYS;
    let nk = KEYS.min(sh.visible() - j0);
    if j0 >= sh.q_offset + t1 {
        return; // no row of the chunk sees these keys
    }
    // The first token that sees key j.
    let first_token = |j: usize| j.saturating_sub(sh.q_offset);
    let base = t0 * group; // ds row 0
    let step = sh.chunk_tokens();
    let panel0 = g * sh.key_panels() + j0 / NR;
    // Steps start on multiples of `step` tokens whatever the chunk, so every chunking sums in one order.
    for s0 in (t0.max(first_token(j0) / step * step)..t1).step_by(step) {
        let s1 = t1.min(s0 + step);
        // p and ds of the step's rows against the block, a row tile by a key panel at a time, from the tile
        // of the first row that sees the block.
        let first_row = (s0 * group).max(first_token(j0) * group / MR * MR);
        for m0 in (first_row..s1 * group).step_by(MR) {
            let tile = RowTile::new(&sh, g, m0, sh.group_rows());
            let last = tile.keys(&sh) - 1;
            let at = tile.at(&sh);
            let q_rows = Rows { data: inp.q, rows: at, step: 1 };
            let dout_rows = Rows { data: inp.dout, rows: at, step: 1 };
            let lse: [f32; MR] = std::array::from_fn(|r| inp.lse[tile.h[r] * sh.tokens + tile.t[r]]);
            let delta: [f32; MR] = std::array::from_fn(|r| inp.delta[tile.t[r] * sh.heads + tile.h[r]]);
            for pp in 0..nk.div_ceil(NR) {
                let jp = j0 + pp * NR;
                let (mut s, mut dp) = (ZERO, ZERO);
                if jp <= last {
                    let at = (panel0 + pp) * hd * NR;
                    M::tile(hd, q_rows, Panel { data: inp.kt, at, step: NR, width: NR }, &mut s);
                    M::tile(hd, dout_rows, Panel { data: inp.vt, at, step: NR, width: NR }, &mut dp);
                    // Columns below `seen` are keys row r sees (none for rows past the last).
                    let seen: [i32; MR] = std::array::from_fn(|r| {
                        if r < tile.valid {
                            (sh.q_offset + tile.t[r] + 1) as i32 - jp as i32
                        } else {
                            0
                        }
                    });
                    M::probabilities(&mut s, &mut dp, sc, lse, delta, seen);
                    // Keys before a row's window take no probability and pass no gradient.
                    for r in 0..tile.valid {
                        let before = sh.first_key(sh.q_offset + tile.t[r]).saturating_sub(jp).min(NR);
                        s[r][..before].fill(0.0);
                        dp[r][..before].fill(0.0);
                    }
                }
                for r in 0..MR {
                    p[(m0 - s0 * group + r) * KEYS + pp * NR..][..NR].copy_from_slice(&s[r]);
                    ds[(m0 - base + r) * KEYS + pp * NR..][..NR].copy_from_slice(&dp[r]);
                }
            }
        }
        // dv += pᵀ dout, dk += dsᵀ q: MR keys by NR features, over the tokens from the first that sees them,
        // one head of the group at a time (so both operands have fixed strides).
        for u in 0..nk.div_ceil(MR) {
            let first = s0.max(first_token(j0 + u * MR));
            if first >= s1 {
                continue;
            }
            for hh in 0..group {
                let row = first * group + hh;
                let p_cols = Rows {
                    data: p,
                    rows: std::array::from_fn(|i| (row - s0 * group) * KEYS + u * MR + i),
                    step: group * KEYS,
                };
                let ds_cols = Rows {
                    data: ds,
                    rows: std::array::from_fn(|i| (row - base) * KEYS + u * MR + i),
                    step: group * KEYS,
                };
                for f in 0..fp {
                    let at = (((g * group + hh) * fp + f) * sh.tokens + first) * NR;
                    let dout_rows = Panel { data: inp.doutf, at, step: NR, width: NR };
                    M::tile(s1 - first, p_cols, dout_rows, tile_mut(dv, u * fp + f));
                    let q_rows = Panel { data: inp.qf, at, step: NR, width: NR };
                    M::tile(s1 - first, ds_cols, q_rows, tile_mut(dk, u * fp + f));
                }
            }
        }
    }
}

/// dq of tokens t0.. (as many as dq holds, [tokens, H, hd]; t0 inside the chunk) from the chunk's ds.
#[inline(always)]
unsafe fn dq_block_body<M: Micro>(inp: &Backward<'_>, ds: &[f32], t0: usize, dq: &mut [f32]) {
    let sh = inp.sh;
    let (hd, sc, group) = (sh.head_dim, sh.scale(), sh.group());
    let row_len = sh.heads * hd;
    let tokens = dq.len() / row_len;
    let base = inp.tokens.0 * group;
    for g in 0..sh.kv_heads {
        let end = (t0 + tokens) * group;
        for m0 in (t0 * group..end).step_by(MR) {
            let tile = RowTile::new(&sh, g, m0, end);
            let n = tile.keys(&sh);
            for f in 0..sh.feature_panels() {
                let width = sh.panel_width(f);
                let mut acc = ZERO;
                for block in 0..n.div_ceil(KEYS) {
                    let at = (g * sh.key_blocks() + block) * inp.ds_rows * KEYS;
                    let ds_rows = Rows { data: ds, rows: tile.m.map(|m| at + (m - base) * KEYS), step: 1 };
                    let at = ((g * sh.feature_panels() + f) * sh.visible() + block * KEYS) * NR;
                    let keys = Panel { data: inp.kf, at, step: NR, width: NR };
                    M::tile(KEYS.min(n - block * KEYS), ds_rows, keys, &mut acc);
                }
                for (r, acc_r) in acc.iter().enumerate().take(tile.valid) {
                    let at = (tile.t[r] - t0) * row_len + tile.h[r] * hd + f * NR;
                    for (x, &a) in dq[at..at + width].iter_mut().zip(acc_r) {
                        *x = a * sc;
                    }
                }
            }
        }
    }
}
