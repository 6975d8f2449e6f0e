//! The AMX loop nest for products with a frozen weight (NF4 or bf16), in the orientation that leaves the
//! weight in its natural layout, decoded once per row block straight into what the tiles read:
//! - forward `C = X · Wᵀ` runs as `Cᵀ = W · Xᵀ`: W is the A operand, whose tile rows are 32 consecutive depth
//!   values of one W row (a decoded run of W, no transpose); X is packed once per row block into pairs (the B
//!   operand), and each f32 tile of Cᵀ is transposed when merged into C.
//! - backward `dX = dY · W`: dY's rows in bf16 are the A operand; W is B, each tile row the pairs
//!   (W[2q, k], W[2q+1, k]) of two decoded W rows, interleaved in registers and stored once.
//!
//! Loop nest, per block of `MC` activation rows (packed once, shared by the workers):
//! - threads: each worker its own share of the weight's output dimension (so no weight is decoded twice), or
//!   of the rows when the weight is too narrow to share;
//!   - loop over blocks of `NB` weight outputs, with an f32 scratch C (`NB × MC`, in L2);
//!     - loop over depth blocks of `KC`: decode the weight's `NB × KC` block (in L2);
//!       - loop over 32-wide panels of the block (one stays in L1), then over 32-row tiles of the activation
//!         (streamed from L2): the 2 × 2 tile micro-kernel over the depth block, C in tiles;
//!   - merge the scratch into C with alpha and beta (transposed in the forward).
//!
//! A step costs ~31 ns with its operands in L1 and ~55 ns on average here (see `mod.rs`): what helps is
//! operands in L1 or L2, tiles whose rows are whole cache lines (buffers 64-byte aligned, each step's tiles
//! 2 KiB in a row), and few passes over C.

use super::{configure, release, tile_2x2, Stream, TilePair, TileQuad};
use crate::gemm::blocking::{balanced, split_weight_natural, WeightShare as Share};
use crate::gemm::driver::Tail;
use crate::gemm::native::Product;
use crate::gemm::pack::{PackCtx, Strided};
use crate::gemm::pairs::{interleave_rows, padded_pairs, pairs_from_run, PairB, PairWeight, Scratch};
use crate::gemm::SharedOut;
use rayon::prelude::*;
use std::cell::RefCell;

/// Most activation rows per block: every weight block decoded is used by this many rows.
const MC: usize = 512;
/// Rows per block: as few blocks as `MC` rows allow, then as even as whole tiles allow. Each block decodes
/// the whole weight again, so 309 rows in blocks of 256 + 53 ran 17–21 % slower than in one of 309 (320
/// padded) at 7B shapes; one block of 512 is as fast per FLOP as two of 256.
fn row_block(m: usize) -> usize {
    let blocks = m.div_ceil(MC);
    m.div_ceil(blocks).div_ceil(32) * 32
}
/// Depth per decoded block (a multiple of 32) and weight outputs per block (a multiple of 32). A short depth
/// keeps one operand's panel in L1 while the other streams from L2 (32 rows × 512 deep is 32 KiB), which pays
/// for the extra passes over C (measured at 7B shapes, M = 256, one thread, GFLOP/s fwd / bwd: KC 1024 with
/// NB 128 / 256: 820 / 789; KC 512 with NB 256 / 512: 951 / 826; KC 2048: lower still). With the streamed
/// operand loaded by `tileloaddt1`, NB 512 beat 256 by 3–6 % on k/v (each worker's share of 512 outputs is
/// one block, so X is read from L3 once) and by 0–2 % on the wider weights, 2 threads.
const KC: usize = 512;
const NB: usize = 512;
/// The backward's: wider column blocks make fewer, longer decoded runs per W row.
const BWD_KC: usize = 512;
const BWD_NB: usize = 512;
/// How many weight rows ahead the decoders prefetch (rows are short runs the hardware prefetcher misses).
const PREFETCH_ROWS: usize = 8;

thread_local! {
    /// Per worker: the decoded weight block, the scratch C, the decoders' scratch.
    static WORKER: RefCell<(Aligned, Aligned, Scratch)> = RefCell::new(Default::default());
    /// On the calling thread: the packed activation block, shared by the workers.
    static PACKED: RefCell<Aligned> = RefCell::new(Aligned::default());
}

