//! bf16 compute on native bf16 units for products with a frozen weight (NF4 or bf16): the weight is decoded
//! per depth block straight into pair panels (`pairs.rs`) and multiplied by AMX tiles or `vdpbf16ps`, with
//! f32 accumulation. `Unit::Twin` is the plain twin: the same packing with plain loops, multiplied pair by
//! pair in f32 — what the fast units are tested against. AMX runs its own nest (`amx/nest.rs`), with the
//! weight decoded into tile layouts; the nest below serves the twin and `vdpbf16ps`.
//!
//! Loop nest (one worker's share of C; threads enter only in `run`):
//! - loop 3 over MC rows of C,
//!   - loop 4 over KC depth: pack A's `MC × KC` block into pairs (reused by every column block),
//!     - loop 5 over NC columns: decode the weight's `KC × NC` block into 32-column pair panels,
//!       - loop 2 over 32-column panels (one stays in L1), loop 1 over MR rows: the micro-kernel.
//!
//! Unlike `driver.rs`, A is packed outside the column loop: a weight's block is decoded once per row block,
//! and A's bf16 block (≤ MC × KC) stays in L2 for all of them.

use super::bf16_native::tile_8x32;
use super::blocking::balanced;
use super::driver::Tail;
use super::pack::{PackCtx, Strided};
use super::pairs::{pack_a_dot, padded_pairs, simd_ok, PairB, Scratch, DOT_MR, NR};
#[cfg(target_arch = "x86_64")]
use super::SharedOut;
use crate::dispatch::{Bf16Unit, Kernel};
use rayon::prelude::*;
use std::cell::RefCell;

/// Which multiplier runs over the pair panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Plain loops (the reference).
    Twin,
    /// AVX512-BF16 `vdpbf16ps`, 8 × 32 register tile.
    Dot,
    /// AMX-BF16 tiles, 32 × 32.
    Amx,
}

impl Unit {
    /// The native unit of a bf16 unit choice (`None` for rounding + f32 FMAs, which `driver.rs` runs).
    pub fn of(unit: Bf16Unit) -> Option<Unit> {
        match unit {
            Bf16Unit::Fma => None,
            Bf16Unit::Dot => Some(Unit::Dot),
            Bf16Unit::Amx => Some(Unit::Amx),
        }
    }

    fn mr(self) -> usize {
        match self {
            Unit::Amx => 32,
            Unit::Twin | Unit::Dot => DOT_MR,
        }
    }
}

/// Depth of a packed block: the weight's own cap (`PairB::KC`), balanced, a multiple of 32 (whole AMX
/// chunks). Long blocks mean fewer passes over C (each depth block loads and stores every C tile once) and
/// longer decoded runs; measured at 7B shapes on a busy 2-core Sapphire Rapids (best of 15 single-thread runs,
/// GFLOP/s at KC 256 / 512 / 1024 / 2048): forward 90 / 82 / 113 / 160, backward 107 / 106 / 148 / 119. A's
/// block (MC × KC bf16: 1 MiB at 256 × 2048) still fits a 2 MiB L2.
#[doc(hidden)]
pub static KC_TRY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Rows of A packed at once.
const MC: usize = 256;
/// Weight columns decoded at once (4 panels of 32): small enough that the block is still in L2 when the
/// row loop reaches its last panel.
const NC: usize = 128;

/// `C[m, n] = alpha · A[m, k] · B[k, n] + beta · C` (C row-major, row stride `ldc`), B a weight source.
pub struct Product<'a, B: PairB> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Strided<'a>,
    pub b: &'a B,
    pub alpha: f32,
    pub beta: f32,
    pub ldc: usize,
}

#[derive(Clone, Copy, Debug)]
struct Share {
    m0: usize,
    m1: usize,
    n0: usize,
    n1: usize,
}

/// Splits C along N in whole panels (each worker decodes only its own columns of the weight) unless N has
/// too few panels, then along M in whole micro-tiles.
fn split(m: usize, n: usize, mr: usize, parts: usize) -> Vec<Share> {
    let (n_tiles, m_tiles) = (n.div_ceil(NR), m.div_ceil(mr));
    let along_n = n_tiles >= 2 * parts || n_tiles >= m_tiles;
    let (tiles, tile, len) = if along_n { (n_tiles, NR, n) } else { (m_tiles, mr, m) };
    let parts = parts.min(tiles).max(1);
    (0..parts)
        .map(|i| {
            let lo = (tiles * i / parts * tile).min(len);
            let hi = (tiles * (i + 1) / parts * tile).min(len);
            if along_n {
                Share { m0: 0, m1: m, n0: lo, n1: hi }
            } else {
                Share { m0: lo, m1: hi, n0: 0, n1: n }
            }
        })
        .collect()
}

