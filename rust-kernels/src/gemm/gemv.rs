//! Few-row products (generation feeds one token at a time): `Y[m, rows] = X[m, cols] · Wᵀ` for small m. The
//! blocked GEMM would pack (dequantize) all of W for one row of X, then multiply padded tiles; here each
//! row of W is decoded once into a scratch run and dotted with the m rows of X.

use super::pack::{PackCtx, Weight};
use super::SharedOut;
use crate::dispatch::Kernel;
use crate::simd::Simd;
use rayon::prelude::*;

/// Up to this many rows of X take the few-row path.
pub const MAX_ROWS: usize = 4;

/// Rows of W handed to one rayon task (enough work to amortize the task, few enough to balance).
const ROWS_PER_TASK: usize = 16;

/// `Y (+)= X · Wᵀ` with X `[m, cols]`, Y `[m, rows]`; `m ≤ MAX_ROWS`.
pub fn gemv<W: Weight>(
    w: &W,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    accumulate: bool,
    kernel: Kernel,
    threads: usize,
) {
    let (rows, cols) = (w.rows(), w.cols());
    debug_assert!(m <= MAX_ROWS && x.len() == m * cols && y.len() == m * rows);
    // Few rows multiply in f32 whatever the compute precision asked for.
    crate::report::note(crate::report::Family::GemmF32, crate::report::Route::of_kernel(kernel));
    let ctx = PackCtx { kernel, map: *crate::nf4::codebook::dynamic_map() };
    let out = SharedOut(y.as_mut_ptr());
    let tasks = rows.div_ceil(ROWS_PER_TASK);
    // One task: rows of W [task · ROWS_PER_TASK, …); each output element is written by exactly one task and
    // depends only on its row of W and its row of X, so any task order gives the same bits.
    let task_body = |scratch: &mut Vec<f32>, task: usize| {
        let out = out;
        for j in task * ROWS_PER_TASK..((task + 1) * ROWS_PER_TASK).min(rows) {
            w.decode(&ctx, j * cols, scratch);
            for i in 0..m {
                let d = dot(kernel, scratch, &x[i * cols..(i + 1) * cols]);
                // Safety: each (i, j) is written by exactly one task.
                unsafe {
                    let cell = out.0.add(i * rows + j);
                    *cell = if accumulate { *cell + d } else { d };
                }
            }
        }
    };
    if threads <= 1 {
        // On the calling thread, no pool (generation calls this per token and per layer).
        let mut scratch = vec![0.0f32; cols];
        (0..tasks).for_each(|task| task_body(&mut scratch, task));
    } else {
        crate::threads::pool().install(|| {
            (0..tasks).into_par_iter().for_each_init(|| vec![0.0f32; cols], |s, task| task_body(s, task))
        });
    }
}

/// Dot product; the SIMD paths use four vector accumulators, the scalar one a plain sum.
pub fn dot(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { dot_avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { dot_avx512(a, b) },
        _ => a.iter().zip(b).map(|(x, y)| x * y).sum(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_simd::<crate::simd::avx2::Avx2>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_simd::<crate::simd::avx512::Avx512>(a, b)
}

#[inline(always)]
unsafe fn dot_simd<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let l = S::LANES;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [S::zero(); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (u, slot) in acc.iter_mut().enumerate() {
            *slot = S::fma(S::load(pa.add(i + u * l)), S::load(pb.add(i + u * l)), *slot);
        }
        i += 4 * l;
    }
    let mut lanes = [0.0f32; 64];
    for (u, v) in acc.iter().enumerate() {
        S::store(lanes.as_mut_ptr().add(u * l), *v);
    }
    let mut sum: f32 = lanes[..4 * l].iter().sum();
    while i < n {
        sum += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    sum
}