/// Runs the product on AMX tiles with `threads` workers (`p.m`, `p.n`, `p.k` all positive), with `tail`
/// (`C += tail.alpha · A2 · B2`, a LoRA term) folded into the tiles as extra depth: `[A | alpha · A2]` times
/// `[B ; B2]`, its operands rounded to bf16 like the weight's and the activation's. At rank 16 that is one more
/// 32-deep step per tile call on the last depth block, where a pass of its own over C in f32 cost 5–10 % of a
/// 7B product.
///
/// # Safety
/// As `native::run` with `Unit::Amx`: `c` holds `(m - 1) * ldc + n` floats not aliased by A or B, and
/// `amx::os::enable_tiles()` succeeded; `p.alpha` is 1 when there is a tail, whose operands hold `m × tail.k`
/// and `tail.k × n` values.
pub unsafe fn run<B: PairB>(
    p: &Product<B>,
    tail: Option<&Tail>,
    c: *mut f32,
    ctx: &PackCtx,
    simd: bool,
    threads: usize,
) {
    let (w, forward) = p.b.weight();
    let tail = tail.filter(|t| t.k > 0);
    assert!(tail.is_none() || p.alpha == 1.0, "a folded low-rank term needs alpha 1");
    // Pairs of depth per activation row: the product's, then the term's (each padded to whole chunks).
    let kq = padded_pairs(p.k);
    let tail_pairs = tail.map_or(0, |t| padded_pairs(t.k));
    let c = SharedOut(c);
    PACKED.with(|cell| {
        let packed = &mut *cell.borrow_mut();
        crate::threads::pool().install(|| {
            let mc_step = row_block(p.m);
            for i0 in (0..p.m).step_by(mc_step) {
                let mc = mc_step.min(p.m - i0);
                let tiles = mc.div_ceil(32);
                // The activation: Xᵀ as B tiles, or dY as A tiles, each tile's rows followed by the term's.
                let len = tiles * 32 * (kq + tail_pairs);
                let act = packed.get(len);
                let scaled: Option<Vec<f32>> = tail.map(|t| {
                    let a2 = &t.a;
                    let rows = (i0..i0 + mc).flat_map(|i| (0..t.k).map(move |j| (i, j)));
                    rows.map(|(i, j)| t.alpha * a2.data[i * a2.rs + j * a2.cs]).collect()
                });
                let a2 = tail.zip(scaled.as_deref()).map(|(t, d)| (Strided { data: d, rs: t.k, cs: 1 }, t.k));
                pack_tiles(simd, &p.a, a2.as_ref(), i0, mc, p.k, forward, act);
                let act: &[u32] = act;
                let shares = split_weight_natural(tiles, p.n, 32, threads.max(1));
                shares.par_iter().with_max_len(1).for_each(|share| {
                    let c = c;
                    configure();
                    WORKER.with(|cell| {
                        let (wbuf, cbuf, s) = &mut *cell.borrow_mut();
                        let job =
                            Job { p, w, ctx, simd, act, kq, tail, tail_pairs, i0, mc, share: *share, c: c.0 };
                        if forward {
                            job.forward(wbuf, cbuf, s);
                        } else {
                            job.backward(wbuf, cbuf, s);
                        }
                    });
                    release();
                });
            }
        });
    });
}

/// One worker's share of one row block.
struct Job<'a, B: PairB> {
    p: &'a Product<'a, B>,
    w: &'a dyn PairWeight,
    ctx: &'a PackCtx,
    simd: bool,
    /// The packed activation block.
    act: &'a [u32],
    /// Pairs of the whole depth (padded to 16).
    kq: usize,
    /// The low-rank term folded in as `tail_pairs` more pairs of depth (0 without one).
    tail: Option<&'a Tail<'a>>,
    tail_pairs: usize,
    i0: usize,
    mc: usize,
    share: Share,
    c: *mut f32,
}

