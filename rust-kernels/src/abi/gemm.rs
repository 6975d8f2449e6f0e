//! Dense f32 GEMM and the NF4 dequant-GEMMs.

use super::{run, slice, slice_mut};
use crate::error::{ensure, KResult, KernelError};
use crate::gemm::pack::Bf16Matrix;
use crate::gemm::{
    bf16_backward, bf16_forward, bf16_gather_rows, nf4_backward, nf4_forward, sgemm, Compute, LowRank, Run,
};
use crate::handles;

fn compute(code: i32) -> KResult<Compute> {
    match code {
        0 => Ok(Compute::F32),
        1 => Ok(Compute::Bf16),
        _ => Err(KernelError::invalid(format!("compute: expected 0 (f32) or 1 (bf16), got {code}"))),
    }
}

/// `int32_t qlora_sgemm(uint32_t m, uint32_t n, uint32_t k, const float *a, uint32_t a_len, uint32_t rsa,
///   uint32_t csa, const float *b, uint32_t b_len, uint32_t rsb, uint32_t csb, float *c, uint32_t c_len,
///   uint32_t ldc, float alpha, float beta, int32_t compute)` — `C = alpha·A·B + beta·C` (strided A, B;
///   row-major C). `beta == 0` ignores C's prior contents.
#[no_mangle]
pub unsafe extern "C" fn qlora_sgemm(
    m: u32,
    n: u32,
    k: u32,
    a: *const f32,
    a_len: u32,
    rsa: u32,
    csa: u32,
    b: *const f32,
    b_len: u32,
    rsb: u32,
    csb: u32,
    c: *mut f32,
    c_len: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
    compute_code: i32,
) -> i32 {
    run(|| {
        let a = slice(a, a_len, "a")?;
        let b = slice(b, b_len, "b")?;
        let c = slice_mut(c, c_len, "c")?;
        let run = Run::current(compute(compute_code)?);
        let (m, n, k) = (m as usize, n as usize, k as usize);
        sgemm(
            m,
            n,
            k,
            (a, rsa as usize, csa as usize),
            (b, rsb as usize, csb as usize),
            c,
            ldc as usize,
            alpha,
            beta,
            run,
        )
    })
}

/// `int32_t qlora_nf4_matmul(uint32_t handle, const float *x, uint32_t x_len, uint32_t m, float *y,
///   uint32_t y_len, int32_t accumulate, int32_t compute, const float *left, uint32_t left_len,
///   const float *right, uint32_t right_len, uint32_t rank, float scale)` —
///   `Y[m, out] (+)= X[m, in] · Wᵀ + scale · left[m, rank] · right[out, rank]ᵀ` (rank 0: no low-rank term;
///   left and right may then be empty).
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_matmul(
    handle: u32,
    x: *const f32,
    x_len: u32,
    m: u32,
    y: *mut f32,
    y_len: u32,
    accumulate: i32,
    compute_code: i32,
    left: *const f32,
    left_len: u32,
    right: *const f32,
    right_len: u32,
    rank: u32,
    scale: f32,
) -> i32 {
    run(|| {
        let w = handles::get(handle)?;
        let x = slice(x, x_len, "x")?;
        let y = slice_mut(y, y_len, "y")?;
        let low = low_rank(left, left_len, right, right_len, rank, scale)?;
        nf4_forward(&w, x, m as usize, y, accumulate != 0, low, Run::current(compute(compute_code)?))
    })
}

/// `int32_t qlora_nf4_matmul_t(uint32_t handle, const float *dy, uint32_t dy_len, uint32_t m, float *dx,
///   uint32_t dx_len, int32_t accumulate, int32_t compute, const float *left, uint32_t left_len,
///   const float *right, uint32_t right_len, uint32_t rank, float scale)` —
///   `dX[m, in] (+)= dY[m, out] · W + scale · left[m, rank] · right[rank, in]` (rank 0: no low-rank term).
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_matmul_t(
    handle: u32,
    dy: *const f32,
    dy_len: u32,
    m: u32,
    dx: *mut f32,
    dx_len: u32,
    accumulate: i32,
    compute_code: i32,
    left: *const f32,
    left_len: u32,
    right: *const f32,
    right_len: u32,
    rank: u32,
    scale: f32,
) -> i32 {
    run(|| {
        let w = handles::get(handle)?;
        let dy = slice(dy, dy_len, "dy")?;
        let dx = slice_mut(dx, dx_len, "dx")?;
        let low = low_rank(left, left_len, right, right_len, rank, scale)?;
        nf4_backward(&w, dy, m as usize, dx, accumulate != 0, low, Run::current(compute(compute_code)?))
    })
}

