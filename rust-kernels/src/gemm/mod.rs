//! GEMMs: dense f32 with arbitrary strides, and the NF4 dequant-GEMMs of training
//! (`Y = X · Wᵀ` forward, `dX = dY · W` backward to the input; W is frozen, so no gradient for W).
//! Each checks its arguments, then runs the BLIS nest of `driver.rs` on the active CPU path.

#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod bf16_native;
pub mod blocking;
pub mod driver;
pub mod gemv;
pub mod kernel;
pub mod naive;
pub mod native;
pub mod outer;
pub mod pack;
pub mod pairs;
pub mod thin;
pub mod wxt;
pub mod wxt_kernel;

use crate::dispatch::{Bf16Unit, Kernel};
use crate::error::{ensure, KResult};
use crate::nf4::Nf4Weight;
use driver::{gemm, Problem, Tail};
use pack::{Bf16Matrix, Direct, Strided, Transposed};
use pairs::PairWeight;

/// C's base pointer handed to the workers of one product, each writing its own disjoint tiles (a raw pointer
/// is neither Send nor Sync; the nests guarantee the disjointness).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Precision of the multiply: f32, or operands rounded to bf16 with f32 accumulation (QLoRA's usual
/// compute dtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    F32,
    Bf16,
}

/// How a call runs: which path and how many workers.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub kernel: Kernel,
    pub compute: Compute,
    /// What multiplies when `compute` is bf16 (products with a frozen weight; dense `sgemm` keeps
    /// `driver.rs`'s own choice).
    pub unit: Bf16Unit,
    pub threads: usize,
}

impl Run {
    /// The active path on every thread of the pool.
    pub fn current(compute: Compute) -> Run {
        let path = crate::dispatch::active_path();
        Run { kernel: path.kernel(), compute, unit: path.bf16_unit(), threads: crate::threads::threads() }
    }
}

/// Highest index touched by a strided `rows × cols` view, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)?.checked_add(1)
}

fn check_view(name: &str, len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> KResult<()> {
    let need = extent(rows, cols, rs, cs);
    ensure(need.is_some_and(|need| need <= len), || {
        format!("{name}: a {rows}×{cols} view with strides ({rs}, {cs}) needs {need:?} elements, buffer has {len}")
    })
}

/// `C = alpha · A · B + beta · C`; A is `m × k` at strides (rsa, csa), B is `k × n` at (rsb, csb), C is
/// row-major `m × n` with row stride `ldc`. Transposes are strides: `X · Wᵀ` is B = W with (1, k).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    c: &mut [f32],
    ldc: usize,
    alpha: f32,
    beta: f32,
    run: Run,
) -> KResult<()> {
    check_view("a", a.0.len(), m, k, a.1, a.2)?;
    check_view("b", b.0.len(), k, n, b.1, b.2)?;
    ensure(ldc >= n, || format!("ldc: row stride {ldc} is less than n = {n}"))?;
    check_view("c", c.len(), m, n, ldc, 1)?;
    let b = Strided { data: b.0, rs: b.1, cs: b.2 };
    let a = Strided { data: a.0, rs: a.1, cs: a.2 };
    if run.compute == Compute::F32 && thin::applies(m, n, k, &a, run.kernel) {
        // LoRA's rank-wide factors: no packing of the big side, no padded tiles.
        unsafe { thin::gemm(m, n, k, a, b, c.as_mut_ptr(), ldc, alpha, beta, run.kernel, run.threads) };
        return Ok(());
    }
    if run.compute == Compute::F32 {
        if let Some((landing, g, s)) = outer::plan(m, n, k, &a, &b, run.kernel) {
            // LoRA's factor gradients (dB, dA): the long operand read in place, no padded tiles.
            let (long, narrow) = if landing == outer::Landing::Rows { (m, n) } else { (n, m) };
            let (kernel, threads) = (run.kernel, run.threads);
            unsafe {
                outer::gemm(landing, long, narrow, k, g, s, c.as_mut_ptr(), ldc, alpha, beta, kernel, threads)
            };
            return Ok(());
        }
    }
    if run.compute == Compute::F32 && weight_natural(m, n, k, &a, &b, run.kernel) {
        // B is the big operand (a weight): broadcast where it lies (Wᵀ) or packed by copy (W).
        let source = if b.rs == 1 { wxt::Source::InPlace(b) } else { wxt::Source::Panels(&b) };
        let p = wxt::Problem { m, n, k, a, b: source, alpha, beta, ldc, tail: None };
        unsafe { wxt::run(&p, c.as_mut_ptr(), run.kernel, run.threads) };
        return Ok(());
    }
    let p = Problem { m, n, k, a, b: &b, alpha, beta, ldc, tail: None };
    unsafe { gemm(&p, c.as_mut_ptr(), run.kernel, run.compute, run.threads) };
    Ok(())
}

