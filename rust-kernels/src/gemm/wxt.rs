//! The weight-natural f32 nest: `C[m, n] = alpha · A[m, k] · B[k, n] + beta · C` run as `Cᵀ = Bᵀ · Aᵀ`,
//! for products of activation rows A (few: a batch of tokens) with a big B (a weight). B's elements are the
//! broadcast side of the micro-kernel (`wxt_kernel.rs`), read where they lie: the forward's `X · Wᵀ` reads
//! W's rows in place (dense) or decodes them per block with no transpose (NF4, bf16); the backward's `dY · W`
//! packs W's rows into MR-wide panels (a copy, or NF4 decoded straight into them). A is transposed into
//! NR-wide panels once per call and shared by the workers. The `Cᵀ` tiles collect in a per-worker scratch
//! (weight outputs × rows) that is merged, transposed, into C once per block of outputs.
//!
//! Why: at M = 256 each weight element feeds only M / 16 vector FMAs, so the BLIS nest's transposing and
//! packing of the weight (`driver.rs`) cost ~10 % of the product; here the weight costs a broadcast load.
//!
//! Loop nest, per block of `MB` activation rows (packed once, by all workers):
//! - threads: each worker its own share of B's columns (the weight's outputs: no weight element decoded
//!   twice), or of the row panels when B is too narrow to share;
//!   - loop over blocks of `NB` outputs, with the scratch `Cᵀ` (`NB × MB`, in L2);
//!     - loop over depth blocks of `KC` (the first writes the scratch, the rest add to it): B's block in
//!       place, decoded, or packed;
//!       - loop over MR-row sub-panels of the block (in L1), then over NR-wide row panels of A (streamed from
//!         L2): the micro-kernel;
//!     - a low-rank tail (LoRA) as one more depth block of the same kind, B read in place;
//!   - merge the scratch into C with alpha and beta, transposed.

use super::blocking::{balanced, split_weight_natural, WeightShare as Share};
use super::driver::Tail;
use super::pack::{aligned, transpose_into, PackB, PackCtx, Strided, Weight};
use super::wxt_kernel::{tile_of, TileFn, TileShape, MAX_MR};
use super::SharedOut;
use crate::dispatch::Kernel;
use crate::report::{Family, Route};
use rayon::prelude::*;
use std::cell::RefCell;

/// Activation rows per packed block.
const MB: usize = 256;
/// Depth per block: an NR-wide panel of A (32 × 256 floats, 32 KiB) streams from L2 while a sub-panel of B
/// stays in L1.
const KC: usize = 256;
/// Weight outputs per scratch block (`NB × MB` floats, 256 KiB).
const NB: usize = 256;

/// Weights smaller than this (elements) keep the BLIS nest: they stay in the caches, so packing them costs
/// little, while this nest's fixed costs (X transposed per call, `Cᵀ` merged) weigh more on a short product
/// (SmolLM2's 576-wide layers, two threads: AVX2 3–15 points slower here, AVX-512 about even).
const MIN_WEIGHT: usize = 1 << 22;

/// Whether a product of activation rows with a `k × n` weight runs here.
pub fn pays(n: usize, k: usize) -> bool {
    n.saturating_mul(k) >= MIN_WEIGHT
}

/// Whether the backward (`dY · W`, B = W row-major) runs here on `kernel`: W must be packed into MR-wide
/// panels for it, which pays on AVX2 (one thread, 7B shapes, M = 256, share of the FMA peak by CPU time:
/// dense 63 → 69 %, NF4 74 → 82 %) but not on AVX-512 (dense 53 → 54 %, NF4 70 → 67 %), whose faster
/// micro-kernel leaves the packing a larger share; there the BLIS nest keeps it.
pub fn runs_backward(kernel: Kernel) -> bool {
    kernel != Kernel::Avx512
}

