//! Library identity, errors, threads and kernel choice.

use super::{last_error, run, write_text, ABI_VERSION};
use crate::{allocator, calibrate, dispatch, report, threads};

/// `uint32_t qlora_abi_version(void)`
#[no_mangle]
pub extern "C" fn qlora_abi_version() -> u32 {
    ABI_VERSION
}

/// `uint32_t qlora_last_error(uint8_t *buf, uint32_t cap)` — message of the last failed call; returns its
/// length in bytes (call with cap 0 to size the buffer).
#[no_mangle]
pub unsafe extern "C" fn qlora_last_error(buf: *mut u8, cap: u32) -> u32 {
    write_text(&last_error(), buf, cap)
}

/// `int32_t qlora_set_threads(uint32_t n)` — size of the kernel thread pool; 0 means all cores.
#[no_mangle]
pub extern "C" fn qlora_set_threads(n: u32) -> i32 {
    run(|| threads::set_threads(n as usize))
}

/// `uint32_t qlora_threads(void)`
#[no_mangle]
pub extern "C" fn qlora_threads() -> u32 {
    threads::threads() as u32
}

/// `int32_t qlora_set_kernel(const uint8_t *name, uint32_t len)` — "auto", "scalar", "avx2" or "avx512".
#[no_mangle]
pub unsafe extern "C" fn qlora_set_kernel(name: *const u8, len: u32) -> i32 {
    run(|| {
        let bytes = super::slice(name, len, "name")?;
        let name = String::from_utf8_lossy(bytes);
        dispatch::set_kernel_by_name(&name)
    })
}

/// `uint32_t qlora_kernel_name(uint8_t *buf, uint32_t cap)` — the active path, e.g. "avx2".
#[no_mangle]
pub unsafe extern "C" fn qlora_kernel_name(buf: *mut u8, cap: u32) -> u32 {
    write_text(dispatch::active_path().name(), buf, cap)
}

/// `uint32_t qlora_kernel_report(uint8_t *buf, uint32_t cap)` — the path each kernel family runs with the
/// active path, `family=route;…` (e.g. `gemm-f32=avx512;gemm-bf16=avx512-bf16;…`; see `report.rs`).
#[no_mangle]
pub unsafe extern "C" fn qlora_kernel_report(buf: *mut u8, cap: u32) -> u32 {
    write_text(&report::describe_routes(dispatch::active_path()), buf, cap)
}

/// `uint32_t qlora_kernels_used(uint8_t *buf, uint32_t cap)` — the routes each family has run in this
/// process so far, `family=route,route;…` (empty after `=` for a family that has not run).
#[no_mangle]
pub unsafe extern "C" fn qlora_kernels_used(buf: *mut u8, cap: u32) -> u32 {
    write_text(&report::describe_used(), buf, cap)
}

/// `uint32_t qlora_cpu_features(uint8_t *buf, uint32_t cap)` — the paths this CPU can run, comma-separated,
/// plus "bf16dot" when it has bf16 dot-product instructions.
#[no_mangle]
pub unsafe extern "C" fn qlora_cpu_features(buf: *mut u8, cap: u32) -> u32 {
    write_text(&dispatch::describe_cpu(), buf, cap)
}

/// `uint32_t qlora_keep_freed_memory(void)` — keeps freed memory in the heap instead of returning it to the
/// OS (training frees and re-allocates the same buffers every step); 1 if the C allocator took it.
#[no_mangle]
pub extern "C" fn qlora_keep_freed_memory() -> u32 {
    allocator::keep_freed_memory() as u32
}

/// `double qlora_fma_peak(double seconds)` — GFLOP/s of fused multiply-adds on every pool thread at once with
/// the active path, measured for about `seconds`: what the CPU gives right now (see `calibrate.rs`).
#[no_mangle]
pub extern "C" fn qlora_fma_peak(seconds: f64) -> f64 {
    calibrate::fma_peak_gflops(dispatch::active(), threads::threads(), seconds)
}

/// `double qlora_gemm_hot_loop(uint32_t which, double seconds)` — GFLOP/s of one f32 GEMM micro-kernel alone
/// on cached operands (which 0: the weight-natural nest's tile, 1: the BLIS nest's), on every pool thread at
/// once with the active path, for about `seconds` (see `calibrate.rs`); NaN for another `which`.
#[no_mangle]
pub extern "C" fn qlora_gemm_hot_loop(which: u32, seconds: f64) -> f64 {
    let which = match which {
        0 => calibrate::HotLoop::WeightNatural,
        1 => calibrate::HotLoop::Blis,
        _ => return f64::NAN,
    };
    calibrate::hot_loop_gflops(dispatch::active(), which, threads::threads(), seconds)
}

/// `int32_t qlora_checksum64(const uint8_t *data, uint32_t len, uint32_t *out, uint32_t out_len)` — the
/// checksum of `data` (see `checksum.rs`) as two u32 words, low first (out_len 2).
#[no_mangle]
pub unsafe extern "C" fn qlora_checksum64(data: *const u8, len: u32, out: *mut u32, out_len: u32) -> i32 {
    run(|| {
        let data = super::slice(data, len, "data")?;
        let out = super::slice_mut(out, out_len, "out")?;
        if out.len() != 2 {
            return Err(crate::error::KernelError::invalid(format!(
                "out: expected 2 words, got {}",
                out.len()
            )));
        }
        let sum = crate::checksum::checksum64(data);
        out[0] = sum as u32;
        out[1] = (sum >> 32) as u32;
        Ok(())
    })
}