/// Whether a dense product is activation rows times a big weight, for `wxt.rs`: A row-major, B at least as
/// wide as A is tall and big enough (`wxt::pays`; the other shapes, e.g. a weight's gradient `dYᵀ · X`, keep
/// the BLIS nest); B = Wᵀ (the forward) on every path, other layouts where `wxt::runs_backward`.
fn weight_natural(m: usize, n: usize, k: usize, a: &Strided, b: &Strided, kernel: Kernel) -> bool {
    a.cs == 1 && n >= m && wxt::pays(n, k) && (b.rs == 1 || wxt::runs_backward(kernel))
}

/// A LoRA-style low-rank term added to a frozen weight's product in the same pass over the output:
/// `scale · left · rightᵀ` in the forward, `scale · left · right` in the backward. `left` is `[m, rank]`;
/// `right` is laid out like the weight (`[out, rank]` forward, `[rank, in]` backward).
#[derive(Clone, Copy)]
pub struct LowRank<'a> {
    pub left: &'a [f32],
    pub right: &'a [f32],
    pub rank: usize,
    pub scale: f32,
}

impl LowRank<'_> {
    fn check(&self, m: usize, other: usize, right_shape: &str) -> KResult<()> {
        check_len("low-rank left", self.left.len(), m, self.rank, "m × rank")?;
        check_len("low-rank right", self.right.len(), other, self.rank, right_shape)
    }
}

/// Forward through a frozen weight: `Y[m, rows] (+)= X[m, cols] · Wᵀ (+ scale · L · Rᵀ)` (W in NF4 or bf16).
pub fn weight_forward<W: PairWeight>(
    w: &W,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    accumulate: bool,
    low: Option<LowRank>,
    run: Run,
) -> KResult<()> {
    check_len("x", x.len(), m, w.cols(), "m × in")?;
    check_len("y", y.len(), m, w.rows(), "m × out")?;
    if let Some(l) = &low {
        l.check(m, w.rows(), "out × rank")?;
    }
    let tail = low.map(|l| Tail {
        k: l.rank,
        a: Strided { data: l.left, rs: l.rank, cs: 1 },
        b: Strided { data: l.right, rs: 1, cs: l.rank },
        alpha: l.scale,
    });
    if m <= gemv::MAX_ROWS {
        gemv::gemv(w, x, m, y, accumulate, run.kernel, run.threads);
        if let Some(t) = tail {
            // Generation's few rows: the low-rank term as its own small product.
            unsafe { t.add_to(m, w.rows(), y.as_mut_ptr(), w.rows(), run.kernel, run.threads) };
        }
        return Ok(());
    }
    let a = Strided { data: x, rs: w.cols(), cs: 1 };
    let beta = if accumulate { 1.0 } else { 0.0 };
    if let Some(unit) = native_unit(run) {
        let p = native::Product {
            m,
            n: w.rows(),
            k: w.cols(),
            a,
            b: &Transposed(w),
            alpha: 1.0,
            beta,
            ldc: w.rows(),
        };
        unsafe { native::run_with_tail(&p, tail.as_ref(), y.as_mut_ptr(), run.kernel, unit, run.threads) };
        return Ok(());
    }
    if run.compute == Compute::F32 && wxt::pays(w.rows(), w.cols()) {
        // W's rows decoded per block as the broadcast side: no transpose of the weight.
        let source = wxt::Source::WeightRows(w);
        let p =
            wxt::Problem { m, n: w.rows(), k: w.cols(), a, b: source, alpha: 1.0, beta, ldc: w.rows(), tail };
        unsafe { wxt::run(&p, y.as_mut_ptr(), run.kernel, run.threads) };
        return Ok(());
    }
    let p =
        Problem { m, n: w.rows(), k: w.cols(), a, b: &Transposed(w), alpha: 1.0, beta, ldc: w.rows(), tail };
    unsafe { gemm(&p, y.as_mut_ptr(), run.kernel, run.compute, run.threads) };
    Ok(())
}

/// The native bf16 unit a weight product runs on, if any: bf16 compute on the AVX-512 family with a unit
/// this CPU has (a `Run` naming a missing unit falls back to rounding + FMAs rather than faulting).
fn native_unit(run: Run) -> Option<native::Unit> {
    if run.compute != Compute::Bf16 || run.kernel != Kernel::Avx512 {
        return None;
    }
    let cpu = crate::dispatch::cpu();
    match native::Unit::of(run.unit)? {
        native::Unit::Dot if cpu.avx512_bf16 => Some(native::Unit::Dot),
        native::Unit::Amx if cpu.amx_bf16 => Some(native::Unit::Amx),
        _ => None,
    }
}

