//! ggml tensor formats (the element types of GGUF files) → f32.
//!
//! Each quantized format is a `#[repr(C)]` block struct made only of byte arrays, so it has alignment 1,
//! every bit pattern is a valid value, and a `&[u8]` of whole blocks can be viewed as `&[Block]` in place.
//! Multi-byte fields (f16 scales, the Q5 high-bit words) are stored as little-endian byte arrays and
//! decoded in `scalar.rs`, the plain reference. Dequantization runs once per tensor at load time, so the
//! scalar code parallelised over blocks is the only path; a SIMD twin would go beside it.
//!
//! Layouts follow ggml's `ggml-common.h` block definitions (QK4_0 = 32, QK_K = 256, ...).

pub mod quantize;
pub mod scalar;

use crate::error::{KResult, KernelError};
use rayon::prelude::*;
use std::mem::{align_of, size_of};

/// Values per block of the "legacy" formats (Q4_0 … Q8_0).
pub const QK: usize = 32;
/// Values per super-block of the K-quants.
pub const QK_K: usize = 256;

/// The ggml types we can dequantize, with their ids as stored in GGUF tensor infos.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
}

impl GgmlType {
    pub const ALL: [GgmlType; 14] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::BF16,
    ];

    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| *t as u32 == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q8_K => "Q8_K",
            GgmlType::BF16 => "BF16",
        }
    }

    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => QK,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => size_of::<F32>(),
            GgmlType::F16 => size_of::<F16>(),
            GgmlType::BF16 => size_of::<BF16>(),
            GgmlType::Q4_0 => size_of::<BlockQ4_0>(),
            GgmlType::Q4_1 => size_of::<BlockQ4_1>(),
            GgmlType::Q5_0 => size_of::<BlockQ5_0>(),
            GgmlType::Q5_1 => size_of::<BlockQ5_1>(),
            GgmlType::Q8_0 => size_of::<BlockQ8_0>(),
            GgmlType::Q2_K => size_of::<BlockQ2K>(),
            GgmlType::Q3_K => size_of::<BlockQ3K>(),
            GgmlType::Q4_K => size_of::<BlockQ4K>(),
            GgmlType::Q5_K => size_of::<BlockQ5K>(),
            GgmlType::Q6_K => size_of::<BlockQ6K>(),
            GgmlType::Q8_K => size_of::<BlockQ8K>(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Block layouts. `[u8; 2]` fields are f16 bit patterns, little-endian.

/// One f32 value.
#[repr(C)]
pub struct F32(pub [u8; 4]);
/// One IEEE half.
#[repr(C)]
pub struct F16(pub [u8; 2]);
/// One bfloat16 (the top half of an f32).
#[repr(C)]
pub struct BF16(pub [u8; 2]);

/// 32 values: `d * (q - 8)`, q in 0..16; byte j holds value j (low nibble) and value j + 16 (high nibble).
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}

/// 32 values: `d * q + m`, nibbles as in Q4_0.
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}

/// 32 values: `d * (q - 16)`, 5-bit q = nibble (as in Q4_0) | bit j of the u32 `qh` as bit 4.
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 32 values: `d * q + m`, 5-bit q as in Q5_0.
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 32 values: `d * q`, q a signed byte.
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}

/// 256 values in 16 groups of 16: `d * (scale & 15) * q - dmin * (scale >> 4)`, 2-bit q.
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}

/// 256 values in 16 groups of 16: `d * (scale - 32) * (q - 4·!hbit)`, 2 low bits in `qs`, the high bit
/// in `hmask`, 6-bit scales packed into 12 bytes.
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}

/// 256 values in 8 groups of 32: `d * scale * q - dmin * min`, 4-bit q, 6-bit scales and mins packed
/// into 12 bytes.
#[repr(C)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// Q4_K plus a fifth bit per value in `qh`.
#[repr(C)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 values in 16 groups of 16: `d * scale * (q - 32)`, 6-bit q = 4 bits in `ql` | 2 bits in `qh`.
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}

/// 256 values: `d * q` with an f32 `d` (ggml's intermediate for dot products); `bsums` (16 × i16,
/// sums of groups of 16) are not needed to dequantize.
#[repr(C)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [u8; QK_K / 16 * 2],
}

