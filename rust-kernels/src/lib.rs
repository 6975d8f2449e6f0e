//! qlora-kernels: the hot loops of qlora-deno behind a C ABI.
//!
//! `abi/` holds every `extern "C"` function (thin: check arguments, call a module, turn errors into codes).
//! The kernel families live in their own folders, each with a plain scalar reference beside its SIMD paths.

pub mod abi;
pub mod allocator;
pub mod calibrate;
pub mod dispatch;
pub mod error;
pub mod gemm;
pub mod ggml;
pub mod handles;
pub mod nf4;
pub mod ops;
pub mod report;
pub mod simd;
pub mod threads;
