//! The two lookup tables of bitsandbytes' NF4 with double quantization.

/// The 16 NF4 code values (index = 4-bit code): normal-distribution quantiles scaled to [-1, 1].
pub const NF4: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// Midpoints between consecutive NF4 codes, each computed in f64 and rounded once to f32 (the constants of
/// bitsandbytes' comparison tree are these decimal midpoints written as f32 literals).
pub fn nf4_midpoints() -> [f32; 15] {
    let mut mids = [0.0f32; 15];
    for (i, mid) in mids.iter_mut().enumerate() {
        *mid = ((NF4[i] as f64 + NF4[i + 1] as f64) / 2.0) as f32;
    }
    mids
}

/// bitsandbytes' signed 8-bit "dynamic" map (`create_dynamic_map(signed=True, max_exponent_bits=7,
/// total_bits=8)`): for i in 0..7, the 2^i midpoints of 2^i + 1 points evenly spaced over [0.1, 1], scaled
/// by 10^(i-6), with both signs; plus 0 and 1; sorted. 256 values.
pub fn dynamic_map() -> [f32; 256] {
    let mut values: Vec<f32> = Vec::with_capacity(256);
    for i in 0..7i32 {
        let count = (1usize << i) + 1;
        // Python's float 10**(i-6), cast to f32 when torch multiplies it into an f32 tensor.
        let scale = [1e-6f64, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0][i as usize] as f32;
        // torch.linspace(0.1, 1, count) in fp32, then midpoints of neighbours, then times 10^(i-6).
        let points = linspace_f32(0.1, 1.0, count);
        for pair in points.windows(2) {
            let mid = (pair[0] + pair[1]) / 2.0;
            values.push(mid * scale);
            values.push(-(mid * scale));
        }
    }
    values.push(0.0);
    values.push(1.0);
    values.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let mut map = [0.0f32; 256];
    map.copy_from_slice(&values);
    map
}

/// torch.linspace(start, end, steps) for float32: the first half steps up from `start`, the second half
/// steps down from `end`, so both ends are exact.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { start + step * i as f32 } else { end - step * (steps - 1 - i) as f32 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_map_has_the_documented_shape() {
        let map = dynamic_map();
        assert_eq!(map[0], -0.99296875);
        assert_eq!(map[255], 1.0);
        assert_eq!(map[127], 0.0);
        assert!(map.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    }

    #[test]
    fn midpoints_lie_between_codes() {
        let mids = nf4_midpoints();
        for i in 0..15 {
            assert!(NF4[i] < mids[i] && mids[i] < NF4[i + 1]);
        }
    }
}
