//! Micro-kernels: C[MR, NR] = alpha · (packed A micro-panel · packed B micro-panel) + beta · C.
//! Packed A: for each of `kc` steps, MR values (one per row). Packed B: for each step, NR values.
//! `beta == 0` never reads C (it may hold garbage or NaN).

use crate::dispatch::Kernel;
use crate::simd::Simd;

/// Signature shared by every path; `c` has row stride `rsc`.
pub type KernelFn =
    unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: usize, alpha: f32, beta: f32);

pub fn kernel_fn(kernel: Kernel) -> KernelFn {
    match kernel {
        Kernel::Scalar => scalar_tile,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => avx2_tile,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => avx512_tile,
        #[allow(unreachable_patterns)]
        _ => scalar_tile,
    }
}

const SCALAR_MR: usize = 4;
const SCALAR_NR: usize = 8;

/// Plain reference micro-kernel (no SIMD, no unsafe inside the math).
pub fn scalar_tile_safe(a: &[f32], b: &[f32], c: &mut [f32], rsc: usize, alpha: f32, beta: f32) {
    let kc = a.len() / SCALAR_MR;
    let mut acc = [[0.0f32; SCALAR_NR]; SCALAR_MR];
    for p in 0..kc {
        let a_step = &a[p * SCALAR_MR..(p + 1) * SCALAR_MR];
        let b_step = &b[p * SCALAR_NR..(p + 1) * SCALAR_NR];
        for (row, &av) in acc.iter_mut().zip(a_step) {
            for (cell, &bv) in row.iter_mut().zip(b_step) {
                *cell += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let c_row = &mut c[r * rsc..r * rsc + SCALAR_NR];
        for (out, &v) in c_row.iter_mut().zip(row) {
            *out = if beta == 0.0 { alpha * v } else { alpha * v + beta * *out };
        }
    }
}

unsafe fn scalar_tile(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    let a = std::slice::from_raw_parts(a, kc * SCALAR_MR);
    let b = std::slice::from_raw_parts(b, kc * SCALAR_NR);
    let c = std::slice::from_raw_parts_mut(c, (SCALAR_MR - 1) * rsc + SCALAR_NR);
    scalar_tile_safe(a, b, c, rsc, alpha, beta);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: usize, alpha: f32, beta: f32) {
    simd_tile::<crate::simd::avx2::Avx2, 6>(kc, a, b, c, rsc, alpha, beta)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn avx512_tile(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    simd_tile::<crate::simd::avx512::Avx512, 8>(kc, a, b, c, rsc, alpha, beta)
}

/// One depth step of the tile: MR broadcasts of A times two vectors of B.
#[inline(always)]
unsafe fn k_step<S: Simd, const MR: usize>(
    acc: &mut [[S::V; 2]; MR],
    ap: &mut *const f32,
    bp: &mut *const f32,
) {
    let l = S::LANES;
    let b0 = S::load(*bp);
    let b1 = S::load(bp.add(l));
    for (r, row) in acc.iter_mut().enumerate() {
        let av = S::splat(*ap.add(r));
        row[0] = S::fma(av, b0, row[0]);
        row[1] = S::fma(av, b1, row[1]);
    }
    *ap = ap.add(MR);
    *bp = bp.add(2 * l);
}

/// k steps between two prefetches of C's lines.
const PREFETCH_EVERY: usize = 8;

/// The SIMD micro-kernel, written once: MR rows × two vectors of columns (NR = 2 · LANES).
#[inline(always)]
unsafe fn simd_tile<S: Simd, const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    let l = S::LANES;
    let mut acc = [[S::zero(); 2]; MR];
    let (mut ap, mut bp) = (a, b);
    // C is read (beta ≠ 0) or written only after the k loop; fetch its lines meanwhile, one every few steps
    // (all at once would hold every line-fill buffer while C comes from memory, stalling the panels' loads).
    let mut left = kc;
    for line in 0..2 * MR {
        if left < PREFETCH_EVERY {
            break;
        }
        crate::simd::prefetch_run(c.add(line / 2 * rsc + line % 2 * l) as *const u8, 1);
        for _ in 0..PREFETCH_EVERY {
            k_step::<S, MR>(&mut acc, &mut ap, &mut bp);
        }
        left -= PREFETCH_EVERY;
    }
    for _ in 0..left {
        k_step::<S, MR>(&mut acc, &mut ap, &mut bp);
    }
    let va = S::splat(alpha);
    for (r, row) in acc.iter().enumerate() {
        let out = c.add(r * rsc);
        for (h, &v) in row.iter().enumerate() {
            let p = out.add(h * l);
            let result = if beta == 0.0 {
                S::mul(va, v)
            } else if beta == 1.0 {
                S::fma(va, v, S::load(p))
            } else {
                S::fma(va, v, S::mul(S::splat(beta), S::load(p)))
            };
            S::store(p, result);
        }
    }
}
