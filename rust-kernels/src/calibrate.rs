//! What the CPU gives right now: the fused multiply-add throughput of every pool thread running a loop with
//! no memory traffic. The bench prints it beside its timings, because on a shared machine (a VM whose
//! neighbours come and go) the same binary's speed drifts by a factor of two; a timing is only comparable
//! with the peak measured around it.

use crate::dispatch::Kernel;
use crate::simd::Simd;
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// Independent accumulators: enough to keep two FMA ports busy through a 4–5 cycle latency.
const CHAINS: usize = 12;
/// FMAs per chain between clock reads.
const ROUND: usize = 1 << 16;

/// f32 GFLOP/s of all `threads` workers running FMA chains at once for about `seconds` (an FMA is 2 FLOPs).
pub fn fma_peak_gflops(kernel: Kernel, threads: usize, seconds: f64) -> f64 {
    let budget = Duration::from_secs_f64(seconds.max(0.001));
    let flops: f64 = crate::threads::pool().install(|| {
        (0..threads.max(1)).into_par_iter().with_max_len(1).map(|_| one_worker(kernel, budget)).sum()
    });
    flops / 1e9
}

/// FLOP/s of one worker.
fn one_worker(kernel: Kernel, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut rounds = 0usize;
    let mut sink = 0.0f32;
    while start.elapsed() < budget {
        sink += run_chains(kernel, ROUND);
        rounds += 1;
    }
    std::hint::black_box(sink);
    (rounds * ROUND * CHAINS * lanes(kernel) * 2) as f64 / start.elapsed().as_secs_f64()
}

fn lanes(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Scalar => 1,
        Kernel::Avx2 => 8,
        Kernel::Avx512 => 16,
    }
}

