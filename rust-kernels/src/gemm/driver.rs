//! The BLIS loop nest around the micro-kernel, and the one place threads enter.

use super::blocking::balanced;
use super::blocking::{blocking, Blocking};
use super::kernel::{kernel_fn, KernelFn};
use super::pack::{aligned, pack_a, round_to_bf16, PackB, PackCtx, Strided};
use super::Compute;
use super::SharedOut;
use crate::dispatch::Kernel;
use crate::report::{Family, Route};
use rayon::prelude::*;
use std::cell::RefCell;

/// `C[m, n] = alpha · A[m, k] · B[k, n] + beta · C` with C row-major (row stride `ldc`).
pub struct Problem<'a, B: PackB> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Strided<'a>,
    pub b: &'a B,
    pub alpha: f32,
    pub beta: f32,
    pub ldc: usize,
    /// A second, short product added to C in the same pass: `C += tail.alpha · tail.a · tail.b`.
    pub tail: Option<Tail<'a>>,
}

/// `alpha · A2[m, k] · B2[k, n]` with a small k (a LoRA rank): computed tile by tile right after the last
/// depth block of the main product, while each C tile is still in L1, instead of another pass over C.
#[derive(Clone, Copy)]
pub struct Tail<'a> {
    pub k: usize,
    pub a: Strided<'a>,
    pub b: Strided<'a>,
    pub alpha: f32,
}

impl Tail<'_> {
    /// `C[m, n] += alpha · A2 · B2` as an f32 product of its own, where no nest can carry the term.
    ///
    /// # Safety
    /// `c` holds `(m - 1) * ldc + n` floats not aliased by the term's operands.
    pub unsafe fn add_to(&self, m: usize, n: usize, c: *mut f32, ldc: usize, kernel: Kernel, threads: usize) {
        let p =
            Problem { m, n, k: self.k, a: self.a, b: &self.b, alpha: self.alpha, beta: 1.0, ldc, tail: None };
        gemm(&p, c, kernel, Compute::F32, threads);
    }
}

/// One worker's share of C: rows `m0..m1`, columns `n0..n1`.
#[derive(Clone, Copy, Debug)]
struct Share {
    m0: usize,
    m1: usize,
    n0: usize,
    n1: usize,
}

/// Splits C among `parts` workers along N (each worker then packs only its own columns of B, so NF4
/// dequantization is never repeated) unless N has too few tiles, in which case along M.
fn split(m: usize, n: usize, bl: &Blocking, parts: usize) -> Vec<Share> {
    let n_tiles = n.div_ceil(bl.nr);
    let m_tiles = m.div_ceil(bl.mr);
    let along_n = n_tiles >= 2 * parts || n_tiles >= m_tiles;
    let (tiles, tile) = if along_n { (n_tiles, bl.nr) } else { (m_tiles, bl.mr) };
    let parts = parts.min(tiles).max(1);
    (0..parts)
        .map(|i| {
            let lo = (tiles * i / parts * tile).min(if along_n { n } else { m });
            let hi = (tiles * (i + 1) / parts * tile).min(if along_n { n } else { m });
            if along_n {
                Share { m0: 0, m1: m, n0: lo, n1: hi }
            } else {
                Share { m0: lo, m1: hi, n0: 0, n1: n }
            }
        })
        .collect()
}

/// Runs the GEMM with `threads` workers (1 = on the calling thread of the pool).
///
/// # Safety
/// `c` must point to a row-major buffer holding at least `(m - 1) * ldc + n` elements, not aliased by A or B.
pub unsafe fn gemm<B: PackB>(p: &Problem<B>, c: *mut f32, kernel: Kernel, compute: Compute, threads: usize) {
    if p.m == 0 || p.n == 0 {
        return;
    }
    let (family, route) = match compute {
        Compute::F32 => (Family::GemmF32, Route::of_kernel(kernel)),
        Compute::Bf16 => (Family::GemmBf16, bf16_route(kernel)),
    };
    crate::report::note(family, route);
    let bl = blocking(kernel);
    let ctx = PackCtx { kernel, map: *crate::nf4::codebook::dynamic_map() };
    let micro = kernel_fn(kernel);
    let c = SharedOut(c);
    let shares = split(p.m, p.n, &bl, threads.max(1));
    // Threads enter here and nowhere else.
    crate::threads::pool().install(|| {
        shares.par_iter().with_max_len(1).for_each(|share| {
            let c = c;
            nest(p, *share, &bl, &ctx, micro, compute, c.0)
        })
    });
}