/// Where B's columns (the broadcast rows) come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Read in place: element (p, j) of B at `data[p · rs + j · cs]` (W's rows when B = Wᵀ).
    InPlace(Strided<'a>),
    /// B = Wᵀ for a weight W `[n, k]`: W's rows decoded per block, as rows.
    WeightRows(&'a dyn Weight),
    /// B = W for a weight W `[k, n]` (the backward): each W row decoded whole, then cut into MR-wide panels.
    WeightPanels(&'a dyn Weight),
    /// Anything else, packed per block into MR-wide panels (B = W row-major, dense).
    Panels(&'a dyn PackB),
}

/// A product for this nest; `tail` as in `driver.rs` (its B is read in place).
pub struct Problem<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Strided<'a>,
    pub b: Source<'a>,
    pub alpha: f32,
    pub beta: f32,
    pub ldc: usize,
    pub tail: Option<Tail<'a>>,
}

thread_local! {
    /// On the calling thread: A's packed panels and the tail's.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// Per worker: B's block (decoded or packed), the scratch `Cᵀ`, the packer's scratch.
    static WORKER: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Runs the product with `threads` workers.
///
/// # Safety
/// `c` holds `(m - 1) * ldc + n` floats not aliased by A or B; `alpha` is 1 when there is a tail (the tail
/// carries its own scale into the scratch).
pub unsafe fn run(p: &Problem, c: *mut f32, kernel: Kernel, threads: usize) {
    if p.m == 0 || p.n == 0 {
        return;
    }
    debug_assert!(p.tail.is_none() || p.alpha == 1.0);
    crate::report::note(Family::GemmF32, Route::of_kernel(kernel));
    let (shape, tile) = tile_of(kernel);
    let ctx = PackCtx { kernel, map: *crate::nf4::codebook::dynamic_map() };
    let kc_step = balanced(p.k, KC, 16);
    let c = SharedOut(c);
    PACKED.with(|cell| {
        let (abuf, tbuf) = &mut *cell.borrow_mut();
        crate::threads::pool().install(|| {
            for i0 in (0..p.m).step_by(MB) {
                let mb = MB.min(p.m - i0);
                let panels = mb.div_ceil(shape.nr);
                let act = aligned(abuf, panels * shape.nr * p.k);
                pack_rows(kernel, &p.a, i0, mb, 0, p.k, kc_step, shape.nr, act);
                let act: &[f32] = act;
                let tact: &[f32] = match &p.tail {
                    Some(t) => {
                        let packed = aligned(tbuf, panels * shape.nr * t.k);
                        pack_rows(kernel, &t.a, i0, mb, 0, t.k, t.k.max(1), shape.nr, packed);
                        packed
                    }
                    None => &[],
                };
                let shares = split_weight_natural(panels, p.n, shape.mr, threads.max(1));
                shares.par_iter().with_max_len(1).for_each(|share| {
                    let c = c;
                    WORKER.with(|cell| {
                        let (wbuf, sbuf, scratch) = &mut *cell.borrow_mut();
                        let job =
                            Job { p, ctx: &ctx, shape, tile, act, tact, kc_step, i0, mb, share: *share };
                        job.run(wbuf, sbuf, scratch, c.0);
                    });
                });
            }
        });
    });
}

/// Packs rows `i0 .. i0 + mb` of A, depth `0 .. k`, into NR-wide panels: depth block d (of `kc_step`) at
/// `p0 · panels · nr`, panel t within it at `t · kc · nr`, each `kc × nr` (step p holds A[i0 + t·nr + j][p]),
/// zero padded past `mb`. The workers of the pool pack the panels in parallel.
#[allow(clippy::too_many_arguments)]
fn pack_rows(
    kernel: Kernel,
    a: &Strided,
    i0: usize,
    mb: usize,
    p_start: usize,
    k: usize,
    kc_step: usize,
    nr: usize,
    dst: &mut [f32],
) {
    let panels = mb.div_ceil(nr);
    let mut jobs: Vec<(usize, usize, usize, &mut [f32])> = Vec::new();
    let mut rest = dst;
    for p0 in (0..k).step_by(kc_step.max(1)) {
        let kc = kc_step.min(k - p0);
        for t in 0..panels {
            let (panel, tail) = rest.split_at_mut(kc * nr);
            rest = tail;
            jobs.push((p0, kc, t, panel));
        }
    }
    jobs.par_iter_mut().for_each(|(p0, kc, t, panel)| {
        let (p0, kc, first) = (*p0 + p_start, *kc, i0 + *t * nr);
        let rows = nr.min(i0 + mb - first);
        if a.cs == 1 {
            transpose_into(kernel, panel, nr, kc, rows, |r| &a.data[(first + r) * a.rs + p0..][..kc]);
        } else {
            for (p, step) in panel.chunks_exact_mut(nr).enumerate() {
                for (j, v) in step.iter_mut().enumerate() {
                    *v = if j < rows { a.data[(first + j) * a.rs + (p0 + p) * a.cs] } else { 0.0 };
                }
            }
        }
    });
}

/// One worker's share of one row block.
struct Job<'a> {
    p: &'a Problem<'a>,
    ctx: &'a PackCtx,
    shape: TileShape,
    tile: TileFn,
    act: &'a [f32],
    tact: &'a [f32],
    kc_step: usize,
    i0: usize,
    mb: usize,
    share: Share,
}

impl Job<'_> {
    unsafe fn run(&self, wbuf: &mut Vec<f32>, sbuf: &mut Vec<f32>, scratch: &mut Vec<f32>, c: *mut f32) {
        let (p, sh, mr, nr) = (self.p, self.share, self.shape.mr, self.shape.nr);
        let panels = self.mb.div_ceil(nr);
        let lds = panels * nr;
        let nb_step = NB;
        for j0 in (sh.n0..sh.n1).step_by(nb_step) {
            let nb = nb_step.min(sh.n1 - j0);
            let subs = nb.div_ceil(mr);
            let s = aligned(sbuf, subs * mr * lds);
            let mut written = false;
            for p0 in (0..p.k).step_by(self.kc_step) {
                let kc = self.kc_step.min(p.k - p0);
                let act = &self.act[p0 * lds..];
                let (base, rs, ps) = self.block(p.b, j0, nb, p0, kc, wbuf, scratch);
                // The block read after this one: its source is fetched into L2 while this one's tiles run.
                let next = if p0 + kc < p.k {
                    Some(Block { j0, nb, p0: p0 + kc, kc: self.kc_step.min(p.k - p0 - kc) })
                } else if j0 + nb < sh.n1 {
                    Some(Block {
                        j0: j0 + nb,
                        nb: nb_step.min(sh.n1 - j0 - nb),
                        p0: 0,
                        kc: self.kc_step.min(p.k),
                    })
                } else {
                    None
                };
                self.sweep(base, rs, ps, j0, subs, kc, act, s, lds, 1.0, written, next);
                written = true;
            }
            if let Some(t) = p.tail.filter(|t| t.k > 0) {
                let (base, rs, ps) = self.block(Source::InPlace(t.b), j0, nb, 0, t.k, wbuf, scratch);
                self.sweep(base, rs, ps, j0, subs, t.k, self.tact, s, lds, t.alpha, written, None);
                written = true;
            }
            if !written {
                s.fill(0.0);
            }
            let (m0, m1) = (sh.t0 * nr, (sh.t1 * nr).min(self.mb));
            let out = c.add((self.i0 + m0) * p.ldc + j0);
            merge_transposed(&s[m0..], lds, nb, m1 - m0, out, p.ldc, p.alpha, p.beta);
        }
    }

    /// B's block at depth `p0 .. p0 + kc`, outputs `j0 .. j0 + nb`, as broadcast rows: row r (counted from
    /// `j0`) at `base + r · rs`, step p at `+ p · ps`. Rows past the block may be any readable memory.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        source: Source,
        j0: usize,
        nb: usize,
        p0: usize,
        kc: usize,
        wbuf: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) -> (*const f32, usize, usize) {
        let mr = self.shape.mr;
        let padded = nb.div_ceil(mr) * mr;
        match source {
            Source::InPlace(b) => (b.data[p0 * b.rs + j0 * b.cs..].as_ptr(), b.cs, b.rs),
            Source::WeightRows(w) => {
                // Rows 64-byte aligned; the padding rows are zero.
                let stride = kc.div_ceil(16) * 16;
                let buf = aligned(wbuf, padded * stride);
                for r in 0..nb {
                    if r + PREFETCH_ROWS < nb {
                        w.prefetch((j0 + r + PREFETCH_ROWS) * w.cols() + p0, kc);
                    }
                    w.decode(self.ctx, (j0 + r) * w.cols() + p0, &mut buf[r * stride..][..kc]);
                }
                buf[nb * stride..].fill(0.0);
                (buf.as_ptr(), stride, 1)
            }
            Source::WeightPanels(w) => {
                // Decoding one long run per W row costs far less than a call per MR-wide piece.
                let buf = aligned(wbuf, padded * kc);
                // A few W rows at a time, so each sub-panel gets a contiguous run of steps.
                let rows = aligned(scratch, STEPS_AT_ONCE * padded);
                for q0 in (0..kc).step_by(STEPS_AT_ONCE) {
                    let steps = STEPS_AT_ONCE.min(kc - q0);
                    for (q, row) in rows.chunks_exact_mut(padded).take(steps).enumerate() {
                        let p = q0 + q;
                        if p + PREFETCH_ROWS < kc {
                            w.prefetch((p0 + p + PREFETCH_ROWS) * w.cols() + j0, nb);
                        }
                        w.decode(self.ctx, (p0 + p) * w.cols() + j0, &mut row[..nb]);
                        row[nb..].fill(0.0);
                    }
                    cut_into_panels(&rows[..steps * padded], padded, buf, mr, kc, q0);
                }
                (buf.as_ptr(), usize::MAX, mr)
            }
            Source::Panels(b) => {
                let buf = aligned(wbuf, padded * kc);
                b.pack(self.ctx, p0, kc, j0, nb, mr, buf, scratch);
                // Sub-panel i at i · mr · kc: row r of it is `+ r`, with steps mr apart.
                (buf.as_ptr(), usize::MAX, mr)
            }
        }
    }

    /// The micro-kernel over every sub-panel of the block × every row panel of the share.
    #[allow(clippy::too_many_arguments)]
    unsafe fn sweep(
        &self,
        base: *const f32,
        rs: usize,
        ps: usize,
        j0: usize,
        subs: usize,
        kc: usize,
        act: &[f32],
        s: &mut [f32],
        lds: usize,
        alpha: f32,
        accumulate: bool,
        next: Option<Block>,
    ) {
        let (mr, nr, sh) = (self.shape.mr, self.shape.nr, self.share);
        let parts = subs * (sh.t1 - sh.t0);
        let mut part = 0;
        let rows_of = |sub: usize| -> [*const f32; MAX_MR] {
            let mut rows = [base; MAX_MR];
            for (r, row) in rows.iter_mut().enumerate().take(mr) {
                *row = if rs == usize::MAX {
                    base.add(sub * mr * kc + r)
                } else {
                    // In place, rows past the weight's last repeat it (their results are never merged).
                    let last = self.p.n - 1 - j0;
                    base.add((sub * mr + r).min(last) * rs)
                };
            }
            rows
        };
        let mut call = |sub: usize, t: usize, rows: &[*const f32; MAX_MR]| {
            if let Some(b) = &next {
                self.prefetch(b, part, parts);
                part += 1;
            }
            let out = s.as_mut_ptr().add(sub * mr * lds + t * nr);
            (self.tile)(kc, rows.as_ptr(), ps, act.as_ptr().add(t * kc * nr), out, lds, alpha, accumulate);
        };
        // Sub-panel outer: its MR rows stay in L1 while the activation's panels stream from L2 (the other
        // order measured the same).
        for sub in 0..subs {
            let rows = rows_of(sub);
            for t in sh.t0..sh.t1 {
                call(sub, t, &rows);
            }
        }
    }
}

