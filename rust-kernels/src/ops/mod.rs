//! Ops: the non-GEMM kernels of a Llama-family forward and backward pass, plus the optimiser.
//!
//! Layouts are row-major f32. Every parallel op splits its work into fixed blocks (never "one block per
//! thread"), so results are bit-identical for any thread count; see `exec` for the CPU paths.

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
pub mod dropout;
pub mod exec;
pub mod gated;
pub mod geglu;
pub mod math;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod vector;

#[cfg(test)]
pub(crate) mod testutil;
