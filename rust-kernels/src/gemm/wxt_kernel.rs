//! Micro-kernels of the weight-natural f32 nest (`wxt.rs`): a tile of `Cᵀ` (MR weight outputs × NR
//! activation rows) over `kc` depth steps. The weight side is read where it lies, one broadcast per row and
//! step: row r, step p at `rows[r] + p · ps` (a W row in place, a decoded block, or an MR-wide panel); the
//! activation side is a packed `kc × NR` panel. The result goes to a scratch tile `s` (row stride `lds`):
//! `s = alpha · acc` or, when `accumulate`, `s += alpha · acc`.

use crate::dispatch::Kernel;
use crate::simd::Simd;

/// The shape of a path's tile.
#[derive(Clone, Copy, Debug)]
pub struct TileShape {
    pub mr: usize,
    pub nr: usize,
}

/// Most rows any tile broadcasts (the size of the row-pointer array handed to a tile).
pub const MAX_MR: usize = 16;

/// Signature shared by every path. `rows` points to `mr` row pointers.
pub type TileFn = unsafe fn(
    kc: usize,
    rows: *const *const f32,
    ps: usize,
    panel: *const f32,
    s: *mut f32,
    lds: usize,
    alpha: f32,
    accumulate: bool,
);

/// The tile of each path: MR broadcasts × two vectors of activation rows. AVX-512: 8 × 32 (16 zmm
/// accumulators, two FMA ports × 4 cycles of latency need 8 in flight); AVX2: 6 × 16 (12 of 16 ymm).
pub fn tile_of(kernel: Kernel) -> (TileShape, TileFn) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => (TileShape { mr: 6, nr: 16 }, avx2_tile),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => (TileShape { mr: AVX512_MR, nr: AVX512_NV * 16 }, avx512_tile),
        #[allow(unreachable_patterns)]
        _ => (TileShape { mr: SCALAR_MR, nr: SCALAR_NR }, scalar_tile),
    }
}

const SCALAR_MR: usize = 4;
const AVX512_MR: usize = 8;
const AVX512_NV: usize = 2;
const SCALAR_NR: usize = 8;

