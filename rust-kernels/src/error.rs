//! Errors crossing the C ABI: a status code plus a message kept for `qlora_last_error`.

use std::fmt;

/// Status codes returned by every fallible `extern "C"` function (0 = success).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Unsupported = 2,
    UnknownHandle = 3,
    Internal = 4,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelError {
    pub status: Status,
    pub message: String,
}

impl KernelError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { status: Status::InvalidArgument, message: message.into() }
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self { status: Status::Unsupported, message: message.into() }
    }
    pub fn unknown_handle(handle: u32) -> Self {
        Self { status: Status::UnknownHandle, message: format!("unknown or closed handle {handle}") }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)
    }
}

pub type KResult<T> = Result<T, KernelError>;

/// Returns an InvalidArgument error unless `cond` holds.
pub fn ensure(cond: bool, message: impl FnOnce() -> String) -> KResult<()> {
    if cond {
        Ok(())
    } else {
        Err(KernelError::invalid(message()))
    }
}