// Sizes as in ggml-common.h; a layout change here would silently misread every file.
const _: () = assert!(size_of::<F32>() == 4 && size_of::<F16>() == 2 && size_of::<BF16>() == 2);
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// A block format: `ELEMS` values in `size_of::<Self>()` bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]` structs of `u8`/`i8` arrays only: alignment 1, no padding, and every bit
/// pattern valid. That is what lets [`as_blocks`] view file bytes as blocks without copying.
pub unsafe trait Block: Sized + Sync {
    const ELEMS: usize;
    /// Writes this block's `ELEMS` values to `out` (`out.len() == ELEMS`).
    fn dequantize(&self, out: &mut [f32]);
}

macro_rules! block {
    ($ty:ty, $elems:expr, $f:path) => {
        unsafe impl Block for $ty {
            const ELEMS: usize = $elems;
            fn dequantize(&self, out: &mut [f32]) {
                $f(self, out.try_into().expect("one block's worth of output"))
            }
        }
    };
}

block!(F32, 1, scalar::f32);
block!(F16, 1, scalar::f16);
block!(BF16, 1, scalar::bf16);
block!(BlockQ4_0, QK, scalar::q4_0);
block!(BlockQ4_1, QK, scalar::q4_1);
block!(BlockQ5_0, QK, scalar::q5_0);
block!(BlockQ5_1, QK, scalar::q5_1);
block!(BlockQ8_0, QK, scalar::q8_0);
block!(BlockQ2K, QK_K, scalar::q2_k);
block!(BlockQ3K, QK_K, scalar::q3_k);
block!(BlockQ4K, QK_K, scalar::q4_k);
block!(BlockQ5K, QK_K, scalar::q5_k);
block!(BlockQ6K, QK_K, scalar::q6_k);
block!(BlockQ8K, QK_K, scalar::q8_k);

/// Views whole blocks of `bytes` as `&[B]` (no copy).
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    const { assert!(align_of::<B>() == 1) };
    assert!(bytes.len().is_multiple_of(size_of::<B>()), "as_blocks: not a whole number of blocks");
    // SAFETY: B has alignment 1 and accepts any bit pattern (the `Block` contract), and the length is
    // a whole number of blocks, so the view covers exactly the borrowed bytes.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size_of::<B>()) }
}

/// Output values per rayon task: 128 KiB of f32, big enough to amortise scheduling, small enough to
/// spread a single weight matrix over all cores.
const TASK_ELEMS: usize = 1 << 15;

/// Dequantizes whole blocks of `ty` from `src` into `dst`; lengths must match exactly.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> KResult<()> {
    let (elems, bytes) = (ty.block_elems(), ty.block_bytes());
    crate::error::ensure(dst.len().is_multiple_of(elems), || {
        format!(
            "dst: {} values is not a whole number of {} blocks ({elems} values each)",
            dst.len(),
            ty.name()
        )
    })?;
    let blocks = dst.len() / elems;
    crate::error::ensure(src.len() == blocks * bytes, || {
        format!(
            "src: expected {} bytes ({blocks} {} blocks of {bytes} bytes for {} values), got {}",
            blocks * bytes,
            ty.name(),
            dst.len(),
            src.len()
        )
    })?;
    match ty {
        GgmlType::F32 => run::<F32>(src, dst),
        GgmlType::F16 => run::<F16>(src, dst),
        GgmlType::BF16 => run::<BF16>(src, dst),
        GgmlType::Q4_0 => run::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => run::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => run::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => run::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => run::<BlockQ8_0>(src, dst),
        GgmlType::Q2_K => run::<BlockQ2K>(src, dst),
        GgmlType::Q3_K => run::<BlockQ3K>(src, dst),
        GgmlType::Q4_K => run::<BlockQ4K>(src, dst),
        GgmlType::Q5_K => run::<BlockQ5K>(src, dst),
        GgmlType::Q6_K => run::<BlockQ6K>(src, dst),
        GgmlType::Q8_K => run::<BlockQ8K>(src, dst),
    }
    Ok(())
}

/// Like [`dequantize`] for a type id from a file; unknown or unsupported ids are an error naming the id.
pub fn dequantize_id(type_id: u32, src: &[u8], dst: &mut [f32]) -> KResult<()> {
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        KernelError::unsupported(format!(
            "ggml_type: {type_id} is not a ggml type this library can dequantize"
        ))
    })?;
    dequantize(ty, src, dst)
}

