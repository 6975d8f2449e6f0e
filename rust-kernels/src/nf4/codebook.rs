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
/// total_bits=8)`), the code book of the double-quantized block scales, as f32 bit patterns. Its values
/// depend on how torch rounds inside `linspace` (fused multiply-adds, upper half counted down from the end),
/// so the table is kept as bitsandbytes produced it; `construct_dynamic_map` in the tests re-derives it.
const DYNAMIC_MAP_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// The dynamic map as f32 values (ascending; index 127 is 0.0).
pub fn dynamic_map() -> &'static [f32; 256] {
    static MAP: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    MAP.get_or_init(|| DYNAMIC_MAP_BITS.map(f32::from_bits))
}

/// The quantizer of the nested scales in bitsandbytes' CPU library: a value v in [-1, 1] is located on a
/// grid of 65536 points (`g_i = (2i / 65535) - 1`, in f32) and takes the code of that grid point, i.e. the
/// number of map midpoints below it. This is not always the nearest map entry (0.0 maps to code 131), and
/// matching it is what makes our scale codes byte-identical.
pub fn nested_lut() -> &'static [u8; 65536] {
    static LUT: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        let map = dynamic_map();
        let mids: Vec<f32> = map.windows(2).map(|w| (w[0] + w[1]) * 0.5).collect();
        let mut lut = Box::new([0u8; 65536]);
        for (i, slot) in lut.iter_mut().enumerate() {
            let g = (2 * i) as f32 / 65535.0 - 1.0;
            *slot = mids.iter().filter(|&&m| m < g).count() as u8;
        }
        lut
    })
}

/// The nested code of `v` (already scaled into [-1, 1]): the grid index is
/// `trunc(fma((v + 1) * 0.5, 65535, 0.5))`, computed exactly in f64 and rounded once to f32 as the fused
/// multiply-add does.
pub fn nested_code(v: f32) -> u8 {
    let t = (v + 1.0) * 0.5;
    let index = ((t as f64) * 65535.0 + 0.5) as f32;
    nested_lut()[index as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch.linspace(start, end, steps) in f32 as torch's CPU build computes it: the first half as
    /// fma(step, i, start), the second half counted down from the end.
    fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
        let step = (end - start) / (steps - 1) as f32;
        let half = steps / 2;
        (0..steps)
            .map(|i| {
                if i < half {
                    step.mul_add(i as f32, start)
                } else {
                    (-step).mul_add((steps - 1 - i) as f32, end)
                }
            })
            .collect()
    }

    /// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), step by step.
    fn construct_dynamic_map() -> Vec<f32> {
        let mut values = vec![0.0f32, 1.0];
        for i in 0..7usize {
            let scale = [1e-6f64, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0][i] as f32;
            for pair in linspace_f32(0.1, 1.0, (1 << i) + 1).windows(2) {
                let v = (pair[0] + pair[1]) / 2.0 * scale;
                values.extend([v, -v]);
            }
        }
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        values
    }

    #[test]
    fn the_table_is_the_documented_construction() {
        assert_eq!(construct_dynamic_map(), dynamic_map().to_vec());
    }

    #[test]
    fn nested_code_is_bitsandbytes_grid_lookup() {
        assert_eq!(nested_code(-1.0), 0);
        assert_eq!(nested_code(1.0), 255);
        assert_eq!(nested_code(0.0), 131, "zero lands above the map's 0.0 entry on the grid");
    }

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
