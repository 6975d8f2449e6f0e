//! How an ops call runs: on which thread pool and on which CPU path. Both are arguments (not globals read
//! deep inside a kernel) so a test can run 1 thread against 2 and the plain path against AVX2.

use crate::dispatch::{self, Kernel};
use crate::threads;
use rayon::ThreadPool;
use std::sync::Arc;

/// The code path of the ops kernels. There is one body per kernel, written as plain loops; the AVX2 and
/// AVX-512 paths are the same body compiled with those features enabled, so its loops use 256- or 512-bit
/// registers. No FMA contraction happens on any path, and every reduction has a fixed lane order, so all
/// paths give bit-identical results. (Attention has its own twins, `attention::micro`, with explicit fused
/// multiply-adds on every path.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Plain,
    Avx2,
    Avx512,
}

impl Path {
    /// The path for the kernel chosen in `dispatch`.
    pub fn active() -> Path {
        Path::for_kernel(dispatch::active())
    }

    /// The path ops run while `kernel` is the active CPU path.
    pub fn for_kernel(kernel: Kernel) -> Path {
        match kernel {
            Kernel::Scalar => Path::Plain,
            Kernel::Avx2 => Path::Avx2,
            Kernel::Avx512 => Path::Avx512,
        }
    }

    /// The report's name of this path.
    pub fn route(self) -> crate::report::Route {
        match self {
            Path::Plain => crate::report::Route::Scalar,
            Path::Avx2 => crate::report::Route::Avx2,
            Path::Avx512 => crate::report::Route::Avx512,
        }
    }

    /// Every path this machine can run (for tests).
    pub fn available() -> Vec<Path> {
        let mut paths = vec![Path::Plain];
        if dispatch::supported(Kernel::Avx2) {
            paths.push(Path::Avx2);
        }
        if dispatch::supported(Kernel::Avx512) {
            paths.push(Path::Avx512);
        }
        paths
    }
}

/// Pool and path for one call.
pub struct Ctx {
    pub pool: Arc<ThreadPool>,
    pub path: Path,
}

impl Ctx {
    /// The library's pool and active path (what the C ABI uses).
    pub fn current() -> Ctx {
        Ctx { pool: threads::pool(), path: Path::active() }
    }

    /// A private pool of `n` threads (for tests comparing thread counts).
    pub fn with_threads(n: usize, path: Path) -> Ctx {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("thread pool");
        Ctx { pool: Arc::new(pool), path }
    }
}

/// Declares `fn $name(path: Path, args...)` that runs the `#[inline(always)]` body `$body` as plain code or
/// compiled with AVX2 or AVX-512. Everything the body calls must be `#[inline(always)]` too, or it stays plain.
macro_rules! on_path {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path) => {
        $vis fn $name(path: $crate::ops::exec::Path, $($arg: $ty),*) $(-> $ret)? {
            $crate::report::note($crate::report::Family::Ops, path.route());
            match path {
                $crate::ops::exec::Path::Plain => $body($($arg),*),
                #[cfg(target_arch = "x86_64")]
                $crate::ops::exec::Path::Avx2 => {
                    #[target_feature(enable = "avx2")]
                    unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                        $body($($arg),*)
                    }
                    // SAFETY: Path::Avx2 is only chosen when dispatch found AVX2 on this CPU.
                    unsafe { avx2($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::ops::exec::Path::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
                    unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                        $body($($arg),*)
                    }
                    // SAFETY: Path::Avx512 is only chosen when dispatch found AVX-512 F/BW/VL/DQ on this CPU.
                    unsafe { avx512($($arg),*) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                $crate::ops::exec::Path::Avx2 | $crate::ops::exec::Path::Avx512 => $body($($arg),*),
            }
        }
    };
}
pub(crate) use on_path;
