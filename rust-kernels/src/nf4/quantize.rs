//! Blockwise NF4 quantization with optional double quantization of the block scales, matching
//! bitsandbytes byte for byte. Plain loops (this runs once per weight at load time), parallel over blocks.

use super::codebook::{dynamic_map, nf4_midpoints};
use super::weight::{block_count, Nf4Weight, Scales, BLOCK, NESTED_BLOCK};
use crate::error::{ensure, KResult, KernelError};
use rayon::prelude::*;

/// Quantizes `w` (`[rows, cols]`, row-major). Non-finite values are rejected with their position:
/// an inf or NaN would make its whole block's scale meaningless.
pub fn quantize(w: &[f32], rows: usize, cols: usize, double_quant: bool) -> KResult<Nf4Weight> {
    ensure(rows > 0 && cols > 0, || format!("shape: dims must be positive, got [{rows}, {cols}]"))?;
    ensure(w.len() == rows * cols, || {
        format!("weight: expected {} elements for [{rows}, {cols}], got {}", rows * cols, w.len())
    })?;
    if let Some(i) = w.par_iter().position_first(|x| !x.is_finite()) {
        return Err(KernelError::invalid(format!(
            "weight: non-finite value {} at index {i} (row {}, column {}); NF4 needs finite weights",
            w[i],
            i / cols,
            i % cols
        )));
    }
    let absmax: Vec<f32> = w.par_chunks(BLOCK).map(|b| b.iter().fold(0.0f32, |m, x| m.max(x.abs()))).collect();
    let packed = pack_codes(w, &absmax);
    let scales = if double_quant { double_quantize(&absmax) } else { Scales::Plain(absmax) };
    Nf4Weight::new(rows, cols, packed, scales)
}

/// The 4-bit codes of every element, two per byte, first element in the high nibble.
fn pack_codes(w: &[f32], absmax: &[f32]) -> Vec<u8> {
    let mids = nf4_midpoints();
    let mut packed = vec![0u8; w.len().div_ceil(2)];
    // 64-element blocks are 32 whole bytes, so blocks and byte chunks line up.
    packed.par_chunks_mut(BLOCK / 2).zip(w.par_chunks(BLOCK)).zip(absmax.par_iter()).for_each(
        |((bytes, block), &amax)| {
            let inv = if amax == 0.0 { 0.0 } else { 1.0 / amax };
            for (pair, byte) in block.chunks(2).zip(bytes.iter_mut()) {
                let hi = nf4_code(pair[0] * inv, &mids);
                let lo = pair.get(1).map_or(0, |&x| nf4_code(x * inv, &mids));
                *byte = (hi << 4) | lo;
            }
        },
    );
    packed
}

/// Nearest NF4 code: the number of midpoints strictly below `x`, so a value exactly on a midpoint takes the
/// lower code.
pub fn nf4_code(x: f32, mids: &[f32; 15]) -> u8 {
    mids.iter().filter(|&&m| x > m).count() as u8
}

/// Second-level quantization of the block scales (bitsandbytes' `compress_statistics=True`).
fn double_quantize(absmax: &[f32]) -> Scales {
    let offset = mean_f32(absmax);
    let centred: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
    let map = dynamic_map();
    let groups: Vec<(f32, Vec<u8>)> = centred
        .par_chunks(NESTED_BLOCK)
        .map(|group| {
            let amax = group.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let inv = if amax == 0.0 { 0.0 } else { 1.0 / amax };
            (amax, group.iter().map(|c| nearest_in_map(c * inv, &map)).collect())
        })
        .collect();
    let nested = groups.iter().map(|(amax, _)| *amax).collect();
    let codes = groups.into_iter().flat_map(|(_, codes)| codes).collect();
    debug_assert_eq!(block_count(absmax.len() * BLOCK), absmax.len());
    Scales::Double { codes, nested, offset }
}

/// Index of the map entry nearest to `x` (ties to the lower index).
fn nearest_in_map(x: f32, map: &[f32; 256]) -> u8 {
    let mut best = 0usize;
    for (i, v) in map.iter().enumerate() {
        if (x - v).abs() < (x - map[best]).abs() {
            best = i;
        }
    }
    best as u8
}

fn mean_f32(values: &[f32]) -> f32 {
    (values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nf4::codebook::NF4;

    #[test]
    fn codes_are_nearest_with_ties_to_the_lower_code() {
        let mids = nf4_midpoints();
        for (i, &c) in NF4.iter().enumerate() {
            assert_eq!(nf4_code(c, &mids) as usize, i);
        }
        for (i, &m) in mids.iter().enumerate() {
            assert_eq!(nf4_code(m, &mids) as usize, i, "midpoint {i} goes down");
        }
    }

    #[test]
    fn rejects_non_finite_with_position() {
        let mut w = vec![0.5f32; 130];
        w[70] = f32::NAN;
        let err = quantize(&w, 2, 65, true).unwrap_err();
        assert!(err.message.contains("index 70 (row 1, column 5)"), "{}", err.message);
    }

    #[test]
    fn zero_block_stays_zero() {
        let q = quantize(&[0.0; 64], 1, 64, false).unwrap();
        assert!(q.packed.iter().all(|&b| b == 0x77), "code 7 is exact zero");
    }
}
