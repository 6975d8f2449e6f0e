//! An NF4 weight in bitsandbytes' layout: the exchange format, and also what the GEMM reads.

use super::codebook::{dynamic_map, NF4};
use crate::error::{ensure, KResult};

pub const BLOCK: usize = 64;
pub const NESTED_BLOCK: usize = 256;

/// The per-block scales (absmax) of an NF4 tensor.
#[derive(Clone, Debug)]
pub enum Scales {
    /// One f32 absmax per block of 64 (no double quantization).
    Plain(Vec<f32>),
    /// Double quantization: an 8-bit code per block into the dynamic map, one f32 scale per 256 blocks,
    /// and the mean that was subtracted before quantizing.
    Double { codes: Vec<u8>, nested: Vec<f32>, offset: f32 },
}

/// A weight `[rows, cols]` (nn.Linear's `[out, in]`), flattened row-major, in blocks of 64 consecutive
/// elements (a block may span two rows), two 4-bit codes per byte with the first in the high nibble.
#[derive(Clone, Debug)]
pub struct Nf4Weight {
    pub rows: usize,
    pub cols: usize,
    pub packed: Vec<u8>,
    pub scales: Scales,
}

pub fn block_count(len: usize) -> usize {
    len.div_ceil(BLOCK)
}

pub fn group_count(blocks: usize) -> usize {
    blocks.div_ceil(NESTED_BLOCK)
}

impl Nf4Weight {
    /// Checks the parts against each other and against the shape.
    pub fn new(rows: usize, cols: usize, packed: Vec<u8>, scales: Scales) -> KResult<Self> {
        ensure(rows > 0 && cols > 0, || format!("shape: dims must be positive, got [{rows}, {cols}]"))?;
        let len = rows.checked_mul(cols).filter(|n| *n <= isize::MAX as usize / 4);
        let len = len.ok_or_else(|| crate::error::KernelError::invalid("shape: too many elements"))?;
        let blocks = block_count(len);
        ensure(packed.len() == len.div_ceil(2), || {
            format!("packed: expected {} bytes for [{rows}, {cols}], got {}", len.div_ceil(2), packed.len())
        })?;
        match &scales {
            Scales::Plain(absmax) => ensure(absmax.len() == blocks, || {
                format!("absmax: expected {blocks} f32 block scales, got {}", absmax.len())
            })?,
            Scales::Double { codes, nested, .. } => {
                ensure(codes.len() == blocks, || {
                    format!("absmax: expected {blocks} uint8 block-scale codes, got {}", codes.len())
                })?;
                ensure(nested.len() == group_count(blocks), || {
                    format!(
                        "nested_absmax: expected {} f32 values, got {}",
                        group_count(blocks),
                        nested.len()
                    )
                })?;
            }
        }
        Ok(Nf4Weight { rows, cols, packed, scales })
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn blocks(&self) -> usize {
        block_count(self.len())
    }

    pub fn is_double_quant(&self) -> bool {
        matches!(self.scales, Scales::Double { .. })
    }

    /// The f32 scale of every block (double quantization expanded as bitsandbytes does: the nested
    /// dequantization `DYN[code] * nested`, then `+ offset`, each rounded to f32).
    pub fn block_scales(&self) -> Vec<f32> {
        match &self.scales {
            Scales::Plain(absmax) => absmax.clone(),
            Scales::Double { codes, nested, offset } => {
                let map = dynamic_map();
                codes
                    .iter()
                    .enumerate()
                    .map(|(b, &q)| map[q as usize] * nested[b / NESTED_BLOCK] + offset)
                    .collect()
            }
        }
    }

    /// The scale of one block (use [`Self::block_scales`] or [`ScaleReader`] in loops).
    pub fn block_scale(&self, block: usize, map: &[f32; 256]) -> f32 {
        match &self.scales {
            Scales::Plain(absmax) => absmax[block],
            Scales::Double { codes, nested, offset } => {
                map[codes[block] as usize] * nested[block / NESTED_BLOCK] + offset
            }
        }
    }

    /// The 4-bit code of element `i`.
    pub fn code(&self, i: usize) -> u8 {
        let byte = self.packed[i / 2];
        if i % 2 == 0 {
            byte >> 4
        } else {
            byte & 0x0f
        }
    }
}

/// Plain reference: dequantizes elements `start .. start + dst.len()` of the flattened weight.
pub fn dequant_run_scalar(w: &Nf4Weight, start: usize, dst: &mut [f32], map: &[f32; 256]) {
    let mut i = start;
    let end = start + dst.len();
    while i < end {
        let block = i / BLOCK;
        let block_end = ((block + 1) * BLOCK).min(end);
        let scale = w.block_scale(block, map);
        for j in i..block_end {
            dst[j - start] = NF4[w.code(j) as usize] * scale;
        }
        i = block_end;
    }
}
