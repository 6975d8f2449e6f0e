//! The C ABI. Every exported function is thin: it turns raw pointers into checked slices, calls a module
//! and converts the outcome into a status code (see `error::Status`). Panics never cross the boundary.
//!
//! Conventions for the TS side (ffi/symbols.ts):
//! - buffers are passed as a pointer plus an element count (`u32`); a null pointer is accepted only with a
//!   zero count; the count must equal what the shape implies, or the call fails with InvalidArgument;
//! - dimensions are `u32` (they stay on V8's fast FFI path);
//! - the return value is a status (`i32`, 0 = ok); results go to out-pointers;
//! - after a non-zero status, `qlora_last_error` gives a message naming the argument and the problem.

pub mod core;
pub mod gemm;
pub mod ggml;
pub mod nf4;
pub mod ops;

use crate::error::{KResult, KernelError, Status};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// Bumped whenever a signature in this folder changes; ffi/load.ts refuses a library of another version.
pub const ABI_VERSION: u32 = 8;

static LAST_ERROR: Mutex<String> = Mutex::new(String::new());

fn set_last_error(message: String) {
    let mut slot = LAST_ERROR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = message;
}

pub(crate) fn last_error() -> String {
    LAST_ERROR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Runs one ABI call: catches panics, records the error message, returns the status code.
pub(crate) fn run(call: impl FnOnce() -> KResult<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(())) => Status::Ok as i32,
        Ok(Err(error)) => {
            let status = error.status as i32;
            set_last_error(error.message);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(format!("internal error (panic in kernel): {what}"));
            Status::Internal as i32
        }
    }
}

/// Borrows `len` elements at `ptr` for the length of one call.
///
/// # Safety
/// The caller (the TS wrapper) guarantees that `ptr` points to at least `len` valid elements.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: u32, name: &str) -> KResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(KernelError::invalid(format!("{name}: null pointer with length {len}")));
    }
    Ok(std::slice::from_raw_parts(ptr, len as usize))
}

/// Mutable twin of [`slice`].
///
/// # Safety
/// As for [`slice`], and the buffer must not alias any other argument of the call.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: u32, name: &str) -> KResult<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(KernelError::invalid(format!("{name}: null pointer with length {len}")));
    }
    Ok(std::slice::from_raw_parts_mut(ptr, len as usize))
}

/// Writes `text` as UTF-8 into `buf` (truncated to `cap` bytes); returns the full length in bytes.
pub(crate) unsafe fn write_text(text: &str, buf: *mut u8, cap: u32) -> u32 {
    let bytes = text.as_bytes();
    if !buf.is_null() {
        let n = bytes.len().min(cap as usize);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n);
    }
    bytes.len() as u32
}

/// Checks that a buffer holds exactly the number of elements its shape implies.
pub(crate) fn expect_len(name: &str, len: usize, expected: usize, shape: &str) -> KResult<()> {
    crate::error::ensure(len == expected, || {
        format!("{name}: expected {expected} elements ({shape}), got {len}")
    })
}