impl Job<'_> {
    /// Asks L2 for part `part` of `parts` of what reading block `b` of B will touch.
    fn prefetch(&self, b: &Block, part: usize, parts: usize) {
        let size = std::mem::size_of::<f32>();
        let rows = b.nb * part / parts..b.nb * (part + 1) / parts;
        match self.p.b {
            Source::InPlace(s) if s.rs == 1 => {
                for j in rows {
                    let at = s.data.as_ptr().wrapping_add((b.j0 + j) * s.cs + b.p0);
                    crate::simd::prefetch_run_l2(at as *const u8, b.kc * size);
                }
            }
            Source::InPlace(s) => {
                for p in b.kc * part / parts..b.kc * (part + 1) / parts {
                    let at = s.data.as_ptr().wrapping_add((b.p0 + p) * s.rs + b.j0 * s.cs);
                    crate::simd::prefetch_run_l2(at as *const u8, b.nb * size);
                }
            }
            Source::WeightRows(w) => {
                for j in rows {
                    w.prefetch_l2((b.j0 + j) * w.cols() + b.p0, b.kc);
                }
            }
            Source::WeightPanels(w) => {
                for p in b.kc * part / parts..b.kc * (part + 1) / parts {
                    w.prefetch_l2((b.p0 + p) * w.cols() + b.j0, b.nb);
                }
            }
            Source::Panels(pack) => pack.prefetch_block(b.p0, b.kc, b.j0, b.nb, part, parts),
        }
    }
}