/// Runs `steps` FMAs on each chain (x ← x·a + b, which stays finite) and returns a value that depends on all
/// of them, so the loop cannot be dropped.
pub fn run_chains(kernel: Kernel, steps: usize) -> f32 {
    match kernel {
        Kernel::Scalar => chains_plain(steps),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { chains_avx2(steps) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { chains_avx512(steps) },
        #[allow(unreachable_patterns)]
        _ => chains_plain(steps),
    }
}

/// The plain twin: the same recurrence on scalars.
fn chains_plain(steps: usize) -> f32 {
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-6f32));
    let mut x = [1.0f32; CHAINS];
    for _ in 0..steps {
        for v in x.iter_mut() {
            *v = v.mul_add(a, b);
        }
    }
    x.iter().sum::<f32>() / CHAINS as f32
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(steps: usize) -> f32 {
    chains_simd::<crate::simd::avx2::Avx2>(steps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn chains_avx512(steps: usize) -> f32 {
    chains_simd::<crate::simd::avx512::Avx512>(steps)
}

#[inline(always)]
unsafe fn chains_simd<S: Simd>(steps: usize) -> f32 {
    let a = S::splat(std::hint::black_box(0.999_999f32));
    let b = S::splat(std::hint::black_box(1e-6f32));
    let mut x = [S::splat(1.0); CHAINS];
    for _ in 0..steps {
        for v in x.iter_mut() {
            *v = S::fma(*v, a, b);
        }
    }
    // Every lane follows the plain recurrence; return the mean of lane 0 of each chain.
    let mut lane = vec![0.0f32; S::LANES];
    let mut total = 0.0f32;
    for v in x {
        S::store(lane.as_mut_ptr(), v);
        total += lane[0];
    }
    total / CHAINS as f32
}

/// The GEMM micro-kernels, for [`hot_loop_gflops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotLoop {
    /// `gemm/wxt_kernel.rs`: the weight-natural nest's tile (broadcast rows of a decoded block).
    WeightNatural,
    /// `gemm/kernel.rs`: the BLIS nest's tile.
    Blis,
}

/// Depth of one micro-kernel call in the hot loop (the nests' depth block).
const HOT_KC: usize = 256;

/// f32 GFLOP/s of one GEMM micro-kernel alone, called over and over on the same operands (a few KiB, in L1)
/// by all `threads` workers at once for about `seconds`: the ceiling of the whole GEMM, which also packs,
/// streams operands from L2 and memory, and merges C.
pub fn hot_loop_gflops(kernel: Kernel, which: HotLoop, threads: usize, seconds: f64) -> f64 {
    let budget = Duration::from_secs_f64(seconds.max(0.001));
    let flops: f64 = crate::threads::pool().install(|| {
        (0..threads.max(1)).into_par_iter().with_max_len(1).map(|_| hot_worker(kernel, which, budget)).sum()
    });
    flops / 1e9
}

fn hot_worker(kernel: Kernel, which: HotLoop, budget: Duration) -> f64 {
    use crate::gemm::pack::aligned;
    let (mut abuf, mut bbuf, mut cbuf) = (Vec::new(), Vec::new(), Vec::new());
    let values = |len: usize| (0..len).map(|i| (i % 7) as f32 * 0.01).collect::<Vec<_>>();
    let (mr, nr) = match which {
        HotLoop::WeightNatural => {
            let shape = crate::gemm::wxt_kernel::tile_of(kernel).0;
            (shape.mr, shape.nr)
        }
        HotLoop::Blis => {
            let bl = crate::gemm::blocking::blocking(kernel);
            (bl.mr, bl.nr)
        }
    };
    let a = aligned(&mut abuf, mr * HOT_KC);
    a.copy_from_slice(&values(mr * HOT_KC));
    let b = aligned(&mut bbuf, HOT_KC * nr);
    b.copy_from_slice(&values(HOT_KC * nr));
    let c = aligned(&mut cbuf, mr * nr);
    let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // Rows of a decoded block (the forward's layout): row r at r · kc, steps 1 apart.
    let rows: Vec<*const f32> = (0..mr).map(|r| a.wrapping_add(r * HOT_KC)).collect();
    let (tile, micro) = (crate::gemm::wxt_kernel::tile_of(kernel).1, crate::gemm::kernel::kernel_fn(kernel));
    const CALLS: usize = 64;
    let start = Instant::now();
    let mut rounds = 0usize;
    while start.elapsed() < budget {
        for _ in 0..CALLS {
            // Safety: every operand holds what the tiles read (row r: `HOT_KC` steps from `r · HOT_KC`, inside
            // the `mr × HOT_KC` block).
            unsafe {
                match which {
                    HotLoop::WeightNatural => tile(HOT_KC, rows.as_ptr(), 1, b, c, nr, 1.0, true),
                    HotLoop::Blis => micro(HOT_KC, a, b, c, nr, 1.0, 1.0),
                }
            }
        }
        rounds += 1;
    }
    (rounds * CALLS * mr * nr * HOT_KC * 2) as f64 / start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::available;

    #[test]
    fn every_path_computes_the_plain_recurrence() {
        // x ← x·a + b from 1: the SIMD chains are the same fused operations, so the same bits.
        for kernel in available() {
            for steps in [0, 1, 7, 1000] {
                assert_eq!(
                    run_chains(kernel, steps).to_bits(),
                    chains_plain(steps).to_bits(),
                    "{kernel:?} {steps}"
                );
            }
        }
    }

    #[test]
    fn hot_loops_are_positive_and_finite() {
        for kernel in available() {
            for which in [HotLoop::WeightNatural, HotLoop::Blis] {
                let g = hot_loop_gflops(kernel, which, 2, 0.01);
                assert!(g.is_finite() && g > 0.0, "{kernel:?} {which:?}: {g}");
            }
        }
    }

    #[test]
    fn peak_is_positive_and_finite() {
        for kernel in available() {
            let g = fma_peak_gflops(kernel, 2, 0.01);
            assert!(g.is_finite() && g > 0.0, "{kernel:?}: {g}");
        }
    }
}
