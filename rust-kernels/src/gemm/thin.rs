//! Thin products: C has at most 16 columns — LoRA's rank-r factors (`x·Aᵀ` and `dY·B` are `[tokens, r]`).
//! The BLIS nest would pack all of the big operand and multiply tiles padded to NR = 32 columns (half of
//! every FMA on zeros at r = 16 on AVX-512); here the small operand is packed once into rows of one register
//! width (zero-padded) and the big one is read in place, `R` rows at a time, one broadcast per element and
//! one FMA per vector of the small side. Only for an A whose rows are contiguous: reading R columns of a
//! column-major A walks a new cache line per step with a stride the prefetchers do not follow (measured
//! slower than packing); that case (LoRA's `dB = dYᵀ·xa`) is a sum of outer products, in `outer.rs`.

use super::pack::Strided;
use super::SharedOut;
use crate::dispatch::Kernel;
use crate::simd::Simd;

/// The widest C (columns of one packed row: 16 f32 = one AVX-512 vector, two AVX2 vectors).
pub const MAX_WIDTH: usize = 16;
/// Below this many rows the blocked GEMM is as good and splits better.
pub const MIN_ROWS: usize = 64;

/// Whether `C[m, n] = A·B` (depth k, A's strides `a`) takes the thin path on `kernel`.
pub fn applies(m: usize, n: usize, k: usize, a: &Strided, kernel: Kernel) -> bool {
    kernel != Kernel::Scalar && k > 0 && n <= MAX_WIDTH && m >= MIN_ROWS && a.cs == 1
}

/// `C = alpha · A · B + beta · C` (C row-major, row stride `ldc`); the caller checked the views and `applies`.
///
/// # Safety
/// `c` holds at least `(m - 1) * ldc + n` floats, not aliased by A or B; `kernel` is one this CPU runs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    kernel: Kernel,
    threads: usize,
) {
    crate::report::note(crate::report::Family::GemmF32, crate::report::Route::of_kernel(kernel));
    let packed = pack_narrow(k, n, &b);
    let out = SharedOut(c);
    let block = rows_per_block(kernel);
    let blocks = m.div_ceil(block);
    let parts = threads.max(1).min(blocks);
    let body = |part: usize| {
        // The whole wrapper, not its raw pointer field, is what the closure must capture (Send).
        #[allow(clippy::redundant_locals)]
        let out = out;
        for blk in blocks * part / parts..blocks * (part + 1) / parts {
            let i0 = blk * block;
            let rows = block.min(m - i0);
            let mut tile = [0.0f32; MAX_ROWS * MAX_WIDTH];
            rows_times_packed(kernel, k, &a, i0, rows, &packed, &mut tile);
            for r in 0..rows {
                for j in 0..n {
                    land(out.0.add((i0 + r) * ldc + j), tile[r * MAX_WIDTH + j], alpha, beta);
                }
            }
        }
    };
    crate::threads::run_parts(parts, body);
}

/// The narrow operand `[k, n]` (any strides) as k rows of `MAX_WIDTH`, zero-padded past n.
pub(super) fn pack_narrow(k: usize, n: usize, s: &Strided) -> Vec<f32> {
    let mut packed = vec![0.0f32; k * MAX_WIDTH];
    for p in 0..k {
        for j in 0..n {
            packed[p * MAX_WIDTH + j] = s.data[p * s.rs + j * s.cs];
        }
    }
    packed
}

/// `*cell = alpha · sum + beta · *cell`, not reading the cell when beta is 0.
///
/// # Safety
/// `cell` points to a valid f32 that no other thread writes.
#[inline(always)]
pub(super) unsafe fn land(cell: *mut f32, sum: f32, alpha: f32, beta: f32) {
    let v = alpha * sum;
    *cell = if beta == 0.0 { v } else { v + beta * *cell };
}

/// Rows of the long side per register tile: 12 × one vector on AVX-512, 6 × two vectors on AVX2 (12
/// accumulators either way: two FMA ports × 4 cycles of latency need at least 8 in flight).
fn rows_per_block(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Avx512 => 12,
        _ => 6,
    }
}

/// The most rows of any path's tile.
const MAX_ROWS: usize = 12;

/// `tile[r][0..16] = Σ_p big(i0 + r, p) · packed[p][0..16]` for `rows` rows.
fn rows_times_packed(
    kernel: Kernel,
    k: usize,
    big: &Strided,
    i0: usize,
    rows: usize,
    packed: &[f32],
    tile: &mut [f32; MAX_ROWS * MAX_WIDTH],
) {
    debug_assert!(packed.len() >= k * MAX_WIDTH && rows <= rows_per_block(kernel));
    match kernel {
        // Safety: the path was chosen for this CPU; the views were checked by the caller.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { rows_avx512(k, big, i0, rows, packed, tile) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { rows_avx2(k, big, i0, rows, packed, tile) },
        _ => rows_scalar(k, big, i0, rows, packed, tile),
    }
}

