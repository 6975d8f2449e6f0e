//! NF4 (4-bit NormalFloat) with double-quantized block scales, byte-compatible with bitsandbytes.

pub mod codebook;
pub mod dequant;
pub mod encode;
pub mod quantize;
pub mod torch_mean;
pub mod weight;

pub use weight::{Nf4Weight, Scales};