/// Backward to the input through a frozen weight: `dX[m, cols] (+)= dY[m, rows] · W (+ scale · L · R)`.
pub fn weight_backward<W: PairWeight>(
    w: &W,
    dy: &[f32],
    m: usize,
    dx: &mut [f32],
    accumulate: bool,
    low: Option<LowRank>,
    run: Run,
) -> KResult<()> {
    check_len("dy", dy.len(), m, w.rows(), "m × out")?;
    check_len("dx", dx.len(), m, w.cols(), "m × in")?;
    if let Some(l) = &low {
        l.check(m, w.cols(), "rank × in")?;
    }
    let tail = low.map(|l| Tail {
        k: l.rank,
        a: Strided { data: l.left, rs: l.rank, cs: 1 },
        b: Strided { data: l.right, rs: w.cols(), cs: 1 },
        alpha: l.scale,
    });
    let a = Strided { data: dy, rs: w.rows(), cs: 1 };
    let beta = if accumulate { 1.0 } else { 0.0 };
    if let Some(unit) = native_unit(run) {
        let p = native::Product {
            m,
            n: w.cols(),
            k: w.rows(),
            a,
            b: &Direct(w),
            alpha: 1.0,
            beta,
            ldc: w.cols(),
        };
        unsafe { native::run_with_tail(&p, tail.as_ref(), dx.as_mut_ptr(), run.kernel, unit, run.threads) };
        return Ok(());
    }
    if run.compute == Compute::F32 && wxt::pays(w.rows(), w.cols()) && wxt::runs_backward(run.kernel) {
        // W's rows decoded, a few at a time, into MR-wide panels of the broadcast side.
        let source = wxt::Source::WeightPanels(w);
        let p =
            wxt::Problem { m, n: w.cols(), k: w.rows(), a, b: source, alpha: 1.0, beta, ldc: w.cols(), tail };
        unsafe { wxt::run(&p, dx.as_mut_ptr(), run.kernel, run.threads) };
        return Ok(());
    }
    let p = Problem { m, n: w.cols(), k: w.rows(), a, b: &Direct(w), alpha: 1.0, beta, ldc: w.cols(), tail };
    unsafe { gemm(&p, dx.as_mut_ptr(), run.kernel, run.compute, run.threads) };
    Ok(())
}

/// Forward: `Y[m, out] (+)= X[m, in] · Wᵀ (+ low-rank term)` for W `[out, in]` in NF4.
pub fn nf4_forward(
    w: &Nf4Weight,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    accumulate: bool,
    low: Option<LowRank>,
    run: Run,
) -> KResult<()> {
    weight_forward(w, x, m, y, accumulate, low, run)
}

/// Backward to the input: `dX[m, in] (+)= dY[m, out] · W (+ low-rank term)` for W `[out, in]` in NF4.
pub fn nf4_backward(
    w: &Nf4Weight,
    dy: &[f32],
    m: usize,
    dx: &mut [f32],
    accumulate: bool,
    low: Option<LowRank>,
    run: Run,
) -> KResult<()> {
    weight_backward(w, dy, m, dx, accumulate, low, run)
}

/// Forward with a bf16 weight: `Y[m, rows] (+)= X[m, cols] · Wᵀ`.
pub fn bf16_forward(
    w: Bf16Matrix,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    accumulate: bool,
    run: Run,
) -> KResult<()> {
    check_len("w", w.bits.len(), w.rows, w.cols, "rows × cols")?;
    weight_forward(&w, x, m, y, accumulate, None, run)
}

/// Backward to the input with a bf16 weight: `dX[m, cols] (+)= dY[m, rows] · W`.
pub fn bf16_backward(
    w: Bf16Matrix,
    dy: &[f32],
    m: usize,
    dx: &mut [f32],
    accumulate: bool,
    run: Run,
) -> KResult<()> {
    check_len("w", w.bits.len(), w.rows, w.cols, "rows × cols")?;
    weight_backward(&w, dy, m, dx, accumulate, None, run)
}

/// Rows `ids` of a bf16 matrix, widened to f32 (an embedding lookup): `out[i, :] = W[ids[i], :]`.
pub fn bf16_gather_rows(w: Bf16Matrix, ids: &[u32], out: &mut [f32]) -> KResult<()> {
    check_len("w", w.bits.len(), w.rows, w.cols, "rows × cols")?;
    check_len("out", out.len(), ids.len(), w.cols, "ids × cols")?;
    for (i, (&id, row)) in ids.iter().zip(out.chunks_exact_mut(w.cols)).enumerate() {
        let id = id as usize;
        ensure(id < w.rows, || format!("ids[{i}]: {id} is out of range for {} rows", w.rows))?;
        pack::widen_bf16(crate::dispatch::active(), &w.bits[id * w.cols..(id + 1) * w.cols], row);
    }
    Ok(())
}

fn check_len(name: &str, len: usize, rows: usize, cols: usize, shape: &str) -> KResult<()> {
    ensure(rows.checked_mul(cols) == Some(len), || {
        format!("{name}: expected {rows}×{cols} = {} elements ({shape}), got {len}", rows * cols)
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod native_tests;

#[cfg(test)]
mod wxt_tests;