impl<B: PairB> Job<'_, B> {
    fn rows(&self) -> (usize, usize) {
        (self.share.t0 * 32, (self.share.t1 * 32).min(self.mc))
    }

    /// `Cᵀ = W · Xᵀ` for W rows `n0 .. n1` of the share.
    unsafe fn forward(&self, wbuf: &mut Aligned, cbuf: &mut Aligned, s: &mut Scratch) {
        let (p, sh) = (self.p, self.share);
        let mpad = self.mc.div_ceil(32) * 32;
        let kc_step = balanced(p.k, KC, 32);
        for n0 in (sh.n0..sh.n1).step_by(NB) {
            let nb = NB.min(sh.n1 - n0);
            let nbpad = nb.div_ceil(32) * 32;
            let cbuf = cbuf.get_f32(nbpad * mpad);
            for p0 in (0..p.k).step_by(kc_step) {
                let kc = kc_step.min(p.k - p0);
                let kqb = padded_pairs(kc);
                // The last depth block carries the low-rank term's chunks after the weight's.
                let extra = if p0 + kc == p.k { self.tail_pairs } else { 0 };
                let chunks = (kqb + extra) / 16;
                let wbuf = wbuf.get(nbpad * (kqb + extra));
                for r in 0..nbpad {
                    if r + PREFETCH_ROWS < nb {
                        self.w.prefetch((n0 + r + PREFETCH_ROWS) * p.k + p0, kc);
                    }
                    // Row r of sub-panel r / 32, chunk c: its 16 pairs at [(sub · chunks + c) · 32 + r % 32].
                    let row = &mut wbuf[(r / 32 * chunks * 32 + r % 32) * 16..];
                    let filled = if r < nb { kc.div_ceil(2) } else { 0 };
                    if filled > 0 {
                        let start = (n0 + r) * p.k + p0;
                        self.w.decode_pairs_spread(
                            self.ctx, self.simd, start, kc, row, 512, &mut s.u, &mut s.f,
                        );
                    }
                    for q in filled..kqb {
                        row[q / 16 * 512 + q % 16] = 0;
                    }
                    if extra > 0 {
                        self.tail_row(n0 + r, r < nb, &mut row[kqb / 16 * 512..], s);
                    }
                }
                let all_chunks = (self.kq + self.tail_pairs) / 16;
                for sub in 0..nbpad / 32 {
                    for t in sh.t0..sh.t1 {
                        let a = TilePair {
                            ptr: wbuf.as_ptr().add(sub * chunks * 512) as *const u8,
                            next: 1024,
                            stride: 64,
                            step: 2048,
                        };
                        let b = TilePair {
                            ptr: self.act.as_ptr().add((t * all_chunks + p0 / 32) * 512) as *const u8,
                            next: 1024,
                            stride: 64,
                            step: 2048,
                        };
                        let c = TileQuad {
                            ptr: cbuf.as_mut_ptr().add(sub * 32 * mpad + t * 32) as *mut u8,
                            down: 16 * mpad * 4,
                            right: 64,
                            stride: mpad * 4,
                        };
                        // Xᵀ streams; the weight's panel is reused by the next call.
                        tile_2x2(chunks, a, b, c, p0 > 0, Stream::B);
                    }
                }
            }
            let (m0, m1) = self.rows();
            let out = self.c.add(self.i0 * p.ldc + n0);
            merge_transposed(self.simd, cbuf, mpad, nb, m0, m1, out, p.ldc, p.alpha, p.beta);
        }
    }

    /// The forward's term for weight row `n`: `B2[·, n]` as pairs in the A layout's chunks after the weight's
    /// (`out[c · 512 + i]` holds pair i of chunk c); zero for a padding row.
    fn tail_row(&self, n: usize, real: bool, out: &mut [u32], s: &mut Scratch) {
        let (t, chunks) = (self.tail.expect("a tail"), self.tail_pairs / 16);
        s.f.clear();
        if real {
            s.f.extend((0..t.k).map(|j| t.b.data[j * t.b.rs + n * t.b.cs]));
        }
        s.u.resize(self.tail_pairs, 0);
        pairs_from_run(self.simd, &s.f, &mut s.u);
        for c in 0..chunks {
            out[c * 512..][..16].copy_from_slice(&s.u[c * 16..][..16]);
        }
    }

    /// The backward's term, pair row `q`: `(B2[2q, j], B2[2q + 1, j])` for the block's columns `j0 ..`, spread
    /// over the 32-column panels (`kqe` pair rows each) from `out`; zero past the term's rank and the columns.
    #[allow(clippy::too_many_arguments)]
    fn tail_pair_row(
        &self,
        q: usize,
        j0: usize,
        nc: usize,
        ncpad: usize,
        kqe: usize,
        out: &mut [u32],
        s: &mut Scratch,
    ) {
        let t = self.tail.expect("a tail");
        let b = &t.b;
        let row =
            |j: usize| (0..nc).map(move |c| if j < t.k { b.data[j * b.rs + (j0 + c) * b.cs] } else { 0.0 });
        s.f.clear();
        s.f.extend(row(2 * q).chain(row(2 * q + 1)));
        s.u.clear();
        s.u.resize(ncpad, 0);
        let (even, odd) = s.f.split_at(nc);
        interleave_rows(self.simd, even, odd, &mut s.u[..nc]);
        for (panel, piece) in s.u.chunks_exact(32).enumerate() {
            out[panel * kqe * 32..][..32].copy_from_slice(piece);
        }
    }

    /// `dX = dY · W` for W columns `n0 .. n1` of the share.
    unsafe fn backward(&self, wbuf: &mut Aligned, cbuf: &mut Aligned, s: &mut Scratch) {
        let (p, sh) = (self.p, self.share);
        let kc_step = balanced(p.k, BWD_KC, 32);
        for j0 in (sh.n0..sh.n1).step_by(BWD_NB) {
            let nc = BWD_NB.min(sh.n1 - j0);
            let ncpad = nc.div_ceil(32) * 32;
            let tiles = self.mc.div_ceil(32);
            let cbuf = cbuf.get_f32(tiles * 32 * ncpad);
            for p0 in (0..p.k).step_by(kc_step) {
                let kc = kc_step.min(p.k - p0);
                let kqb = padded_pairs(kc);
                // The last depth block carries the low-rank term's pair rows after the weight's.
                let extra = if p0 + kc == p.k { self.tail_pairs } else { 0 };
                let kqe = kqb + extra;
                let wbuf = wbuf.get(kqe * ncpad);
                for q in 0..kqb {
                    // Rows a few pairs ahead: each is a short run, too short for the hardware prefetcher.
                    let ahead = 2 * (q + PREFETCH_ROWS / 2);
                    if ahead + 1 < kc {
                        self.w.prefetch((p0 + ahead) * p.n + j0, nc);
                        self.w.prefetch((p0 + ahead + 1) * p.n + j0, nc);
                    }
                    // Pair row q of panel j at [(j · kqb + q) · 32]: a chunk's 16 rows are 2 KiB in a row.
                    let row = &mut wbuf[q * 32..];
                    let filled = if 2 * q < kc { nc } else { 0 };
                    if filled > 0 {
                        let odd = (2 * q + 1 < kc).then_some(p0 + 2 * q + 1);
                        let (even, stride) = (p0 + 2 * q, kqe * 32);
                        self.w.pair_rows_spread(
                            self.ctx, self.simd, even, odd, j0, nc, row, stride, &mut s.u, &mut s.f,
                        );
                    }
                    // Columns past the weight's (the last panel's tail) and pair rows past the depth are zero.
                    for c in filled..ncpad {
                        row[c / 32 * kqe * 32 + c % 32] = 0;
                    }
                }
                for q in 0..extra {
                    self.tail_pair_row(q, j0, nc, ncpad, kqe, &mut wbuf[(kqb + q) * 32..], s);
                }
                let all_chunks = (self.kq + self.tail_pairs) / 16;
                for panel in 0..ncpad / 32 {
                    for t in sh.t0..sh.t1 {
                        let a = TilePair {
                            ptr: self.act.as_ptr().add((t * all_chunks + p0 / 32) * 512) as *const u8,
                            next: 1024,
                            stride: 64,
                            step: 2048,
                        };
                        let b = TilePair {
                            ptr: wbuf.as_ptr().add(panel * kqe * 32) as *const u8,
                            next: 64,
                            stride: 128,
                            step: 2048,
                        };
                        let c = TileQuad {
                            ptr: cbuf.as_mut_ptr().add(t * 32 * ncpad + panel * 32) as *mut u8,
                            down: 16 * ncpad * 4,
                            right: 64,
                            stride: ncpad * 4,
                        };
                        // dY streams; the weight's panel is reused by the next call.
                        tile_2x2(kqe / 16, a, b, c, p0 > 0, Stream::A);
                    }
                }
            }
            let (m0, m1) = self.rows();
            let out = self.c.add(self.i0 * p.ldc + j0);
            for m in m0..m1 {
                let src = &cbuf[m * ncpad..][..nc];
                let dst = std::slice::from_raw_parts_mut(out.add(m * p.ldc), nc);
                merge_run(src, dst, p.alpha, p.beta);
            }
        }
    }
}