/// W rows decoded per step of a panel block, before they are cut into panels.
const STEPS_AT_ONCE: usize = 8;

/// Steps `q0 ..` of every MR-wide panel: `rows` holds one decoded W row per step (`width` apart); piece
/// `sub` of each goes to `buf[sub · mr · kc + (q0 + q) · mr ..]`. Copies of a constant size (a run-time length
/// becomes a `memmove` call per piece: 17 % of the NF4 backward).
fn cut_into_panels(rows: &[f32], width: usize, buf: &mut [f32], mr: usize, kc: usize, q0: usize) {
    fn fixed<const MR: usize>(rows: &[f32], width: usize, buf: &mut [f32], kc: usize, q0: usize) {
        let steps = rows.len() / width;
        for sub in 0..width / MR {
            let panel = &mut buf[sub * MR * kc + q0 * MR..][..steps * MR];
            for (q, dst) in panel.chunks_exact_mut(MR).enumerate() {
                let dst: &mut [f32; MR] = dst.try_into().expect("MR values");
                *dst = *<&[f32; MR]>::try_from(&rows[q * width + sub * MR..][..MR]).expect("MR values");
            }
        }
    }
    match mr {
        8 => fixed::<8>(rows, width, buf, kc, q0),
        6 => fixed::<6>(rows, width, buf, kc, q0),
        4 => fixed::<4>(rows, width, buf, kc, q0),
        _ => {
            let steps = rows.len() / width;
            for sub in 0..width / mr {
                for q in 0..steps {
                    buf[sub * mr * kc + (q0 + q) * mr..][..mr]
                        .copy_from_slice(&rows[q * width + sub * mr..][..mr]);
                }
            }
        }
    }
}

