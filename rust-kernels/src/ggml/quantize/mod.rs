//! f32 → ggml formats, for writing GGUF files: F16, Q8_0, Q4_0, Q5_0 (`legacy.rs`) and Q4_K, Q6_K
//! (`k_quants.rs`), each the plain reference algorithm of ggml's `quantize_row_*_ref` (no importance
//! matrix). Export runs once per tensor, so these scalar loops parallelised over blocks are the only path.
//!
//! Non-finite input is refused with its index: one NaN or inf would spoil the scale of its whole block.

pub mod half;
pub mod k_quants;
pub mod legacy;

use super::{BlockQ4K, BlockQ4_0, BlockQ5_0, BlockQ6K, BlockQ8_0, GgmlType, F16, QK, QK_K};
use crate::error::{KResult, KernelError};
use rayon::prelude::*;
use std::mem::{align_of, size_of};

/// A block format we can write: fills one block from `ELEMS` values.
///
/// # Safety
/// As for [`super::Block`]: a `#[repr(C)]` struct of byte arrays (alignment 1, every bit pattern valid),
/// which is what lets [`as_blocks_mut`] view an output buffer as blocks.
pub unsafe trait Quantize: Sized + Send {
    const ELEMS: usize;
    fn quantize(x: &[f32], out: &mut Self);
}

macro_rules! quantize {
    ($ty:ty, $elems:expr, $f:path) => {
        unsafe impl Quantize for $ty {
            const ELEMS: usize = $elems;
            fn quantize(x: &[f32], out: &mut Self) {
                $f(x.try_into().expect("one block's worth of input"), out)
            }
        }
    };
}

fn f16(x: &[f32; 1], out: &mut F16) {
    out.0 = half::f32_to_f16(x[0]).to_le_bytes();
}

quantize!(F16, 1, f16);
quantize!(BlockQ8_0, QK, legacy::q8_0);
quantize!(BlockQ4_0, QK, legacy::q4_0);
quantize!(BlockQ5_0, QK, legacy::q5_0);
quantize!(BlockQ4K, QK_K, k_quants::q4_k);
quantize!(BlockQ6K, QK_K, k_quants::q6_k);

/// The types [`quantize`] writes.
pub const QUANTIZABLE: [GgmlType; 6] =
    [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K];

/// Views whole blocks of `bytes` as `&mut [B]` (no copy).
fn as_blocks_mut<B: Quantize>(bytes: &mut [u8]) -> &mut [B] {
    const { assert!(align_of::<B>() == 1) };
    assert!(bytes.len().is_multiple_of(size_of::<B>()), "as_blocks_mut: not a whole number of blocks");
    // SAFETY: B has alignment 1 and accepts any bit pattern (the `Quantize` contract); the length is a
    // whole number of blocks and the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size_of::<B>()) }
}

/// Input values per rayon task (as for dequantization).
const TASK_ELEMS: usize = 1 << 15;

/// Quantizes `src` (whole blocks of `ty`) into `dst`, whose length must be exactly the encoded size.
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> KResult<()> {
    if !QUANTIZABLE.contains(&ty) {
        let names: Vec<&str> = QUANTIZABLE.iter().map(|t| t.name()).collect();
        return Err(KernelError::unsupported(format!(
            "ggml_type: cannot quantize to {} (supported: {})",
            ty.name(),
            names.join(", ")
        )));
    }
    let (elems, bytes) = (ty.block_elems(), ty.block_bytes());
    crate::error::ensure(src.len().is_multiple_of(elems), || {
        format!(
            "src: {} values is not a whole number of {} blocks ({elems} values each)",
            src.len(),
            ty.name()
        )
    })?;
    let blocks = src.len() / elems;
    crate::error::ensure(dst.len() == blocks * bytes, || {
        format!(
            "dst: expected {} bytes ({blocks} {} blocks of {bytes} bytes), got {}",
            blocks * bytes,
            ty.name(),
            dst.len()
        )
    })?;
    if let Some(i) = src.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::invalid(format!(
            "src: value {i} is {} (only finite values quantize)",
            src[i]
        )));
    }
    if ty == GgmlType::F16 {
        // |x| ≥ 65520 rounds to inf: refuse rather than write an infinite weight.
        if let Some(i) = src.iter().position(|&v| half::f32_to_f16(v) & 0x7c00 == 0x7c00) {
            return Err(KernelError::invalid(format!(
                "src: value {i} ({}) is beyond the f16 range (±65504)",
                src[i]
            )));
        }
    }
    match ty {
        GgmlType::F16 => run::<F16>(src, dst),
        GgmlType::Q8_0 => run::<BlockQ8_0>(src, dst),
        GgmlType::Q4_0 => run::<BlockQ4_0>(src, dst),
        GgmlType::Q5_0 => run::<BlockQ5_0>(src, dst),
        GgmlType::Q4_K => run::<BlockQ4K>(src, dst),
        GgmlType::Q6_K => run::<BlockQ6K>(src, dst),
        _ => unreachable!("checked against QUANTIZABLE"),
    }
    Ok(())
}

/// Like [`quantize`] for a type id; unknown ids are an error naming the id.
pub fn quantize_id(type_id: u32, src: &[f32], dst: &mut [u8]) -> KResult<()> {
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        KernelError::unsupported(format!("ggml_type: {type_id} is not a ggml type this library knows"))
    })?;
    quantize(ty, src, dst)
}

fn run<B: Quantize>(src: &[f32], dst: &mut [u8]) {
    let blocks = as_blocks_mut::<B>(dst);
    let per_task = (TASK_ELEMS / B::ELEMS).max(1);
    if blocks.len() <= per_task {
        serial(src, blocks);
        return;
    }
    crate::threads::pool().install(|| {
        src.par_chunks(per_task * B::ELEMS)
            .zip(blocks.par_chunks_mut(per_task))
            .for_each(|(src, blocks)| serial(src, blocks));
    });
}

fn serial<B: Quantize>(src: &[f32], blocks: &mut [B]) {
    for (x, block) in src.chunks_exact(B::ELEMS).zip(blocks) {
        B::quantize(x, block);
    }
}

#[cfg(test)]
mod tests;