/// The most packed A a worker keeps for a whole call (floats): 16 MiB, a 256-row batch at a depth of 14336
/// (Mistral-7B's down projection).
const KEPT_A_FLOATS: usize = 4 << 20;

thread_local! {
    /// Packed A, packed B and the packer's scratch, reused across calls on each pool thread.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// Packed A and B of a `Tail`.
    static TAIL_BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// Pair-interleaved bf16 panels of A and B for the native bf16 kernel.
    static PAIRS: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// What a bf16-compute GEMM runs with `kernel` active: native bf16 dot products, or the f32 micro-kernel on
/// operands rounded to bf16.
pub fn bf16_route(kernel: Kernel) -> Route {
    if native_bf16(kernel, Compute::Bf16) {
        Route::Avx512Bf16
    } else {
        Route::of_kernel(kernel)
    }
}

/// Whether this call multiplies in native bf16 (AVX512-BF16 dot products) rather than f32 on rounded values.
fn native_bf16(kernel: Kernel, compute: Compute) -> bool {
    compute == Compute::Bf16 && kernel == Kernel::Avx512 && crate::dispatch::cpu().avx512_bf16
}

#[allow(clippy::too_many_arguments)]
unsafe fn nest<B: PackB>(
    p: &Problem<B>,
    share: Share,
    bl: &Blocking,
    ctx: &PackCtx,
    micro: KernelFn,
    compute: Compute,
    c: *mut f32,
) {
    let (mr, nr) = (bl.mr, bl.nr);
    if p.k == 0 {
        scale_c(c, p.ldc, share, p.beta);
        if let Some(tail) = &p.tail {
            // No main product to ride on: the tail alone, accumulated into C.
            let alone = Problem {
                m: p.m,
                n: p.n,
                k: tail.k,
                a: tail.a,
                b: &tail.b,
                alpha: tail.alpha,
                beta: 1.0,
                ldc: p.ldc,
                tail: None,
            };
            nest(&alone, share, bl, ctx, micro, Compute::F32, c);
        }
        return;
    }
    BUFFERS.with(|cell| {
        let (abuf, bbuf, scratch) = &mut *cell.borrow_mut();
        let mut tail_cell = TAIL_BUFFERS.with(|t| std::mem::take(&mut *t.borrow_mut()));
        let (tabuf, tbbuf) = &mut tail_cell;
        let mut tile = vec![0.0f32; mr * nr];
        // Loop 5: columns of C in blocks of NC (B block shared by everything below).
        // Even blocks: K = 576 runs as 2 × 288 rather than 256 + 256 + 64 (a thin last block pays the
        // tile's load/store of C for little work). Depends only on k, so every worker sums in the same order.
        let kc_step = balanced(p.k, bl.kc, 8);
        let mc_step = balanced(share.m1 - share.m0, bl.mc, mr);
        // With more than one column block, every block of A would be packed again for each: keep them all
        // instead when they fit, and pack A once per call.
        let m_padded = (share.m1 - share.m0).div_ceil(mr) * mr;
        let keep_a = share.n1 - share.n0 > bl.nc && m_padded * p.k <= KEPT_A_FLOATS;
        let a_origin = if keep_a {
            let whole = aligned(abuf, m_padded * p.k);
            whole.as_ptr().offset_from(abuf.as_ptr()) as usize
        } else {
            0
        };
        for jc in (share.n0..share.n1).step_by(bl.nc) {
            let nc = bl.nc.min(share.n1 - jc);
            // Loop 4: depth in blocks of KC; the first block applies beta, the rest accumulate.
            for pc in (0..p.k).step_by(kc_step) {
                let kc = kc_step.min(p.k - pc);
                let beta = if pc == 0 { p.beta } else { 1.0 };
                let bpack = aligned(bbuf, nc.div_ceil(nr) * nr * kc);
                p.b.pack(ctx, pc, kc, jc, nc, nr, bpack, scratch);
                // The tail rides on the last depth block.
                let tail = p.tail.filter(|t| pc + kc == p.k && t.k > 0);
                let tbpack = match &tail {
                    Some(t) => {
                        let packed = aligned(tbbuf, nc.div_ceil(nr) * nr * t.k);
                        t.b.pack(ctx, 0, t.k, jc, nc, nr, packed, scratch);
                        packed.as_ptr()
                    }
                    None => std::ptr::null(),
                };
                let native = native_bf16(ctx.kernel, compute);
                if native {
                    PAIRS.with(|pairs| {
                        super::bf16_native::pair_panels(
                            bpack,
                            kc,
                            nr,
                            nc.div_ceil(nr),
                            &mut pairs.borrow_mut().1,
                        )
                    });
                } else if compute == Compute::Bf16 {
                    round_to_bf16(bpack);
                }
                // The B block packed after this one: its source is fetched while this block's tiles run.
                let next_block = if pc + kc < p.k {
                    Some((pc + kc, kc_step.min(p.k - pc - kc), jc, nc))
                } else if jc + nc < share.n1 {
                    Some((0, kc_step.min(p.k), jc + nc, bl.nc.min(share.n1 - jc - nc)))
                } else {
                    None
                };
                let tiles_total = (share.m0..share.m1)
                    .step_by(mc_step)
                    .map(|ic| (mc_step.min(share.m1 - ic)).div_ceil(mr) * nc.div_ceil(nr))
                    .sum::<usize>();
                let mut tile_no = 0;
                // Loop 3: rows of C in blocks of MC (A block stays in L2).
                for ic in (share.m0..share.m1).step_by(mc_step) {
                    let mc = mc_step.min(share.m1 - ic);
                    // Kept blocks sit at (depth start) × padded rows + rows before this block (every block
                    // but the last is a whole number of MR panels).
                    let (apack, packed) = if keep_a {
                        let at = pc * m_padded + (ic - share.m0) * kc;
                        (&mut abuf[a_origin + at..][..mc.div_ceil(mr) * mr * kc], jc > share.n0)
                    } else {
                        (aligned(abuf, mc.div_ceil(mr) * mr * kc), false)
                    };
                    if !packed {
                        pack_a(ctx.kernel, &p.a, ic, mc, pc, kc, mr, apack);
                    }
                    let tapack = match &tail {
                        Some(t) => {
                            let packed = aligned(tabuf, mc.div_ceil(mr) * mr * t.k);
                            pack_a(ctx.kernel, &t.a, ic, mc, 0, t.k, mr, packed);
                            packed.as_ptr()
                        }
                        None => std::ptr::null(),
                    };
                    if native {
                        PAIRS.with(|pairs| {
                            super::bf16_native::pair_panels(
                                apack,
                                kc,
                                mr,
                                mc.div_ceil(mr),
                                &mut pairs.borrow_mut().0,
                            )
                        });
                    } else if compute == Compute::Bf16 && !packed {
                        round_to_bf16(apack);
                    }
                    let pairs = PAIRS.with(|pairs| {
                        let pairs = pairs.borrow();
                        (pairs.0.as_ptr(), pairs.1.as_ptr())
                    });
                    let kq = kc.div_ceil(2);
                    // Loop 2: NR-wide micro-panels of B (each stays in L1 for the whole loop 1).
                    for jr in (0..nc).step_by(nr) {
                        let nv = nr.min(nc - jr);
                        let bp = bpack.as_ptr().add(jr * kc);
                        // Loop 1: MR-tall micro-panels of A.
                        for ir in (0..mc).step_by(mr) {
                            if let Some((np, nk, nj, nn)) = next_block {
                                p.b.prefetch_block(np, nk, nj, nn, tile_no, tiles_total);
                                tile_no += 1;
                            }
                            let mv = mr.min(mc - ir);
                            let ap = apack.as_ptr().add(ir * kc);
                            let cp = c.add((ic + ir) * p.ldc + jc + jr);
                            let full = mv == mr && nv == nr;
                            let (out, rsc, alpha, beta_tile) = if full {
                                (cp, p.ldc, p.alpha, beta)
                            } else {
                                (tile.as_mut_ptr(), nr, 1.0, 0.0)
                            };
                            if native {
                                native_tile(
                                    kq,
                                    pairs.0.add(ir * kq),
                                    pairs.1.add(jr * kq),
                                    out,
                                    rsc,
                                    alpha,
                                    beta_tile,
                                );
                            } else {
                                micro(kc, ap, bp, out, rsc, alpha, beta_tile);
                            }
                            if !full {
                                // Edge tile: computed whole above, merge only the valid part.
                                merge_edge(&tile, nr, cp, p.ldc, mv, nv, p.alpha, beta);
                            }
                            if let Some(t) = &tail {
                                let (tap, tbp) = (tapack.add(ir * t.k), tbpack.add(jr * t.k));
                                if full {
                                    micro(t.k, tap, tbp, cp, p.ldc, t.alpha, 1.0);
                                } else {
                                    micro(t.k, tap, tbp, tile.as_mut_ptr(), nr, 1.0, 0.0);
                                    merge_edge(&tile, nr, cp, p.ldc, mv, nv, t.alpha, 1.0);
                                }
                            }
                        }
                    }
                }
            }
        }
        TAIL_BUFFERS.with(|t| *t.borrow_mut() = tail_cell);
    });
}

/// The native bf16 micro-kernel (only reached when `native_bf16` holds).
unsafe fn native_tile(
    kq: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    #[cfg(target_arch = "x86_64")]
    super::bf16_native::tile_8x32(kq, a, b, c, rsc, alpha, beta);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("native bf16 needs x86_64 {kq} {a:?} {b:?} {c:?} {rsc} {alpha} {beta}");
}

#[allow(clippy::too_many_arguments)]
unsafe fn merge_edge(
    tile: &[f32],
    nr: usize,
    c: *mut f32,
    ldc: usize,
    mv: usize,
    nv: usize,
    alpha: f32,
    beta: f32,
) {
    for r in 0..mv {
        for j in 0..nv {
            let out = c.add(r * ldc + j);
            let v = alpha * tile[r * nr + j];
            *out = if beta == 0.0 { v } else { v + beta * *out };
        }
    }
}

/// k = 0: the product is empty, so C = beta · C (beta 0 clears C without reading it).
unsafe fn scale_c(c: *mut f32, ldc: usize, share: Share, beta: f32) {
    for i in share.m0..share.m1 {
        for j in share.n0..share.n1 {
            let out = c.add(i * ldc + j);
            *out = if beta == 0.0 { 0.0 } else { beta * *out };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_column_once() {
        let bl = blocking(Kernel::Avx2);
        for (m, n, parts) in [(256, 1536, 2), (1, 100, 2), (300, 16, 4), (5, 5, 3), (7, 49152, 2)] {
            let shares = split(m, n, &bl, parts);
            let mut covered = vec![0u32; m * n];
            for s in &shares {
                for i in s.m0..s.m1 {
                    for j in s.n0..s.n1 {
                        covered[i * n + j] += 1;
                    }
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "{m}x{n} in {parts}: {shares:?}");
        }
    }
}
