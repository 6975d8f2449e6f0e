//! Blockwise NF4 quantization with optional double quantization of the block scales, matching
//! bitsandbytes byte for byte. Plain loops (this runs once per weight at load time), parallel over blocks.

use super::codebook::{nested_code, nf4_midpoints};
use super::encode::encode_block;
use super::torch_mean::torch_mean;
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
    // Chunked: rayon's per-element position search costs more than the quantization itself.
    const CHUNK: usize = 1 << 16;
    let bad_chunk = w.par_chunks(CHUNK).position_first(|c| c.iter().any(|x| !x.is_finite()));
    if let Some(i) =
        bad_chunk.and_then(|c| w[c * CHUNK..].iter().position(|x| !x.is_finite()).map(|j| c * CHUNK + j))
    {
        return Err(KernelError::invalid(format!(
            "weight: non-finite value {} at index {i} (row {}, column {}); NF4 needs finite weights",
            w[i],
            i / cols,
            i % cols
        )));
    }
    let last = block_count(w.len()) - 1;
    let absmax: Vec<f32> = w
        .par_chunks(BLOCK)
        .enumerate()
        .map(|(b, block)| {
            let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            // bitsandbytes stores the floor of 1e-38 only for a partial last block (its division path).
            if b == last && block.len() < BLOCK {
                amax.max(TINY)
            } else {
                amax
            }
        })
        .collect();
    let packed = pack_codes(w, &absmax);
    let scales = if double_quant { double_quantize(&absmax) } else { Scales::Plain(absmax) };
    Nf4Weight::new(rows, cols, packed, scales)
}

/// bitsandbytes' guard against dividing by a zero absmax.
const TINY: f32 = 1e-38;

/// The 4-bit codes of every element, two per byte, first element in the high nibble. An odd count is
/// padded with the code of 0.0 (7), as bitsandbytes pads the scaled tensor with zeros.
fn pack_codes(w: &[f32], absmax: &[f32]) -> Vec<u8> {
    let mids = nf4_midpoints();
    let kernel = crate::dispatch::active();
    let mut packed = vec![0u8; w.len().div_ceil(2)];
    // 64-element blocks are 32 whole bytes, so blocks and byte chunks line up.
    packed.par_chunks_mut(BLOCK / 2).zip(w.par_chunks(BLOCK)).zip(absmax.par_iter()).for_each(
        |((bytes, block), &amax)| {
            if block.len() == BLOCK {
                encode_block(kernel, block, 1.0 / amax.max(TINY), &mids, bytes);
                return;
            }
            // The partial last block: bitsandbytes divides here instead of multiplying by the reciprocal
            // (a different rounding), so keep the division.
            let code = |x: f32| nf4_code((x / amax).clamp(-1.0, 1.0), &mids);
            for (pair, byte) in block.chunks(2).zip(bytes.iter_mut()) {
                let hi = code(pair[0]);
                let lo = pair.get(1).map_or(7, |&x| code(x));
                *byte = (hi << 4) | lo;
            }
        },
    );
    packed
}

/// bitsandbytes' 8-bit blockwise quantization with the dynamic map (blocks of 256): returns the codes and
/// each block's absmax.
pub fn quantize_8bit_blockwise(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let groups: Vec<(f32, Vec<u8>)> = values
        .par_chunks(NESTED_BLOCK)
        .map(|group| {
            let amax = group.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if amax == 0.0 {
                // bitsandbytes leaves an all-zero group at code 0 with scale 0.
                return (amax, vec![0u8; group.len()]);
            }
            let inv = 1.0 / amax;
            (amax, group.iter().map(|c| nested_code((c * inv).clamp(-1.0, 1.0))).collect())
        })
        .collect();
    let nested = groups.iter().map(|(amax, _)| *amax).collect();
    (groups.into_iter().flat_map(|(_, codes)| codes).collect(), nested)
}

/// Nearest NF4 code: the number of midpoints strictly below `x`, so a value exactly on a midpoint takes the
/// lower code.
pub fn nf4_code(x: f32, mids: &[f32; 15]) -> u8 {
    // Branchless binary search over the sorted midpoints: the same count in 4 comparisons instead of 15.
    let mut code = 0usize;
    for step in [8, 4, 2, 1] {
        if x > mids[code + step - 1] {
            code += step;
        }
    }
    code as u8
}

/// Second-level quantization of the block scales (bitsandbytes' `compress_statistics=True`): subtract
/// torch's mean, then 8-bit codes in groups of 256 scaled by each group's absmax.
fn double_quantize(absmax: &[f32]) -> Scales {
    let offset = torch_mean(absmax);
    let centred: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
    let (codes, nested) = quantize_8bit_blockwise(&centred);
    Scales::Double { codes, nested, offset }
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

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/nf4/");
        std::fs::read(format!("{dir}{name}")).expect("fixture written by make_nf4_fixtures.py")
    }

    #[test]
    fn nested_codes_equal_bitsandbytes_on_midpoints_and_neighbours() {
        let input: Vec<f32> = fixture("nested_probe.input.f32")
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let absmax: Vec<f32> = fixture("nested_probe.absmax.f32")
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let (codes, nested) = quantize_8bit_blockwise(&input);
        assert_eq!(codes, fixture("nested_probe.codes.u8"));
        assert_eq!(nested, absmax);
    }

    #[test]
    fn binary_search_counts_midpoints_like_a_linear_scan() {
        let mids = nf4_midpoints();
        let mut probes: Vec<f32> = (-1100..=1100).map(|i| i as f32 / 1000.0).collect();
        for &m in &mids {
            probes.extend([m, f32::from_bits(m.to_bits() + 1), f32::from_bits(m.to_bits() - 1), -m]);
        }
        for x in probes {
            assert_eq!(nf4_code(x, &mids) as usize, mids.iter().filter(|&&m| x > m).count(), "x = {x}");
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
    fn zero_block_stays_zero_and_odd_counts_pad_with_the_zero_code() {
        let q = quantize(&[0.0; 64], 1, 64, false).unwrap();
        assert!(q.packed.iter().all(|&b| b == 0x77), "code 7 is exact zero");
        let q = quantize(&[1.0, -1.0, 1.0], 1, 3, false).unwrap();
        assert_eq!(q.packed, vec![0xf0, 0xf7]);
    }
}
