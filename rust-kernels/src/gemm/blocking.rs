//! Blocking constants, all in one place (BLIS terms). For C[m, n] += A[m, k] · B[k, n]:
//! - MR × NR: the micro-kernel's register tile of C;
//! - KC: the depth of one packed panel (A's MR×KC micro-panel and B's KC×NR micro-panel sit in L1);
//! - MC: rows of A packed at once (MC×KC stays in L2 while every B micro-panel streams past it);
//! - NC: columns of B packed at once (KC×NC shared in L3).

use crate::dispatch::Kernel;

#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    pub mr: usize,
    pub nr: usize,
    pub kc: usize,
    pub mc: usize,
    pub nc: usize,
}

pub fn blocking(kernel: Kernel) -> Blocking {
    match kernel {
        // Plain loops: a small tile the compiler keeps in registers.
        Kernel::Scalar => Blocking { mr: 4, nr: 8, kc: 256, mc: 64, nc: 4096 },
        // 6×16: 12 ymm accumulators + 2 for B + 1 broadcast of the 16 registers.
        Kernel::Avx2 => Blocking { mr: 6, nr: 16, kc: 256, mc: 120, nc: 4096 },
        // 8×32: 16 zmm accumulators; latency of 2 FMA ports × 4 cycles needs at least 8 in flight (12×32 and
        // 14×32 measured no better, and 8 divides the usual M). NC = 512 keeps the packed KC×NC block of B
        // (512 KiB) in L2 beside the A block while every MC block of rows re-reads it: with 4096 it spilled to
        // L3 on 7B-sized layers (M = 256, 4096×4096: ~48 % -> ~55 % of the FMA peak, NF4 ~48 % -> ~58 %).
        Kernel::Avx512 => Blocking { mr: 8, nr: 32, kc: 256, mc: 128, nc: 512 },
    }
}

/// Splits `n` into the fewest blocks of at most about `cap`, of equal size rounded up to a multiple of `align`
/// (K = 576 runs as 2 × 288, not 256 + 256 + 64: a thin last block pays a full pass over C for little work).
pub fn balanced(n: usize, cap: usize, align: usize) -> usize {
    let blocks = n.div_ceil(cap).max(1);
    n.div_ceil(blocks).div_ceil(align).max(1) * align
}

/// One worker's part of a weight-natural product (`Cᵀ = W·Xᵀ`): row blocks `t0..t1` of the activations and
/// outputs `n0..n1` of the weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightShare {
    pub t0: usize,
    pub t1: usize,
    pub n0: usize,
    pub n1: usize,
}

/// Splits `row_blocks` × `n` outputs among `parts` workers: along the outputs in whole panels of `width`
/// when each worker gets at least two (or there are more panels than row blocks), else along the row blocks
/// (then each worker decodes the whole, narrow, weight).
pub fn split_weight_natural(row_blocks: usize, n: usize, width: usize, parts: usize) -> Vec<WeightShare> {
    let panels = n.div_ceil(width);
    let along_n = panels >= 2 * parts || panels >= row_blocks;
    let count = if along_n { panels } else { row_blocks };
    let parts = parts.min(count).max(1);
    (0..parts)
        .map(|i| {
            let (lo, hi) = (count * i / parts, count * (i + 1) / parts);
            if along_n {
                WeightShare { t0: 0, t1: row_blocks, n0: (lo * width).min(n), n1: (hi * width).min(n) }
            } else {
                WeightShare { t0: lo, t1: hi, n0: 0, n1: n }
            }
        })
        .collect()
}