/// A growable buffer whose start is 64-byte aligned: a tile row (64 bytes) that straddled two cache lines
/// would cost two loads.
#[derive(Default)]
struct Aligned(Vec<Line>);

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

impl Aligned {
    /// The first `len` values (grown with zeros if needed; otherwise holding what was left there).
    fn get(&mut self, len: usize) -> &mut [u32] {
        let lines = len.div_ceil(16);
        if self.0.len() < lines {
            self.0.resize(lines, Line([0; 16]));
        }
        // Safety: `lines` lines of 16 u32 hold at least `len` u32, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u32, len) }
    }

    /// As `get`, as f32 (any bits are a valid f32).
    fn get_f32(&mut self, len: usize) -> &mut [f32] {
        let u = self.get(len);
        // Safety: same size and alignment; every bit pattern is an f32.
        unsafe { std::slice::from_raw_parts_mut(u.as_mut_ptr() as *mut f32, len) }
    }
}

/// `dst = alpha · src + beta · dst` (beta 0 never reads dst).
fn merge_run(src: &[f32], dst: &mut [f32], alpha: f32, beta: f32) {
    if beta == 0.0 {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = alpha * v;
        }
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = alpha * v + beta * *d;
        }
    }
}

/// `C[m, n] = alpha · S[n, m] + beta · C[m, n]` for rows `m0 .. m1`, `n < nb`; S has row stride `mpad`.
#[allow(clippy::too_many_arguments)]
unsafe fn merge_transposed(
    simd: bool,
    s: &[f32],
    mpad: usize,
    nb: usize,
    m0: usize,
    m1: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let mut m = m0;
    while m < m1 {
        let mv = 16.min(m1 - m);
        let mut n = 0;
        while n < nb {
            let nv = 16.min(nb - n);
            if simd && mv == 16 && nv == 16 {
                simd_x86::merge_16x16(
                    s.as_ptr().add(n * mpad + m),
                    mpad,
                    c.add(m * ldc + n),
                    ldc,
                    alpha,
                    beta,
                );
            } else {
                for i in 0..mv {
                    for j in 0..nv {
                        let out = c.add((m + i) * ldc + n + j);
                        let v = alpha * s[(n + j) * mpad + m + i];
                        *out = if beta == 0.0 { v } else { v + beta * *out };
                    }
                }
            }
            n += 16;
        }
        m += 16;
    }
}

