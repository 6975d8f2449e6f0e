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
//!       - loop over 32-wide panels of the block, then over 32-row tiles of the activation: the 2 × 2 tile
//!         micro-kernel over the whole depth block, C in tiles (a depth block loads and stores C once);
//!   - merge the scratch into C with alpha and beta (transposed in the forward).
//!
//! The micro-kernel is bound by tile loads (see `mod.rs`), so long depth blocks matter most: C's loads and
//! stores are 8 per `KC / 8` operand loads.

use super::{configure, release, tile_2x2, TilePair, TileQuad};
use crate::gemm::native::Product;
use crate::gemm::pack::{PackCtx, Strided};
use crate::gemm::pairs::{padded_pairs, pairs_from_run, PairB, PairWeight, Scratch};
use rayon::prelude::*;
use std::cell::RefCell;

/// Activation rows per block: every weight block decoded is used by this many rows.
const MC: usize = 256;
/// Depth per decoded block (a multiple of 32): with the activation's block (MC × KC bf16, 1 MiB) and the
/// weight's (NB × KC) in a 2 MiB L2.
const KC: usize = 2048;
/// Weight outputs per decoded block (a multiple of 32).
const NB: usize = 64;
/// The backward's depth and column blocks: wider column blocks make fewer, longer decoded runs per W row.
const BWD_KC: usize = 1024;
const BWD_NB: usize = 256;
/// How many row pairs ahead the backward's decoder prefetches W.
const PREFETCH_PAIRS: usize = 4;
/// Pairs added to a packed row's stride: 16 tile rows whose stride is a multiple of 4 KiB would share one
/// cache set.
const STRIDE_PAD: usize = 16;

#[derive(Clone, Copy)]
struct CPtr(*mut f32);
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

/// One worker's part of a row block: activation row tiles `t0 .. t1` (32 rows each) × weight outputs `n0 .. n1`.
#[derive(Clone, Copy, Debug)]
struct Share {
    t0: usize,
    t1: usize,
    n0: usize,
    n1: usize,
}