/// The plain twin, any `mr × nr`: row r of the weight side is `rows[r]`, step p at `rows[r][p * ps]`.
#[allow(clippy::too_many_arguments)]
pub fn plain_tile(
    nr: usize,
    kc: usize,
    rows: &[&[f32]],
    ps: usize,
    panel: &[f32],
    s: &mut [f32],
    lds: usize,
    alpha: f32,
    accumulate: bool,
) {
    for (r, row) in rows.iter().enumerate() {
        for j in 0..nr {
            let mut acc = 0.0f32;
            for p in 0..kc {
                acc += row[p * ps] * panel[p * nr + j];
            }
            let out = &mut s[r * lds + j];
            *out = if accumulate { alpha * acc + *out } else { alpha * acc };
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn scalar_tile(
    kc: usize,
    rows: *const *const f32,
    ps: usize,
    panel: *const f32,
    s: *mut f32,
    lds: usize,
    alpha: f32,
    accumulate: bool,
) {
    let len = if kc == 0 { 0 } else { (kc - 1) * ps + 1 };
    let rows: [&[f32]; SCALAR_MR] = std::array::from_fn(|r| std::slice::from_raw_parts(*rows.add(r), len));
    let panel = std::slice::from_raw_parts(panel, kc * SCALAR_NR);
    let s = std::slice::from_raw_parts_mut(s, (SCALAR_MR - 1) * lds + SCALAR_NR);
    plain_tile(SCALAR_NR, kc, &rows, ps, panel, s, lds, alpha, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_tile(
    kc: usize,
    rows: *const *const f32,
    ps: usize,
    panel: *const f32,
    s: *mut f32,
    lds: usize,
    alpha: f32,
    accumulate: bool,
) {
    simd_tile::<crate::simd::avx2::Avx2, 6, 2>(kc, rows, ps, panel, s, lds, alpha, accumulate)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_tile(
    kc: usize,
    rows: *const *const f32,
    ps: usize,
    panel: *const f32,
    s: *mut f32,
    lds: usize,
    alpha: f32,
    accumulate: bool,
) {
    simd_tile::<crate::simd::avx512::Avx512, AVX512_MR, AVX512_NV>(
        kc, rows, ps, panel, s, lds, alpha, accumulate,
    )
}

/// Steps ahead at which the tile prefetches the activation panel.
const PANEL_AHEAD: usize = 8;

/// The SIMD tile, written once. Each step: two vector loads of the panel, MR broadcasts of the weight side
/// (straight from memory), 2 · MR FMAs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn simd_tile<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    rows: *const *const f32,
    ps: usize,
    panel: *const f32,
    s: *mut f32,
    lds: usize,
    alpha: f32,
    accumulate: bool,
) {
    let l = S::LANES;
    let rows: [*const f32; MR] = std::array::from_fn(|r| *rows.add(r));
    let mut acc = [[S::zero(); NV]; MR];
    let mut bp = panel;
    let mut at = 0;
    for _ in 0..kc {
        // The panel streams from L2: ask for its lines a few steps ahead.
        crate::simd::prefetch_run(bp.wrapping_add(PANEL_AHEAD * NV * l) as *const u8, NV * l * 4);
        let b: [S::V; NV] = std::array::from_fn(|h| S::load(bp.add(h * l)));
        for (row, &w) in acc.iter_mut().zip(&rows) {
            let a = S::splat(*w.add(at));
            for h in 0..NV {
                row[h] = S::fma(a, b[h], row[h]);
            }
        }
        bp = bp.add(NV * l);
        at += ps;
    }
    let va = S::splat(alpha);
    for (r, row) in acc.iter().enumerate() {
        for (h, &v) in row.iter().enumerate() {
            let out = s.add(r * lds + h * l);
            let result = if accumulate { S::fma(va, v, S::load(out)) } else { S::mul(va, v) };
            S::store(out, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::available;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn every_tile_matches_its_plain_twin_on_ragged_depths_and_both_strides() {
        for kernel in available() {
            let (shape, tile) = tile_of(kernel);
            let (mr, nr) = (shape.mr, shape.nr);
            for kc in [0, 1, 5, 17, 64, 131] {
                // ps = 1: rows of a decoded block (row stride kc + 3); ps = mr: an MR-wide panel.
                for (ps, row_step) in [(1, kc + 3), (mr, 1)] {
                    let w = values(mr * (kc + 3) + kc * mr + 8, 1);
                    let panel = values(kc * nr, 2);
                    let rows: Vec<&[f32]> = (0..mr).map(|r| &w[r * row_step..]).collect();
                    let ptrs: Vec<*const f32> = rows.iter().map(|r| r.as_ptr()).collect();
                    for (alpha, accumulate) in [(1.0, false), (0.5, true)] {
                        let lds = nr + 5;
                        let start = values(mr * lds, 3);
                        let mut want = start.clone();
                        plain_tile(nr, kc, &rows, ps, &panel, &mut want, lds, alpha, accumulate);
                        let mut got = start.clone();
                        unsafe {
                            tile(
                                kc,
                                ptrs.as_ptr(),
                                ps,
                                panel.as_ptr(),
                                got.as_mut_ptr(),
                                lds,
                                alpha,
                                accumulate,
                            )
                        };
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            // FMA vs separate rounding: within a few ulps of the depth's sum of |terms|.
                            let bound = 1e-5 * (kc as f32 + 1.0) + 1e-6;
                            assert!((g - w).abs() <= bound, "{kernel:?} kc {kc} ps {ps} [{i}]: {g} vs {w}");
                        }
                    }
                }
            }
        }
    }
}
