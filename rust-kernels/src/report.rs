//! Which code path each kernel family runs, told truthfully. `dispatch` picks one CPU path for the process,
//! but families follow it differently (the bf16 GEMM uses `vdpbf16ps` only where the CPU has it; a family
//! without a build for a path runs the next one down), so `kernelName()` alone can overstate what ran.
//!
//! Two views: `route` — what a family runs when a given path is active, derived from the same selector
//! functions the kernels call; and `used` — the routes each family really ran in this process, recorded
//! at the point where the kernel branches on its path (tests and the bench print it).

use crate::dispatch::Kernel;
use std::sync::atomic::{AtomicU32, Ordering};

/// The kernel families that choose a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// f32 GEMM micro-kernel (dense products, NF4 and bf16 weights at f32 compute, the few-row path).
    GemmF32,
    /// NF4 decoding (dequantization inside the weight packing and the few-row path).
    Nf4Decode,
    /// GEMM at bf16 compute.
    GemmBf16,
    /// Element-wise and row ops (rmsnorm, rope, swiglu, cross-entropy, adamw, vector helpers).
    Ops,
    /// Causal attention (micro-kernel, softmax steps).
    Attention,
}

impl Family {
    pub const ALL: [Family; 5] =
        [Family::GemmF32, Family::Nf4Decode, Family::GemmBf16, Family::Ops, Family::Attention];

    pub fn name(self) -> &'static str {
        match self {
            Family::GemmF32 => "gemm-f32",
            Family::Nf4Decode => "nf4-decode",
            Family::GemmBf16 => "gemm-bf16",
            Family::Ops => "ops",
            Family::Attention => "attention",
        }
    }
}

/// A code path as run by one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Scalar = 0,
    Avx2 = 1,
    Avx512 = 2,
    /// AVX512-BF16 dot products (`vdpbf16ps`).
    Avx512Bf16 = 3,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Scalar, Route::Avx2, Route::Avx512, Route::Avx512Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Route::Scalar => "scalar",
            Route::Avx2 => "avx2",
            Route::Avx512 => "avx512",
            Route::Avx512Bf16 => "avx512-bf16",
        }
    }

    pub fn of_kernel(kernel: Kernel) -> Route {
        match kernel {
            Kernel::Scalar => Route::Scalar,
            Kernel::Avx2 => Route::Avx2,
            Kernel::Avx512 => Route::Avx512,
        }
    }
}

/// What `family` runs while `kernel` is the active path.
pub fn route(family: Family, kernel: Kernel) -> Route {
    match family {
        Family::GemmF32 | Family::Nf4Decode => Route::of_kernel(kernel),
        Family::GemmBf16 => crate::gemm::driver::bf16_route(kernel),
        Family::Ops | Family::Attention => crate::ops::exec::Path::for_kernel(kernel).route(),
    }
}

/// Per family, one bit per `Route` that ran.
static USED: [AtomicU32; 5] = [const { AtomicU32::new(0) }; 5];

/// Records that `family` ran `route` (a load first, so the hot path never writes a shared line twice).
#[inline]
pub fn note(family: Family, route: Route) {
    let slot = &USED[family as usize];
    let bit = 1u32 << route as u32;
    if slot.load(Ordering::Relaxed) & bit == 0 {
        slot.fetch_or(bit, Ordering::Relaxed);
    }
}

/// The routes `family` has run in this process, in `Route::ALL` order.
pub fn used(family: Family) -> Vec<Route> {
    let bits = USED[family as usize].load(Ordering::Relaxed);
    Route::ALL.into_iter().filter(|r| bits & (1 << *r as u32) != 0).collect()
}

/// `family=route;…` for the active path, e.g. `gemm-f32=avx512;…;attention=avx2`.
pub fn describe_routes(kernel: Kernel) -> String {
    Family::ALL.map(|f| format!("{}={}", f.name(), route(f, kernel).name())).join(";")
}

/// `family=route,route;…` of what ran so far (an empty list for a family that has not run).
pub fn describe_used() -> String {
    Family::ALL
        .map(|f| {
            let routes: Vec<&str> = used(f).iter().map(|r| r.name()).collect();
            format!("{}={}", f.name(), routes.join(","))
        })
        .join(";")
}

#[cfg(test)]
mod tests;