thread_local! {
    /// Per worker: the decoded weight block, the scratch C, the decoders' scratch.
    static WORKER: RefCell<(Vec<u32>, Vec<f32>, Scratch)> = RefCell::new((Vec::new(), Vec::new(), Scratch::default()));
    /// On the calling thread: the packed activation block, shared by the workers.
    static PACKED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Splits `n` into the fewest blocks of at most about `cap`, of equal size rounded up to a multiple of `align`.
fn balanced(n: usize, cap: usize, align: usize) -> usize {
    let blocks = n.div_ceil(cap).max(1);
    n.div_ceil(blocks).div_ceil(align).max(1) * align
}

/// Along the weight's outputs in whole 32-wide panels when each worker gets at least two, else along the row
/// tiles (then each worker decodes the whole, narrow, weight).
fn split(tiles: usize, n: usize, parts: usize) -> Vec<Share> {
    let panels = n.div_ceil(32);
    let along_n = panels >= 2 * parts || panels >= tiles;
    let count = if along_n { panels } else { tiles };
    let parts = parts.min(count).max(1);
    (0..parts)
        .map(|i| {
            let (lo, hi) = (count * i / parts, count * (i + 1) / parts);
            if along_n {
                Share { t0: 0, t1: tiles, n0: (lo * 32).min(n), n1: (hi * 32).min(n) }
            } else {
                Share { t0: lo, t1: hi, n0: 0, n1: n }
            }
        })
        .collect()
}

/// Runs the product on AMX tiles with `threads` workers (`p.m`, `p.n`, `p.k` all positive).
///
/// # Safety
/// As `native::run` with `Unit::Amx`: `c` holds `(m - 1) * ldc + n` floats not aliased by A or B, and
/// `amx::os::enable_tiles()` succeeded.
pub unsafe fn run<B: PairB>(p: &Product<B>, c: *mut f32, ctx: &PackCtx, simd: bool, threads: usize) {
    let (w, forward) = p.b.weight();
    let kq = padded_pairs(p.k);
    let c = CPtr(c);
    PACKED.with(|cell| {
        let packed = &mut *cell.borrow_mut();
        crate::threads::pool().install(|| {
            for i0 in (0..p.m).step_by(MC) {
                let mc = MC.min(p.m - i0);
                let tiles = mc.div_ceil(32);
                // The activation: X as B-operand groups of 16 rows, or dY as A-operand rows.
                let lda = kq + STRIDE_PAD;
                let len = if forward { tiles * 32 * kq } else { tiles * 32 * lda };
                if packed.len() < len {
                    packed.resize(len, 0);
                }
                if forward {
                    pack_x_groups(simd, &p.a, i0, mc, p.k, &mut packed[..len]);
                } else {
                    pack_rows(simd, &p.a, i0, mc, p.k, lda, &mut packed[..len]);
                }
                let act: &[u32] = packed;
                let shares = split(tiles, p.n, threads.max(1));
                shares.par_iter().with_max_len(1).for_each(|share| {
                    let c = c;
                    configure();
                    WORKER.with(|cell| {
                        let (wbuf, cbuf, s) = &mut *cell.borrow_mut();
                        let job = Job { p, w, ctx, simd, act, kq, lda, i0, mc, share: *share, c: c.0 };
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
    /// Row stride (pairs) of the backward's packed dY.
    lda: usize,
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
    unsafe fn forward(&self, wbuf: &mut Vec<u32>, cbuf: &mut Vec<f32>, s: &mut Scratch) {
        let (p, sh) = (self.p, self.share);
        let mpad = self.mc.div_ceil(32) * 32;
        let kc_step = balanced(p.k, KC, 32);
        for n0 in (sh.n0..sh.n1).step_by(NB) {
            let nb = NB.min(sh.n1 - n0);
            let nbpad = nb.div_ceil(32) * 32;
            grow(cbuf, nbpad * mpad);
            for p0 in (0..p.k).step_by(kc_step) {
                let kc = kc_step.min(p.k - p0);
                let kqb = padded_pairs(kc);
                let ldw = kqb + STRIDE_PAD;
                grow(wbuf, nbpad * ldw);
                for (r, row) in wbuf.chunks_exact_mut(ldw).take(nbpad).enumerate() {
                    if r + 2 < nb {
                        self.w.prefetch((n0 + r + 2) * p.k + p0, kc);
                    }
                    let filled = if r < nb { kc.div_ceil(2) } else { 0 };
                    if filled > 0 {
                        self.w.decode_pairs(self.ctx, self.simd, (n0 + r) * p.k + p0, kc, &mut row[..filled], &mut s.f);
                    }
                    row[filled..kqb].fill(0);
                }
                for sub in 0..nbpad / 32 {
                    for t in sh.t0..sh.t1 {
                        let a = TilePair {
                            ptr: wbuf.as_ptr().add(sub * 32 * ldw) as *const u8,
                            next: 16 * ldw * 4,
                            stride: ldw * 4,
                            step: 64,
                        };
                        let b = TilePair {
                            ptr: self.act.as_ptr().add((2 * t * self.kq + p0 / 2) * 16) as *const u8,
                            next: self.kq * 16 * 4,
                            stride: 64,
                            step: 1024,
                        };
                        let c = TileQuad {
                            ptr: cbuf.as_mut_ptr().add(sub * 32 * mpad + t * 32) as *mut u8,
                            down: 16 * mpad * 4,
                            right: 64,
                            stride: mpad * 4,
                        };
                        tile_2x2(kqb / 16, a, b, c, p0 > 0);
                    }
                }
            }
            let (m0, m1) = self.rows();
            let out = self.c.add(self.i0 * p.ldc + n0);
            merge_transposed(self.simd, cbuf, mpad, nb, m0, m1, out, p.ldc, p.alpha, p.beta);
        }
    }

    /// `dX = dY · W` for W columns `n0 .. n1` of the share.
    unsafe fn backward(&self, wbuf: &mut Vec<u32>, cbuf: &mut Vec<f32>, s: &mut Scratch) {
        let (p, sh) = (self.p, self.share);
        let kc_step = balanced(p.k, BWD_KC, 32);
        for j0 in (sh.n0..sh.n1).step_by(BWD_NB) {
            let nc = BWD_NB.min(sh.n1 - j0);
            let ncpad = nc.div_ceil(32) * 32;
            let tiles = self.mc.div_ceil(32);
            grow(cbuf, tiles * 32 * ncpad);
            for p0 in (0..p.k).step_by(kc_step) {
                let kc = kc_step.min(p.k - p0);
                let kqb = padded_pairs(kc);
                grow(wbuf, kqb * ncpad);
                for (q, row) in wbuf.chunks_exact_mut(ncpad).take(kqb).enumerate() {
                    // Rows a few pairs ahead: each row is a short run, too short for the hardware prefetcher.
                    let ahead = 2 * (q + PREFETCH_PAIRS);
                    if ahead + 1 < kc {
                        self.w.prefetch((p0 + ahead) * p.n + j0, nc);
                        self.w.prefetch((p0 + ahead + 1) * p.n + j0, nc);
                    }
                    let filled = if 2 * q < kc { nc } else { 0 };
                    if filled > 0 {
                        let odd = (2 * q + 1 < kc).then_some(p0 + 2 * q + 1);
                        self.w.pair_rows(self.ctx, self.simd, p0 + 2 * q, odd, j0, &mut row[..nc], &mut s.f);
                    }
                    row[filled..].fill(0);
                }
                for panel in 0..ncpad / 32 {
                    for t in sh.t0..sh.t1 {
                        let a = TilePair {
                            ptr: self.act.as_ptr().add(t * 32 * self.lda + p0 / 2) as *const u8,
                            next: 16 * self.lda * 4,
                            stride: self.lda * 4,
                            step: 64,
                        };
                        let b = TilePair {
                            ptr: wbuf.as_ptr().add(panel * 32) as *const u8,
                            next: 64,
                            stride: ncpad * 4,
                            step: 16 * ncpad * 4,
                        };
                        let c = TileQuad {
                            ptr: cbuf.as_mut_ptr().add(t * 32 * ncpad + panel * 32) as *mut u8,
                            down: 16 * ncpad * 4,
                            right: 64,
                            stride: ncpad * 4,
                        };
                        tile_2x2(kqb / 16, a, b, c, p0 > 0);
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

fn grow<T: Default + Clone>(buf: &mut Vec<T>, len: usize) {
    if buf.len() < len {
        buf.resize(len, T::default());
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
                simd_x86::merge_16x16(s.as_ptr().add(n * mpad + m), mpad, c.add(m * ldc + n), ldc, alpha, beta);
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

/// Rows `i0 .. i0+rows` of A at depth `0 .. k` as pairs, one row at a time (`put(r, pairs)`, `kq` pairs).
fn row_pairs(simd: bool, a: &Strided, i: usize, k: usize, out: &mut [u32], f: &mut Vec<f32>) {
    if a.cs == 1 {
        pairs_from_run(simd, &a.data[i * a.rs..i * a.rs + k], out);
    } else {
        f.clear();
        f.extend((0..k).map(|p| a.data[i * a.rs + p * a.cs]));
        pairs_from_run(simd, f, out);
    }
}

/// X's rows `i0 .. i0+mc` as B-operand groups: group g (rows 16g .. 16g+16, zero past `mc`), pair q of its row
/// r at `[(g * kq + q) * 16 + r]`, so a tile (16 pairs × 16 rows) is 1 KiB in a row.
fn pack_x_groups(simd: bool, a: &Strided, i0: usize, mc: usize, k: usize, dst: &mut [u32]) {
    let kq = padded_pairs(k);
    dst.par_chunks_mut(16 * kq).enumerate().for_each_init(Scratch::default, |s, (g, group)| {
        s.u.resize(16 * kq, 0);
        for (r, row) in s.u.chunks_exact_mut(kq).enumerate() {
            if 16 * g + r < mc {
                row_pairs(simd, a, i0 + 16 * g + r, k, row, &mut s.f);
            } else {
                row.fill(0);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if simd {
            // Safety: `simd` is only set where the CPU has AVX-512; both buffers hold 16 · kq values, kq % 16 == 0.
            unsafe { simd_x86::transpose_rows(&s.u, kq, group) };
            return;
        }
        for (q, out) in group.chunks_exact_mut(16).enumerate() {
            for (r, o) in out.iter_mut().enumerate() {
                *o = s.u[r * kq + q];
            }
        }
    });
}

/// dY's rows `i0 .. i0+mc` as A-operand rows of pairs at stride `lda` (zero rows past `mc`).
fn pack_rows(simd: bool, a: &Strided, i0: usize, mc: usize, k: usize, lda: usize, dst: &mut [u32]) {
    let kq = padded_pairs(k);
    dst.par_chunks_mut(lda).enumerate().for_each_init(Vec::new, |f, (r, row)| {
        if r < mc {
            row_pairs(simd, a, i0 + r, k, &mut row[..kq], f);
            row[kq..].fill(0);
        } else {
            row.fill(0);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod simd_x86 {
    use crate::gemm::pairs::simd_x86::transpose_16x16;
    use std::arch::x86_64::*;

    /// `out[q * 16 + r] = rows[r * kq + q]` for 16 rows of `kq` values, in 16 × 16 register transposes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn transpose_rows(rows: &[u32], kq: usize, out: &mut [u32]) {
        assert!(rows.len() >= 16 * kq && out.len() >= 16 * kq && kq.is_multiple_of(16));
        for q0 in (0..kq).step_by(16) {
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(rows.as_ptr().add(i * kq + q0) as *const _);
            }
            for (i, v) in transpose_16x16(r).iter().enumerate() {
                _mm512_storeu_si512(out.as_mut_ptr().add((q0 + i) * 16) as *mut _, *v);
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