thread_local! {
    /// Packed A, packed B and the packers' scratch, reused across calls on each pool thread.
    static BUFFERS: RefCell<(Vec<u32>, Vec<u32>, Scratch)> = RefCell::new((Vec::new(), Vec::new(), Scratch::default()));
}

/// Runs the product on `unit` with `threads` workers.
///
/// # Safety
/// `c` points to a row-major buffer of at least `(m - 1) * ldc + n` floats not aliased by A or B; `unit` must be
/// one this CPU has (`Dot`: AVX512-BF16; `Amx`: `amx::os::enable_tiles()` succeeded).
pub unsafe fn run<B: PairB>(p: &Product<B>, c: *mut f32, kernel: Kernel, unit: Unit, threads: usize) {
    run_with_tail(p, None, c, kernel, unit, threads);
}

/// As [`run`], then `C += tail.alpha · A2 · B2` (a LoRA term): AMX folds it into its tiles as extra depth (in
/// bf16, as the product's operands); the other units run it in f32 as a product of its own after theirs.
///
/// # Safety
/// As [`run`]; the tail's operands hold `m × tail.k` and `tail.k × n` values.
pub unsafe fn run_with_tail<B: PairB>(
    p: &Product<B>,
    tail: Option<&Tail>,
    c: *mut f32,
    kernel: Kernel,
    unit: Unit,
    threads: usize,
) {
    if p.m == 0 || p.n == 0 {
        return;
    }
    let route = match unit {
        Unit::Twin => crate::report::Route::Scalar,
        Unit::Dot => crate::report::Route::Avx512Bf16,
        Unit::Amx => crate::report::Route::Amx,
    };
    crate::report::note(crate::report::Family::GemmBf16, route);
    let ctx = PackCtx { kernel, map: *crate::nf4::codebook::dynamic_map() };
    let simd = unit != Unit::Twin && simd_ok(&ctx);
    // AMX products run in their own nest; an empty depth (C = beta · C, no tiles) goes through the one below.
    // The term rides in AMX's tiles when C is not scaled (every weight product's case), else in a pass of its own.
    let amx = cfg!(target_arch = "x86_64") && unit == Unit::Amx && p.k > 0;
    let (folded, separate) = if amx && p.alpha == 1.0 { (tail, None) } else { (None, tail) };
    if amx {
        #[cfg(target_arch = "x86_64")]
        super::amx::nest::run(p, folded, c, &ctx, simd, threads);
    } else {
        let c = SharedOut(c);
        let shares = split(p.m, p.n, unit.mr(), threads.max(1));
        crate::threads::pool().install(|| {
            shares.par_iter().with_max_len(1).for_each(|share| {
                let c = c;
                BUFFERS.with(|cell| {
                    let (abuf, bbuf, scratch) = &mut *cell.borrow_mut();
                    nest(p, *share, &ctx, simd, unit, c.0, abuf, bbuf, scratch);
                });
            })
        });
    }
    if let Some(t) = separate {
        t.add_to(p.m, p.n, c, p.ldc, kernel, threads);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn nest<B: PairB>(
    p: &Product<B>,
    share: Share,
    ctx: &PackCtx,
    simd: bool,
    unit: Unit,
    c: *mut f32,
    abuf: &mut Vec<u32>,
    bbuf: &mut Vec<u32>,
    scratch: &mut Scratch,
) {
    let mr = unit.mr();
    if p.k == 0 {
        for i in share.m0..share.m1 {
            for j in share.n0..share.n1 {
                let out = c.add(i * p.ldc + j);
                *out = if p.beta == 0.0 { 0.0 } else { p.beta * *out };
            }
        }
        return;
    }
    let mut tile = vec![0.0f32; mr * NR];
    let kc_cap = match KC_TRY.load(std::sync::atomic::Ordering::Relaxed) {
        0 => B::KC,
        tried => tried,
    };
    let kc_step = balanced(p.k, kc_cap, 32);
    let mc_step = balanced(share.m1 - share.m0, MC, mr);
    // Loop 3: rows of C.
    for ic in (share.m0..share.m1).step_by(mc_step) {
        let mc = mc_step.min(share.m1 - ic);
        let row_tiles = mc.div_ceil(mr);
        // Loop 4: depth; the first block applies beta, the rest accumulate.
        for pc in (0..p.k).step_by(kc_step) {
            let kc = kc_step.min(p.k - pc);
            let kq = padded_pairs(kc);
            let beta = if pc == 0 { p.beta } else { 1.0 };
            grow(abuf, row_tiles * mr * kq);
            pack_a_dot(simd, &p.a, ic, mc, pc, kc, abuf, scratch);
            // Loop 5: blocks of weight columns, decoded into pair panels.
            for jc in (share.n0..share.n1).step_by(NC) {
                let nc = NC.min(share.n1 - jc);
                grow(bbuf, nc.div_ceil(NR) * NR * kq);
                p.b.pack_pairs(ctx, simd, pc, kc, jc, nc, bbuf, scratch);
                // Loop 2: 32-column panels.
                for jr in (0..nc).step_by(NR) {
                    let nv = NR.min(nc - jr);
                    let bp = bbuf.as_ptr().add(jr * kq);
                    // Loop 1: micro-tiles of MR rows.
                    for ir in (0..mc).step_by(mr) {
                        let mv = mr.min(mc - ir);
                        let ap = abuf.as_ptr().add(ir * kq);
                        let cp = c.add((ic + ir) * p.ldc + jc + jr);
                        let direct = mv == mr && nv == NR && p.alpha == 1.0 && (beta == 0.0 || beta == 1.0);
                        if direct {
                            micro(unit, kq, ap, bp, cp, p.ldc, beta == 1.0);
                        } else {
                            // Edge or scaled tile: computed whole into scratch, merged with alpha and beta.
                            micro(unit, kq, ap, bp, tile.as_mut_ptr(), NR, false);
                            merge(&tile, cp, p.ldc, mv, nv, p.alpha, beta);
                        }
                    }
                }
            }
        }
    }
}

fn grow(buf: &mut Vec<u32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// One `mr × 32` tile: `C = A·B` (`add`: `C += A·B`).
unsafe fn micro(unit: Unit, kq: usize, a: *const u32, b: *const u32, c: *mut f32, ldc: usize, add: bool) {
    let beta = if add { 1.0 } else { 0.0 };
    match unit {
        Unit::Twin => {
            let a = std::slice::from_raw_parts(a, kq * DOT_MR);
            let b = std::slice::from_raw_parts(b, kq * NR);
            let c = std::slice::from_raw_parts_mut(c, (DOT_MR - 1) * ldc + NR);
            twin_tile(a, b, c, ldc, add);
        }
        #[cfg(target_arch = "x86_64")]
        Unit::Dot => tile_8x32(kq, a, b, c, ldc, 1.0, beta),
        #[cfg(target_arch = "x86_64")]
        Unit::Amx => unreachable!("AMX products run in amx/nest.rs"),
        #[allow(unreachable_patterns)]
        _ => unreachable!("{beta}"),
    }
}

/// The plain twin of the micro-kernels: `DOT_MR × 32` from pair panels, each pair's two products added to an
/// f32 accumulator (bf16 products are exact in f32, so only the order of the sums differs from the units).
pub fn twin_tile(a: &[u32], b: &[u32], c: &mut [f32], ldc: usize, add: bool) {
    let lo = |v: u32| f32::from_bits(v << 16);
    let hi = |v: u32| f32::from_bits(v & 0xffff_0000);
    let mut acc = [[0.0f32; NR]; DOT_MR];
    for (a_step, b_step) in a.chunks_exact(DOT_MR).zip(b.chunks_exact(NR)) {
        for (row, &av) in acc.iter_mut().zip(a_step) {
            for (cell, &bv) in row.iter_mut().zip(b_step) {
                *cell += lo(av) * lo(bv) + hi(av) * hi(bv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (out, &v) in c[r * ldc..r * ldc + NR].iter_mut().zip(row) {
            *out = if add { *out + v } else { v };
        }
    }
}

/// `C[..mv, ..nv] = alpha · tile + beta · C` (beta 0 never reads C).
unsafe fn merge(tile: &[f32], c: *mut f32, ldc: usize, mv: usize, nv: usize, alpha: f32, beta: f32) {
    for r in 0..mv {
        for j in 0..nv {
            let out = c.add(r * ldc + j);
            let v = alpha * tile[r * NR + j];
            *out = if beta == 0.0 { v } else { v + beta * *out };
        }
    }
}