/// The optional low-rank operands of the NF4 products (rank 0 = none).
unsafe fn low_rank<'a>(
    left: *const f32,
    left_len: u32,
    right: *const f32,
    right_len: u32,
    rank: u32,
    scale: f32,
) -> KResult<Option<LowRank<'a>>> {
    if rank == 0 {
        return Ok(None);
    }
    ensure(scale.is_finite(), || format!("scale: the low-rank scale must be finite, got {scale}"))?;
    Ok(Some(LowRank {
        left: slice(left, left_len, "left")?,
        right: slice(right, right_len, "right")?,
        rank: rank as usize,
        scale,
    }))
}

/// `int32_t qlora_bf16_matmul(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols, const float *x,
///   uint32_t x_len, uint32_t m, float *y, uint32_t y_len, int32_t accumulate, int32_t compute)` —
///   `Y[m, rows] (+)= X · Wᵀ` for W `[rows, cols]` stored as bf16 bits (compute 0 = f32, 1 = bf16).
#[no_mangle]
pub unsafe extern "C" fn qlora_bf16_matmul(
    w: *const u16,
    w_len: u32,
    rows: u32,
    cols: u32,
    x: *const f32,
    x_len: u32,
    m: u32,
    y: *mut f32,
    y_len: u32,
    accumulate: i32,
    compute_code: i32,
) -> i32 {
    run(|| {
        let w = Bf16Matrix { bits: slice(w, w_len, "w")?, rows: rows as usize, cols: cols as usize };
        let x = slice(x, x_len, "x")?;
        let y = slice_mut(y, y_len, "y")?;
        bf16_forward(w, x, m as usize, y, accumulate != 0, Run::current(compute(compute_code)?))
    })
}

/// `int32_t qlora_bf16_matmul_t(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols,
///   const float *dy, uint32_t dy_len, uint32_t m, float *dx, uint32_t dx_len, int32_t accumulate,
///   int32_t compute)` — `dX[m, cols] (+)= dY[m, rows] · W` (compute 0 = f32, 1 = bf16).
#[no_mangle]
pub unsafe extern "C" fn qlora_bf16_matmul_t(
    w: *const u16,
    w_len: u32,
    rows: u32,
    cols: u32,
    dy: *const f32,
    dy_len: u32,
    m: u32,
    dx: *mut f32,
    dx_len: u32,
    accumulate: i32,
    compute_code: i32,
) -> i32 {
    run(|| {
        let w = Bf16Matrix { bits: slice(w, w_len, "w")?, rows: rows as usize, cols: cols as usize };
        let dy = slice(dy, dy_len, "dy")?;
        let dx = slice_mut(dx, dx_len, "dx")?;
        bf16_backward(w, dy, m as usize, dx, accumulate != 0, Run::current(compute(compute_code)?))
    })
}

/// `int32_t qlora_bf16_gather_rows(const uint16_t *w, uint32_t w_len, uint32_t rows, uint32_t cols,
///   const uint32_t *ids, uint32_t ids_len, float *out, uint32_t out_len)` — embedding lookup, widened to f32.
#[no_mangle]
pub unsafe extern "C" fn qlora_bf16_gather_rows(
    w: *const u16,
    w_len: u32,
    rows: u32,
    cols: u32,
    ids: *const u32,
    ids_len: u32,
    out: *mut f32,
    out_len: u32,
) -> i32 {
    run(|| {
        let w = Bf16Matrix { bits: slice(w, w_len, "w")?, rows: rows as usize, cols: cols as usize };
        bf16_gather_rows(w, slice(ids, ids_len, "ids")?, slice_mut(out, out_len, "out")?)
    })
}