/// The plain twin.
pub fn rows_scalar(
    k: usize,
    big: &Strided,
    i0: usize,
    rows: usize,
    packed: &[f32],
    tile: &mut [f32; MAX_ROWS * MAX_WIDTH],
) {
    tile.fill(0.0);
    for r in 0..rows {
        for p in 0..k {
            let av = big.data[(i0 + r) * big.rs + p * big.cs];
            for j in 0..MAX_WIDTH {
                tile[r * MAX_WIDTH + j] += av * packed[p * MAX_WIDTH + j];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn rows_avx512(
    k: usize,
    big: &Strided,
    i0: usize,
    rows: usize,
    packed: &[f32],
    tile: &mut [f32; MAX_ROWS * MAX_WIDTH],
) {
    rows_simd::<crate::simd::avx512::Avx512, 12, 1>(k, big, i0, rows, packed, tile)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    k: usize,
    big: &Strided,
    i0: usize,
    rows: usize,
    packed: &[f32],
    tile: &mut [f32; MAX_ROWS * MAX_WIDTH],
) {
    rows_simd::<crate::simd::avx2::Avx2, 6, 2>(k, big, i0, rows, packed, tile)
}

/// `R` rows × `V` vectors of accumulators; rows past `rows` read row `i0` again (in bounds) and are dropped.
#[inline(always)]
unsafe fn rows_simd<S: Simd, const R: usize, const V: usize>(
    k: usize,
    big: &Strided,
    i0: usize,
    rows: usize,
    packed: &[f32],
    tile: &mut [f32; MAX_ROWS * MAX_WIDTH],
) {
    let l = S::LANES;
    debug_assert!(V * l == MAX_WIDTH && R <= MAX_ROWS);
    let base = big.data.as_ptr();
    let mut row_ptr = [base; R];
    for (r, p) in row_ptr.iter_mut().enumerate() {
        *p = base.add((i0 + if r < rows { r } else { 0 }) * big.rs);
    }
    let mut acc = [[S::zero(); V]; R];
    let mut bp = packed.as_ptr();
    let cs = big.cs;
    for p in 0..k {
        let mut bv = [S::zero(); V];
        for (v, slot) in bv.iter_mut().enumerate() {
            *slot = S::load(bp.add(v * l));
        }
        for r in 0..R {
            let av = S::splat(*row_ptr[r].add(p * cs));
            for v in 0..V {
                acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
        }
        bp = bp.add(MAX_WIDTH);
    }
    for (r, row) in acc.iter().enumerate().take(rows) {
        for (v, &val) in row.iter().enumerate() {
            S::store(tile.as_mut_ptr().add(r * MAX_WIDTH + v * l), val);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::naive::{abs_dot, assert_sgemm_matches_oracle, test_values as values};

    /// LoRA's shapes and ragged ones: rank 16 and narrower, rows not a multiple of any tile (a column-major
    /// A runs in `outer.rs`).
    const SHAPES: [(usize, usize, usize); 6] =
        [(64, 16, 1), (100, 16, 37), (257, 13, 300), (70, 1, 5), (131, 9, 1031), (300, 8, 33)];

    #[test]
    fn thin_products_match_the_oracle_on_every_path_and_layout() {
        let mut ran = Vec::new();
        for kernel in crate::dispatch::available() {
            for &(m, n, k) in &SHAPES {
                // A plain (the thin path) or transposed, B plain or transposed (LoRA uses each combination).
                for (rsa, csa) in [(k, 1), (1, m)] {
                    let view = Strided { data: &[], rs: rsa, cs: csa };
                    assert_eq!(applies(m, n, k, &view, kernel), kernel != Kernel::Scalar && csa == 1);
                    for (rsb, csb) in [(n, 1), (1, k)] {
                        assert_sgemm_matches_oracle(kernel, (m, n, k), (rsa, csa), (rsb, csb));
                    }
                }
            }
            ran.push(format!("{kernel:?}"));
        }
        println!("thin GEMM paths exercised: {}", ran.join(", "));
    }

    #[test]
    fn simd_tiles_equal_the_plain_twin_up_to_fused_rounding() {
        for kernel in crate::dispatch::available().into_iter().filter(|&k| k != Kernel::Scalar) {
            let (k, rows) = (77, rows_per_block(kernel));
            let big_data = values(40 * k, 4);
            let big = Strided { data: &big_data, rs: k, cs: 1 };
            let packed = values(k * MAX_WIDTH, 5);
            for i0 in [0, 17, 40 - rows] {
                for r in [1, rows - 1, rows] {
                    let (mut got, mut want) =
                        ([0.0f32; MAX_ROWS * MAX_WIDTH], [0.0f32; MAX_ROWS * MAX_WIDTH]);
                    rows_times_packed(kernel, k, &big, i0, r, &packed, &mut got);
                    rows_scalar(k, &big, i0, r, &packed, &mut want);
                    for idx in 0..r * MAX_WIDTH {
                        let scale = abs_dot(
                            k,
                            |p| big_data[(i0 + idx / MAX_WIDTH) * k + p],
                            |p| packed[p * MAX_WIDTH + idx % MAX_WIDTH],
                        );
                        assert!(
                            ((got[idx] - want[idx]) as f64).abs() <= 1e-6 * scale,
                            "{kernel:?} rows {i0}+{r} [{idx}]"
                        );
                    }
                }
            }
        }
    }
}