/// Row `i` of A at depth `0 .. k` as pairs (`kq` of them, the padding zero), plain loops.
fn row_pairs(a: &Strided, i: usize, k: usize, out: &mut [u32], f: &mut Vec<f32>) {
    f.clear();
    f.extend((0..k).map(|p| a.data[i * a.rs + p * a.cs]));
    pairs_from_run(false, f, out);
}

/// Rows `i0 .. i0+mc` of the activation in 32-row tiles (zero rows past `mc`), each tile's depth chunks in
/// order, a chunk's two 16-row halves 1 KiB each, one after the other: the micro-kernel reads 2 KiB in a row
/// per step. `transpose`: a half is a B tile (pair q of row r at `[q · 16 + r]`, the forward's Xᵀ); else an
/// A tile (row r's 16 pairs at `[r · 16 ..]`, the backward's dY).
///
/// `tail` (rows `0 .. mc` of a second activation, `k2` deep) follows each tile's chunks with its own: the
/// low-rank term folded in as extra depth.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_tiles(
    simd: bool,
    a: &Strided,
    tail: Option<&(Strided, usize)>,
    i0: usize,
    mc: usize,
    k: usize,
    transpose: bool,
    dst: &mut [u32],
) {
    let kq = padded_pairs(k);
    let kq2 = tail.map_or(0, |(_, k2)| padded_pairs(*k2));
    dst.par_chunks_mut(32 * (kq + kq2)).enumerate().for_each(|(t, tile)| {
        ROWS.with(|cell| {
            let s = &mut cell.borrow_mut();
            let rows = mc.saturating_sub(32 * t);
            let (main, rest) = tile.split_at_mut(32 * kq);
            pack_tile(simd, a, i0 + 32 * t, rows, k, transpose, main, s);
            if let Some((a2, k2)) = tail {
                pack_tile(simd, a2, 32 * t, rows, *k2, transpose, rest, s);
            }
        })
    });
}