fn run<B: Block>(src: &[u8], dst: &mut [f32]) {
    let blocks = as_blocks::<B>(src);
    let per_task = (TASK_ELEMS / B::ELEMS).max(1);
    if blocks.len() <= per_task {
        serial(blocks, dst);
        return;
    }
    crate::threads::pool().install(|| {
        blocks
            .par_chunks(per_task)
            .zip(dst.par_chunks_mut(per_task * B::ELEMS))
            .for_each(|(blocks, out)| serial(blocks, out));
    });
}

fn serial<B: Block>(blocks: &[B], out: &mut [f32]) {
    for (block, out) in blocks.iter().zip(out.chunks_exact_mut(B::ELEMS)) {
        block.dequantize(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so tests need no extra crate.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// Replaces every f16 field at `offsets` (bytes within a block) by a finite half, as in real files.
    fn tame_halves(src: &mut [u8], block_bytes: usize, offsets: &[usize]) {
        for block in src.chunks_exact_mut(block_bytes) {
            for &o in offsets {
                block[o + 1] &= 0x3b; // exponent ≤ 14: finite, |x| < 2
            }
        }
    }

    #[test]
    fn ids_names_and_sizes_follow_ggml() {
        let expected = [
            (0, "F32", 1, 4),
            (1, "F16", 1, 2),
            (2, "Q4_0", 32, 18),
            (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24),
            (8, "Q8_0", 32, 34),
            (10, "Q2_K", 256, 84),
            (11, "Q3_K", 256, 110),
            (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176),
            (14, "Q6_K", 256, 210),
            (15, "Q8_K", 256, 292),
            (30, "BF16", 1, 2),
        ];
        for (id, name, elems, bytes) in expected {
            let t = GgmlType::from_id(id).unwrap();
            assert_eq!((t.name(), t.block_elems(), t.block_bytes()), (name, elems, bytes));
        }
        for id in [4, 5, 9, 16, 29, 31, 39, u32::MAX] {
            assert!(GgmlType::from_id(id).is_none(), "{id}");
        }
    }

    #[test]
    fn rejects_lengths_that_are_not_whole_blocks() {
        let src = vec![0u8; 18 * 2];
        let mut dst = vec![0f32; 63];
        let err = dequantize(GgmlType::Q4_0, &src, &mut dst).unwrap_err();
        assert!(err.message.contains("dst: 63 values is not a whole number of Q4_0 blocks"), "{err}");
        let mut dst = vec![0f32; 96];
        let err = dequantize(GgmlType::Q4_0, &src, &mut dst).unwrap_err();
        assert!(err.message.contains("src: expected 54 bytes (3 Q4_0 blocks"), "{err}");
        let err = dequantize_id(16, &src, &mut dst).unwrap_err();
        assert_eq!(err.status, crate::error::Status::Unsupported);
        assert!(err.message.contains("ggml_type: 16"), "{err}");
        // Empty tensors are fine.
        dequantize(GgmlType::Q6_K, &[], &mut []).unwrap();
    }

    #[test]
    fn parallel_result_equals_block_by_block() {
        // Many tasks' worth plus a ragged tail, for every type.
        for ty in GgmlType::ALL {
            let blocks = (3 * TASK_ELEMS + 5 * QK_K) / ty.block_elems() + 3;
            let mut src = bytes(blocks * ty.block_bytes(), ty as u64 + 7);
            let halves: &[usize] = match ty {
                GgmlType::F16 => &[0],
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
                GgmlType::Q2_K => &[80, 82],
                GgmlType::Q3_K => &[108],
                GgmlType::Q6_K => &[208],
                _ => &[],
            };
            tame_halves(&mut src, ty.block_bytes(), halves);
            let mut parallel = vec![0f32; blocks * ty.block_elems()];
            dequantize(ty, &src, &mut parallel).unwrap();
            let mut one_by_one = vec![0f32; ty.block_elems()];
            for (b, out) in parallel.chunks(ty.block_elems()).enumerate() {
                let block = &src[b * ty.block_bytes()..(b + 1) * ty.block_bytes()];
                dequantize(ty, block, &mut one_by_one).unwrap();
                let same = out.iter().zip(&one_by_one).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} block {b}", ty.name());
            }
        }
    }
}