/// A block of B: outputs `j0 .. j0 + nb` at depth `p0 .. p0 + kc`.
#[derive(Clone, Copy)]
struct Block {
    j0: usize,
    nb: usize,
    p0: usize,
    kc: usize,
}

/// How many weight rows ahead the row decoder prefetches (rows are short runs the hardware prefetcher misses).
const PREFETCH_ROWS: usize = 8;

/// `C[i, j] = alpha · S[j, i] + beta · C[i, j]` for `i < rows`, `j < nb` (beta 0 never reads C); S has row
/// stride `lds`. In 16 × 16 blocks, so both sides are read and written in whole cache lines.
#[allow(clippy::too_many_arguments)]
unsafe fn merge_transposed(
    s: &[f32],
    lds: usize,
    nb: usize,
    rows: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    const B: usize = 16;
    let mut block = [[0.0f32; B]; B];
    for i0 in (0..rows).step_by(B) {
        let iv = B.min(rows - i0);
        for j0 in (0..nb).step_by(B) {
            let jv = B.min(nb - j0);
            for (j, line) in block.iter_mut().enumerate().take(jv) {
                line[..iv].copy_from_slice(&s[(j0 + j) * lds + i0..][..iv]);
            }
            for i in 0..iv {
                let out = std::slice::from_raw_parts_mut(c.add((i0 + i) * ldc + j0), jv);
                for (j, o) in out.iter_mut().enumerate() {
                    let v = alpha * block[j][i];
                    *o = if beta == 0.0 { v } else { v + beta * *o };
                }
            }
        }
    }
}