thread_local! {
    /// A tile's 32 rows of pairs while `pack_tiles` reorders them.
    static ROWS: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One 32-row tile of `pack_tiles`: rows `i0 ..` of which `rows` are real, the rest zero. SIMD packs rows of
/// unit column stride (every product's activation) in one pass; the plain twin (any stride) goes through a
/// scratch copy of the rows.
#[allow(clippy::too_many_arguments)]
fn pack_tile(
    simd: bool,
    a: &Strided,
    i0: usize,
    rows: usize,
    k: usize,
    transpose: bool,
    tile: &mut [u32],
    s: &mut Scratch,
) {
    #[cfg(target_arch = "x86_64")]
    if simd && a.cs == 1 {
        // Safety: `simd` is only set where the CPU has AVX512-BF16; the bounds are checked inside.
        unsafe { simd_x86::pack_tile_direct(a.data, a.rs, i0, rows.min(32), k, transpose, tile) };
        return;
    }
    let kq = padded_pairs(k);
    s.u.resize(32 * kq, 0);
    for (r, row) in s.u.chunks_exact_mut(kq).enumerate() {
        if r < rows {
            row_pairs(a, i0 + r, k, row, &mut s.f);
        } else {
            row.fill(0);
        }
    }
    for half in 0..2 {
        let block = &s.u[half * 16 * kq..][..16 * kq];
        for c in 0..kq / 16 {
            let out = &mut tile[(c * 2 + half) * 256..][..256];
            if transpose {
                transpose_block(block, kq, 16 * c, out);
            } else {
                for (r, piece) in out.chunks_exact_mut(16).enumerate() {
                    piece.copy_from_slice(&block[r * kq + 16 * c..][..16]);
                }
            }
        }
    }
}

/// `out[i · 16 + r] = rows[r · kq + q0 + i]` for a 16 × 16 block.
fn transpose_block(rows: &[u32], kq: usize, q0: usize, out: &mut [u32]) {
    for (i, piece) in out.chunks_exact_mut(16).enumerate() {
        for (r, o) in piece.iter_mut().enumerate() {
            *o = rows[r * kq + q0 + i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd_x86 {
    use crate::gemm::pairs::simd_x86::transpose_16x16;
    use std::arch::x86_64::*;

    /// `pack_tile` in one pass for rows of unit column stride: each 16 rows × 32 depth values are loaded,
    /// rounded to 16 pairs per row in registers and stored as one A tile, or transposed into one B tile
    /// (no scratch copy of the rows in between). Rows past `rows` and depth past `k` are zero.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn pack_tile_direct(
        data: &[f32],
        rs: usize,
        i0: usize,
        rows: usize,
        k: usize,
        transpose: bool,
        tile: &mut [u32],
    ) {
        let chunks = crate::gemm::pairs::padded_pairs(k) / 16;
        assert!(tile.len() >= chunks * 512);
        assert!(rows == 0 || (i0 + rows - 1) * rs + k <= data.len());
        for half in 0..2 {
            let real = rows.saturating_sub(16 * half).min(16);
            for c in 0..chunks {
                let d0 = 32 * c;
                let n = (k - d0.min(k)).min(32);
                let (lo_mask, hi_mask) =
                    (((1u32 << n.min(16)) - 1) as u16, ((1u64 << n.saturating_sub(16)) - 1) as u16);
                let mut r = [_mm512_setzero_si512(); 16];
                for (i, v) in r.iter_mut().enumerate().take(real) {
                    let p = data.as_ptr().wrapping_add((i0 + 16 * half + i) * rs + d0);
                    let lo = _mm512_maskz_loadu_ps(lo_mask, p);
                    let hi = _mm512_maskz_loadu_ps(hi_mask, p.wrapping_add(16));
                    // Lanes 0–15 of the result come from the second operand: the 32 values in order, as pairs.
                    *v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                }
                let out = tile.as_mut_ptr().add((c * 2 + half) * 256);
                let r = if transpose { transpose_16x16(r) } else { r };
                for (i, v) in r.iter().enumerate() {
                    _mm512_storeu_si512(out.add(i * 16) as *mut _, *v);
                }
            }
        }
    }

    /// A 16 × 16 block of `C = alpha · Sᵀ + beta · C` (S rows `ss` apart, C rows `ldc` apart).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn merge_16x16(s: *const f32, ss: usize, c: *mut f32, ldc: usize, alpha: f32, beta: f32) {
        let mut r = [_mm512_setzero_si512(); 16];
        for (i, v) in r.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(s.add(i * ss) as *const _);
        }
        let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (i, v) in transpose_16x16(r).iter().enumerate() {
            let row = c.add(i * ldc);
            let v = _mm512_mul_ps(va, _mm512_castsi512_ps(*v));
            let v = if beta == 0.0 { v } else { _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), v) };
            _mm512_storeu_ps(row, v);
        }
    }
}
